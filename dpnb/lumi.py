"""Luminosity: clean messy per-fill data, integrate per fill / run / run type / bucket.

Conventions (see docs/luminosity.md)
------------------------------------
* A Massi sample ``i`` is the time bin ``[t_i, t_i + d_i)``; ``d_i`` is the distance to the
  next timestamp, except across a gap (distance > ``gap_factor`` × nominal bin) and for
  the last bin, where ``d_i`` is the nominal bin (median spacing, or the ``bin_s`` option).
* Integrals are stable-beam weighted: ``L = Σ d_i·stab_i·l_i`` (Hz/µb·s = µb⁻¹), converted
  to pb⁻¹ by :mod:`dpnb.units`. A run is the window ``[start_time, stop_time)``; bins partly
  inside contribute their overlapping fraction, so adjacent runs never double count.
* Statistical error: point-to-point errors combined in quadrature, ``σ² = Σ (d_i·stab_i·dl_i)²``.
  Systematic error: ``sys_fraction`` × value, fully correlated between runs (added linearly).
* delivered (per run) = Massi integral over the run window; recorded = the experiment's
  run-level table (``run_lumi.csv``) when it has the run (``recorded_source: run_table``),
  else the Massi integral.

Messy-data rules (each finding is counted and listed with file:line)
--------------------------------------------------------------------
========================  =====================================================================
``bad_line``              missing/extra columns or non-numbers: ``on_bad_line`` skip (listed) | fail
``backwards_timestamp``   time < an earlier time: ``backwards_policy`` sort (stable) | drop
``duplicate_timestamp``   same time twice (after sorting): ``duplicate_policy`` first | last kept
``stab_out_of_range``     stab < 0 or > 1: clipped into [0, 1]
``partial_stab``          0 < stab < 1: kept, the bin is weighted by stab (information only)
``negative_lumi``         l < 0: set to 0 (an integral never goes negative)
``gap``                   spacing > gap_factor × bin: the bin before it lasts one nominal bin
``spike``                 l_i > spike_factor × max(l_{i-1}, l_{i+1}): ``spike_policy``
                          interpolate (mean of the neighbours) | keep
========================  =====================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError, ParameterError
from .io import lumi_files as lf
from .kernels import integrate as kern
from .units import integrated_to_pb, pb_to

__all__ = [
    "FINDING_KINDS",
    "CleanOptions",
    "Finding",
    "FillSeries",
    "clean_fill",
    "integrate_fill",
    "integrate_runs",
    "load_fill",
    "load_fills",
    "fill_table",
    "run_table",
    "group_totals",
    "bucket_totals",
    "findings_frame",
    "compare_deliveries",
    "version_annotation_text",
    "annotation_findings",
    "brilcalc_totals",
    "LumiSummary",
    "summarize",
    "finding_counts",
    "plot_fill",
    "plot_cumulative",
    "plot_runs",
]

FINDING_KINDS = (
    "bad_line", "backwards_timestamp", "duplicate_timestamp", "stab_out_of_range", "partial_stab",
    "negative_lumi", "gap", "spike", "missing_fill", "run_not_covered", "run_table_mismatch",
    "summary_mismatch", "version_problem",
)


@dataclass(frozen=True)
class CleanOptions:
    """Messy-data policies (the ``luminosity_summary`` options of the same names)."""

    on_bad_line: str = "skip"         # skip | fail
    backwards_policy: str = "sort"    # sort | drop
    duplicate_policy: str = "first"   # first | last
    spike_policy: str = "interpolate"  # interpolate | keep
    spike_factor: float = 5.0
    gap_factor: float = 3.0
    bin_s: float = 0.0                # 0: median spacing of the file

    def __post_init__(self):
        allowed = {"on_bad_line": ("skip", "fail"), "backwards_policy": ("sort", "drop"),
                   "duplicate_policy": ("first", "last"), "spike_policy": ("interpolate", "keep")}
        for key, values in allowed.items():
            if getattr(self, key) not in values:
                msg = f"option {key}={getattr(self, key)!r}: expected one of {list(values)}"
                raise ParameterError(msg)
        if not (self.spike_factor > 1 and self.gap_factor >= 1 and self.bin_s >= 0):
            msg = (f"options spike_factor={self.spike_factor} (> 1), gap_factor={self.gap_factor} (>= 1), "
                   f"bin_s={self.bin_s} (>= 0) out of range")
            raise ParameterError(msg)

    @classmethod
    def from_options(cls, options: dict) -> "CleanOptions":
        return cls(**{k: options[k] for k in cls.__dataclass_fields__ if k in options})


@dataclass(frozen=True)
class Finding:
    """One messy-data finding: what, where (file:line, fill, time) and a short detail."""

    kind: str
    file: str
    line: int
    fill: int
    time_s: float
    detail: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line > 0 else self.file


@dataclass
class FillSeries:
    """A cleaned fill: sorted unique times (UNIX s), bin durations (s), stab in [0, 1],
    lumi >= 0 and dlumi (Hz/µb), source line numbers, the nominal bin (s) and the findings."""

    fill: int
    path: str
    time_s: np.ndarray
    duration_s: np.ndarray
    stab: np.ndarray
    lumi: np.ndarray
    dlumi: np.ndarray
    line: np.ndarray
    nominal_bin_s: float
    findings: list = field(default_factory=list)
    n_raw: int = 0
    version: str = ""
    annotations: dict = field(default_factory=dict)
    summary_ub: float = math.nan
    longest_gap_s: float = 0.0
    n_negative_raw: int = 0


def clean_fill(m: lf.MassiLumi, opts: CleanOptions = CleanOptions()) -> FillSeries:
    """Apply the messy-data rules (module docstring) to one read lumi file."""
    path, fill = m.path, m.fill
    findings = [Finding("bad_line", b.path, b.line, fill, math.nan, b.reason) for b in m.bad_lines]
    t, stab, lumi, dlumi, line = (a.copy() for a in (m.time_s, m.stab, m.lumi, m.dlumi, m.line))

    def add(kind, idx, detail):
        for i in np.atleast_1d(idx):
            text = detail(i) if callable(detail) else detail
            findings.append(Finding(kind, path, int(line[i]), fill, float(t[i]), text))

    # timestamps going backwards: earlier than the latest time seen so far in the file
    if t.size:
        prev_max = np.maximum.accumulate(np.concatenate(([-np.inf], t[:-1])))
        back = np.flatnonzero(t < prev_max)
        add("backwards_timestamp", back,
            lambda i: f"time {float(t[i])!r} < earlier {float(prev_max[i])!r} ({opts.backwards_policy})")
        if back.size:
            if opts.backwards_policy == "drop":
                keep = np.ones(t.size, dtype=bool)
                keep[back] = False
            else:
                keep = np.argsort(t, kind="stable")
            t, stab, lumi, dlumi, line = (a[keep] for a in (t, stab, lumi, dlumi, line))
    # duplicates (sorted now): keep the first or the last in file order
    if t.size > 1:
        same = np.flatnonzero(t[1:] == t[:-1])  # i+1 repeats i
        if same.size:
            drop = same + 1 if opts.duplicate_policy == "first" else same
            add("duplicate_timestamp", same + 1,
                lambda i: f"time {float(t[i])!r} repeated ({opts.duplicate_policy} kept)")
            keep = np.ones(t.size, dtype=bool)
            keep[drop] = False
            t, stab, lumi, dlumi, line = (a[keep] for a in (t, stab, lumi, dlumi, line))
    out = np.flatnonzero((stab < 0) | (stab > 1))
    add("stab_out_of_range", out, lambda i: f"stab {float(stab[i])!r} outside [0, 1], clipped")
    stab = np.clip(stab, 0.0, 1.0)
    part = np.flatnonzero((stab > 0) & (stab < 1))
    add("partial_stab", part, lambda i: f"stab {float(stab[i])!r}: bin weighted by stab")
    neg = np.flatnonzero(lumi < 0)
    add("negative_lumi", neg, lambda i: f"l {float(lumi[i])!r} Hz/ub < 0, set to 0")
    lumi = np.where(lumi < 0, 0.0, lumi)
    # nominal bin and gaps
    diffs = np.diff(t)
    nominal = opts.bin_s or (float(np.median(diffs)) if diffs.size else 60.0)
    gaps = np.flatnonzero(diffs > opts.gap_factor * nominal)
    add("gap", gaps, lambda i: f"{diffs[i]:.0f} s to the next sample ({diffs[i] / nominal:.1f} bins), not bridged")
    longest_gap = float(diffs[gaps].max()) if gaps.size else 0.0
    # single-bin spikes
    if lumi.size >= 3:
        neigh = np.maximum(lumi[:-2], lumi[2:])
        spk = np.flatnonzero(lumi[1:-1] > opts.spike_factor * neigh) + 1
        add("spike", spk, lambda i: (f"l {float(lumi[i])!r} Hz/ub vs neighbours {float(lumi[i - 1])!r}, "
                                     f"{float(lumi[i + 1])!r} ({opts.spike_policy})"))
        if spk.size and opts.spike_policy == "interpolate":
            lumi = lumi.copy()
            lumi[spk] = 0.5 * (lumi[spk - 1] + lumi[spk + 1])
    t = np.ascontiguousarray(t, dtype=np.float64)
    duration = kern.bin_durations(t, float(nominal), float(opts.gap_factor))
    return FillSeries(fill, path, t, duration, np.ascontiguousarray(stab), np.ascontiguousarray(lumi),
                      np.ascontiguousarray(np.abs(dlumi)), line, float(nominal), findings, n_raw=len(m),
                      longest_gap_s=longest_gap, n_negative_raw=int(neg.size))


def integrate_fill(s: FillSeries, n_threads: int = 1) -> dict:
    """Whole-fill sums: ``delivered_pb``, ``stat_pb`` (pb⁻¹), ``stable_time_s``,
    ``total_time_s`` (s), ``peak_hz_per_ub`` (Hz/µb)."""
    r = kern.integrate_total(s.duration_s, s.stab, s.lumi, s.dlumi, int(n_threads))
    return {"delivered_pb": integrated_to_pb(float(r[0]), "ub^-1"),
            "stat_pb": integrated_to_pb(math.sqrt(float(r[1])), "ub^-1"),
            "stable_time_s": float(r[2]), "total_time_s": float(r[3]), "peak_hz_per_ub": float(r[4])}


def integrate_runs(s: FillSeries, start_s, stop_s) -> np.ndarray:
    """Per window ``[start_s, stop_s)``: columns integral_pb, stat_pb, stable_time_s,
    covered_time_s, peak_hz_per_ub (array of shape (n, 5))."""
    a = np.ascontiguousarray(start_s, dtype=np.float64)
    b = np.ascontiguousarray(stop_s, dtype=np.float64)
    r = kern.integrate_windows(s.time_s, s.duration_s, s.stab, s.lumi, s.dlumi, a, b)
    r[:, 0] = integrated_to_pb(r[:, 0], "ub^-1")
    r[:, 1] = integrated_to_pb(np.sqrt(r[:, 1]), "ub^-1")
    return r


# --- loading a delivery (one directory per fill) ----------------------------------------
def load_fill(fill_dir, expt: str, opts: CleanOptions = CleanOptions()) -> FillSeries:
    """Read and clean one fill directory (lumi, summary, version files)."""
    fill_dir = Path(fill_dir)
    fill = int(fill_dir.name)
    paths = lf.massi_paths(fill_dir.parent, fill, expt)
    if not paths["lumi"].is_file():
        present = sorted(p.name for p in fill_dir.iterdir())
        msg = f"{paths['lumi']}: file not found; {fill_dir} holds {present}"
        raise InputError(msg)
    s = clean_fill(lf.read_massi_lumi(paths["lumi"], opts.on_bad_line), opts)
    if paths["summary"].is_file():
        s.summary_ub = float(lf.read_massi_summary(paths["summary"], opts.on_bad_line).integrated_ub.sum())
    if paths["version"].is_file():
        try:
            v, ann = lf.read_version_files(fill_dir)
            s.version, s.annotations = str(v), ann
            for p in lf.check_version_annotated(v, ann, str(paths["annotation"])):
                s.findings.append(Finding("version_problem", str(paths["annotation"]), 0, fill, math.nan, p))
        except InputError as exc:
            if opts.on_bad_line == "fail":
                raise
            s.findings.append(Finding("version_problem", str(paths["version"]), 0, fill, math.nan, str(exc)))
    return s


def load_fills(lumi_dir, expt: str, opts: CleanOptions = CleanOptions(), fills=None, extract_dir=None) -> dict:
    """Fill -> :class:`FillSeries` for the fills in ``lumi_dir`` (directories or archives,
    archives expanded into ``extract_dir``); ``fills`` restricts to those numbers."""
    import tempfile

    out = {}
    for fill, p in lf.list_fills(lumi_dir).items():
        if fills is not None and fill not in fills:
            continue
        if p.is_file():
            extract_dir = extract_dir or tempfile.mkdtemp(prefix="dpnb-lumi-")
            p = lf.extract_fill_archive(p, extract_dir)
        out[fill] = load_fill(p, expt, opts)
    return out


def annotation_findings(series: dict) -> list[Finding]:
    """Findings for the LPC add-only rule over the fills of one delivery (fill order)."""
    seq = [(f, s.annotations) for f, s in sorted(series.items()) if s.version]
    return [Finding("version_problem", "version_annotation.txt", 0, -1, math.nan, p)
            for p in lf.check_annotations_add_only(seq)]


# --- tables ---------------------------------------------------------------------------
def run_table(series: dict, registry, run_lumi=None, sys_fraction: float = 0.01,
              recorded_source: str = "run_table", table_tolerance: float = 1e-6):
    """Per-run luminosity (pandas DataFrame) for the runs of ``registry`` (runs.csv rows).

    Columns: exp, run, run_type, fill, start_time, stop_time, delivered_pb, recorded_pb,
    stat_pb, sys_pb (pb⁻¹), massi_pb, massi_stat_pb, table_pb, stable_time_s, covered_time_s,
    peak_hz_per_ub. Runs with ``fill <= 0`` (no beam) get zero. Returns (table, findings)."""
    if recorded_source not in ("run_table", "massi"):
        msg = f"option recorded_source={recorded_source!r}: expected 'run_table' or 'massi'"
        raise ParameterError(msg)
    reg = registry.sort_values(["exp", "run"]).reset_index(drop=True)
    n = len(reg)
    res = np.full((n, 5), np.nan)
    findings: list[Finding] = []
    for fill, idx in reg.groupby("fill").indices.items():
        s = series.get(int(fill))
        if int(fill) <= 0:  # no beam (e.g. cosmic runs): zero luminosity by definition
            res[idx] = 0.0
            continue
        if s is None:
            for i in idx:
                findings.append(Finding("missing_fill", "runs.csv", 0, int(fill), math.nan,
                                        f"run {reg.exp[i]}:{reg.run[i]}: no lumi files for fill {fill}"))
            continue
        res[idx] = integrate_runs(s, reg.start_time.to_numpy(float)[idx], reg.stop_time.to_numpy(float)[idx])
    out = reg[["exp", "run", "run_type", "fill", "start_time", "stop_time"]].copy()
    out["massi_pb"] = res[:, 0]
    out["massi_stat_pb"] = res[:, 1]
    out["stable_time_s"] = res[:, 2]
    out["covered_time_s"] = res[:, 3]
    out["peak_hz_per_ub"] = res[:, 4]
    length = (out.stop_time - out.start_time).to_numpy(float)
    for i in np.flatnonzero((res[:, 3] < 0.999 * length) & (out.fill.to_numpy() > 0)):
        findings.append(Finding("run_not_covered", "runs.csv", 0, int(out.fill[i]), float(out.start_time[i]),
                                f"run {out.exp[i]}:{out.run[i]}: lumi bins cover {res[i, 3]:.0f} of {length[i]:.0f} s"))
    table = None
    if run_lumi is not None and len(run_lumi):
        table = out[["exp", "run"]].merge(run_lumi, on=["exp", "run"], how="left", suffixes=("", "_tbl"))
    out["table_pb"] = table.lumi_pb.to_numpy(float) if table is not None else np.nan
    use = (recorded_source == "run_table") & np.isfinite(out.table_pb.to_numpy(float))
    out["delivered_pb"] = out.massi_pb
    out["recorded_pb"] = np.where(use, out.table_pb, out.massi_pb)
    tstat = table.stat_pb.to_numpy(float) if table is not None else np.full(n, np.nan)
    tsys = table.sys_pb.to_numpy(float) if table is not None else np.full(n, np.nan)
    out["stat_pb"] = np.where(use, tstat, out.massi_stat_pb)
    out["sys_pb"] = np.where(use, tsys, sys_fraction * out.recorded_pb)
    both = np.isfinite(out.table_pb.to_numpy(float)) & np.isfinite(out.massi_pb.to_numpy(float))
    rel = np.abs(out.table_pb - out.massi_pb) / np.maximum(np.abs(out.massi_pb), 1e-300)
    for i in np.flatnonzero(both & (rel.to_numpy() > table_tolerance)):
        findings.append(Finding("run_table_mismatch", "run_lumi.csv", 0, int(out.fill[i]), float(out.start_time[i]),
                                f"run {out.exp[i]}:{out.run[i]}: table {float(out.table_pb[i])!r} pb^-1 vs Massi "
                                f"{float(out.massi_pb[i])!r} pb^-1 (rel. {rel[i]:.2e})"))
    return out, findings


def fill_table(series: dict, runs=None, n_threads: int = 1, summary_tolerance: float = 1e-6):
    """Per-fill table (pandas DataFrame): fill, version, n_samples, n_raw, start_s, stop_s,
    delivered_pb, stat_pb, recorded_pb (sum of ``runs`` in the fill), stable_time_s,
    total_time_s, stable_fraction, peak_hz_per_ub, nominal_bin_s, longest_gap_s, summary_pb,
    n_findings. Returns (table, findings)."""
    import pandas as pd

    rows, findings = [], []
    for fill, s in sorted(series.items()):
        r = integrate_fill(s, n_threads)
        rec = float(runs.loc[runs.fill == fill, "recorded_pb"].sum()) if runs is not None else math.nan
        summ = integrated_to_pb(s.summary_ub, "ub^-1")
        tol = summary_tolerance * max(abs(r["delivered_pb"]), 1e-300)
        if math.isfinite(summ) and abs(summ - r["delivered_pb"]) > tol:
            findings.append(Finding("summary_mismatch", s.path.replace("_lumi_", "_summary_"), 0, fill, math.nan,
                                    f"summary file {summ!r} pb^-1 vs integral of lumi file "
                                    f"{r['delivered_pb']!r} pb^-1"))
        rows.append({
            "fill": fill, "version": s.version, "n_samples": int(s.time_s.size), "n_raw": s.n_raw,
            "start_s": float(s.time_s[0]) if s.time_s.size else math.nan,
            "stop_s": float(s.time_s[-1] + s.duration_s[-1]) if s.time_s.size else math.nan,
            "delivered_pb": r["delivered_pb"], "stat_pb": r["stat_pb"], "recorded_pb": rec,
            "stable_time_s": r["stable_time_s"], "total_time_s": r["total_time_s"],
            "stable_fraction": r["stable_time_s"] / r["total_time_s"] if r["total_time_s"] > 0 else math.nan,
            "peak_hz_per_ub": r["peak_hz_per_ub"], "nominal_bin_s": s.nominal_bin_s,
            "longest_gap_s": s.longest_gap_s, "summary_pb": summ, "n_findings": len(s.findings),
        })
    return pd.DataFrame(rows), findings


def group_totals(runs, by: str = "run_type"):
    """Sum per group of ``runs`` (run_table rows): delivered/recorded pb⁻¹, stat in quadrature,
    sys linearly (correlated), n_runs, stable_time_s."""
    g = runs.groupby(by, sort=True)
    out = g.agg(n_runs=("run", "size"), delivered_pb=("delivered_pb", "sum"), recorded_pb=("recorded_pb", "sum"),
                sys_pb=("sys_pb", "sum"), stable_time_s=("stable_time_s", "sum"))
    out["stat_pb"] = g["stat_pb"].apply(lambda x: float(np.sqrt(np.sum(np.square(x)))))
    return out.reset_index()


def bucket_totals(runs) -> dict:
    """Totals of the bucket's runs: delivered/recorded in pb⁻¹ and fb⁻¹, stat (quadrature),
    sys (linear), total error (stat ⊕ sys), stable-beam time and fraction."""
    rec = float(runs.recorded_pb.sum())
    stat = float(np.sqrt(np.sum(np.square(runs.stat_pb))))
    sys = float(runs.sys_pb.sum())
    err = math.hypot(stat, sys)
    covered = float(runs.covered_time_s.sum()) if "covered_time_s" in runs else math.nan
    stable = float(runs.stable_time_s.sum()) if "stable_time_s" in runs else math.nan
    return {
        "n_runs": int(len(runs)), "delivered_pb": float(runs.delivered_pb.sum()), "recorded_pb": rec,
        "stat_pb": stat, "sys_pb": sys, "error_pb": err,
        "delivered_fb": pb_to(float(runs.delivered_pb.sum()), "fb^-1"), "recorded_fb": pb_to(rec, "fb^-1"),
        "error_fb": pb_to(err, "fb^-1"), "stable_time_s": stable,
        "stable_fraction": stable / covered if covered > 0 else math.nan,
    }


def findings_frame(findings):
    """Findings as a DataFrame (kind, where, fill, time_s, detail), in a stable order."""
    import pandas as pd

    rows = [{"kind": f.kind, "where": f.where, "fill": f.fill, "time_s": f.time_s, "detail": f.detail}
            for f in findings]
    df = pd.DataFrame(rows, columns=["kind", "where", "fill", "time_s", "detail"])
    return df.sort_values(["kind", "fill", "where"], kind="stable").reset_index(drop=True)


# --- versions of a delivery -----------------------------------------------------------
def version_annotation_text(version: str, annotations: dict) -> str:
    """Human-readable meaning of a version string from its annotations, e.g. for ``1.2._1``
    ``"luminometer=1 (T0); level=2 (offline); _1: afterglow"``; an unannotated field is
    ``field n``, an unannotated underscore number ``?``."""
    if not version:
        return ""
    v = lf.parse_version(version)
    parts = []
    for n, value in enumerate(v.plain, 1):
        meaning = annotations.get(f"{n} {int(value)}")
        parts.append(f"{annotations.get(str(n), f'field {n}')}={value}" + (f" ({meaning})" if meaning else ""))
    for u in v.underscore:
        parts.append(f"_{u}: {annotations.get(f'_{u}', '?')}")
    return "; ".join(parts)


def compare_deliveries(old: dict, new: dict):
    """Per-fill comparison of two deliveries (fill -> :class:`FillSeries`): old/new version,
    old_pb, new_pb, delta_pb, delta_rel, and the annotation of the new version. Fills in
    only one delivery appear with NaN on the other side."""
    import pandas as pd

    rows = []
    for fill in sorted(set(old) | set(new)):
        o, n = old.get(fill), new.get(fill)
        opb = integrate_fill(o)["delivered_pb"] if o else math.nan
        npb = integrate_fill(n)["delivered_pb"] if n else math.nan
        rows.append({
            "fill": fill, "old_version": o.version if o else "", "new_version": n.version if n else "",
            "old_pb": opb, "new_pb": npb, "delta_pb": npb - opb,
            "delta_rel": (npb - opb) / opb if o and n and opb > 0 else math.nan,
            "changed": bool(o is None or n is None or o.version != n.version or opb != npb),
            "new_annotation": version_annotation_text(n.version, n.annotations) if n else "",
        })
    return pd.DataFrame(rows)


# --- CMS brilcalc ---------------------------------------------------------------------
def brilcalc_totals(df, certification=None) -> dict:
    """Totals of a brilcalc table (:func:`dpnb.io.lumi_files.read_brilcalc_csv`): all lumi
    sections and, with a certification mask, certified ones only (pb⁻¹)."""
    stable = df.beamstatus.str.strip().str.upper().eq("STABLE BEAMS").to_numpy()
    out = {"n_ls": int(len(df)), "n_stable": int(stable.sum()),
           "delivered_pb": float(df.delivered_pb.sum()), "recorded_pb": float(df.recorded_pb.sum()),
           "mean_pileup": float(df.avgpu.mean()) if len(df) else math.nan}
    if certification is not None:
        mask = lf.certified_mask(df.run, df.ls, certification)
        out.update({"n_certified": int(mask.sum()), "certified_recorded_pb": float(df.recorded_pb[mask].sum()),
                    "certified_delivered_pb": float(df.delivered_pb[mask].sum())})
    return out


# --- one call for a bucket (what the notebook uses) -------------------------------------
@dataclass
class LumiSummary:
    """Everything the luminosity report shows: cleaned fills, per-run / per-fill / per-run-type
    tables, bucket totals, findings and (optionally) the comparison with a previous delivery."""

    series: dict
    runs: object
    fills: object
    by_run_type: object
    totals: dict
    findings: object
    comparison: object = None
    n_negative_raw: int = 0
    longest_gap_s: float = 0.0


def summarize(lumi_dir, registry, expt: str, options: dict, previous_lumi_dir=None, n_threads: int = 1) -> LumiSummary:
    """Luminosity of the runs in ``registry`` (already restricted to the bucket) from the
    delivery in ``lumi_dir`` (one directory or archive per fill, plus ``run_lumi.csv``).

    ``options``: the ``luminosity_summary`` options (messy-data policies, ``sys_fraction``,
    ``recorded_source``, ``run_table_tolerance``, ``summary_tolerance``)."""
    opts = CleanOptions.from_options(options)
    lumi_dir = Path(lumi_dir)
    fills = {int(f) for f in registry.fill if int(f) > 0}
    series = load_fills(lumi_dir, expt, opts, fills=fills)
    table_path = lumi_dir / "run_lumi.csv"
    run_lumi = lf.read_run_lumi(table_path) if table_path.is_file() else None
    runs, findings = run_table(series, registry, run_lumi, sys_fraction=float(options.get("sys_fraction", 0.01)),
                               recorded_source=options.get("recorded_source", "run_table"),
                               table_tolerance=float(options.get("run_table_tolerance", 1e-6)))
    fills_df, ffind = fill_table(series, runs, n_threads, float(options.get("summary_tolerance", 1e-6)))
    all_findings = [f for s in series.values() for f in s.findings] + findings + ffind + annotation_findings(series)
    comparison = None
    if previous_lumi_dir:
        old = load_fills(previous_lumi_dir, expt, opts, fills=fills)
        comparison = compare_deliveries(old, series)
    return LumiSummary(
        series=series, runs=runs, fills=fills_df,
        by_run_type=group_totals(runs) if len(runs) else None,
        totals=bucket_totals(runs), findings=findings_frame(all_findings), comparison=comparison,
        n_negative_raw=sum(s.n_negative_raw for s in series.values()),
        longest_gap_s=max([s.longest_gap_s for s in series.values()], default=0.0),
    )


def finding_counts(findings) -> dict:
    """Number of findings of each kind in :data:`FINDING_KINDS` (zeros included)."""
    counts = findings.kind.value_counts().to_dict() if len(findings) else {}
    return {k: int(counts.get(k, 0)) for k in FINDING_KINDS}


# --- plots ------------------------------------------------------------------------------
def _dates(t_s):
    return np.asarray(t_s, dtype=np.float64).astype("datetime64[s]")


def _time_axis(ax, label):
    import matplotlib.dates as mdates

    ax.xaxis.set_major_locator(mdates.AutoDateLocator(maxticks=6))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
    ax.set_xlabel(label)
    ax.tick_params(axis="x", labelrotation=30)


def plot_fill(ax, s: FillSeries, runs=None):
    """Instantaneous luminosity (Hz/µb) vs time (UTC) for one fill; stable beams shaded,
    the bucket's run windows marked at the bottom."""
    t = _dates(s.time_s)
    ax.step(t, s.lumi, where="post", lw=1.0, color="C0", label="l")
    top = float(s.lumi.max()) if s.lumi.size and s.lumi.max() > 0 else 1.0
    ax.fill_between(t, 0, top * 1.05, where=s.stab > 0, step="post", color="C2", alpha=0.2, label="stable beams")
    if runs is not None:
        for r in runs.itertuples():
            ax.axvspan(_dates([r.start_time])[0], _dates([r.stop_time])[0], ymax=0.05, color="C1", alpha=0.8)
    ax.set_title(f"fill {s.fill} (version {s.version or '?'})")
    ax.set_ylabel("instantaneous luminosity (Hz/µb)")
    ax.set_ylim(0, top * 1.05)
    _time_axis(ax, "time (UTC, month-day hour:minute)")
    return ax


def plot_cumulative(ax, runs):
    """Cumulative delivered and recorded luminosity (pb⁻¹) vs run stop time (UTC), from 0 at
    the start of the first run."""
    r = runs.sort_values("stop_time")
    t = _dates(np.concatenate(([r.start_time.min()], r.stop_time)))
    for col, ls, label in (("delivered_pb", "-", "delivered (Massi)"), ("recorded_pb", "--", "recorded")):
        ax.plot(t, np.concatenate(([0.0], np.cumsum(r[col].fillna(0)))), drawstyle="steps-post", ls=ls, label=label)
    ax.set_title("cumulative integrated luminosity of the bucket")
    ax.set_ylabel("integrated luminosity (pb$^{-1}$)")
    _time_axis(ax, "run stop time (UTC, month-day hour:minute)")
    ax.legend()
    return ax


def plot_runs(ax, runs):
    """Recorded luminosity per run (pb⁻¹) with its total error (stat ⊕ sys), in run order,
    coloured by run type."""
    r = runs.sort_values(["exp", "run"]).reset_index(drop=True)
    x = np.arange(len(r))
    for k, typ in enumerate(sorted(r.run_type.unique())):
        sel = (r.run_type == typ).to_numpy()
        ax.bar(x[sel], r.recorded_pb[sel], yerr=np.hypot(r.stat_pb[sel], r.sys_pb[sel]), color=f"C{k}",
               label=typ, capsize=2)
    step = max(1, len(r) // 25)
    ax.set_xticks(x[::step], [f"{e}:{n}" for e, n in zip(r.exp[::step], r.run[::step])], rotation=90)
    ax.set_title("recorded luminosity per run")
    ax.set_xlabel("run (exp:run)")
    ax.set_ylabel("recorded luminosity (pb$^{-1}$)")
    ax.legend(title="run type")
    return ax
