"""Cross-domain consistency of a bucket: luminosity, calibration, global tag, MC and skims.

Used by ``notebooks/bucket_summary.ipynb``. Four checks, each one gate whose value is the
number of differences (or the largest relative luminosity difference), with every
difference listed as a row ``{check, run, source, issue}``:

* ``run_sets`` - the bucket's runs (:func:`dpnb.bucket.select_runs`) are the same set in the
  luminosity table (``luminosity_summary``'s ``runs_lumi.csv``), in what each calibration
  step used, and in the global tag's IOV coverage (every payload name covers every run).
  A calibration step's run list is read from its results (first of the tables
  :data:`RUN_TABLES` with ``exp`` and ``run`` columns); a step that records none is
  *derived* from ``select_runs`` and only its ``n_runs`` is compared (the ``sources``
  list says which is which).
* ``mc_luminosity`` - the luminosity MC was normalised to (``mc_normalization``'s
  ``lumi_requested`` and the ``lumi_pb`` of every process in ``mc_weights.csv``) equals the
  luminosity summary's recorded luminosity summed over the runs MC requested, within a
  relative tolerance; MC's runs are in the luminosity table.
* ``skim_events`` - the input event count of every data skim (``skim_validation``) equals
  the processed events: the run registry's ``n_events`` summed over the bucket's runs, the
  events in the run files, each calibration step's ``n_events``, and per run where a step
  records a per-run ``events`` column. ``skim_validation`` records totals only (no
  per-run input counts), so its comparison is of totals.
* ``excluded_runs`` - a run excluded anywhere for a bucket-wide reason (exclude_runs,
  run type, data quality, missing file, no luminosity) is used nowhere else, and every
  source that excludes a run the bucket selected gives a notebook-specific reason (only
  ``mc_normalization``'s own run types are such a reason).

A check whose upstream notebook has not run (or FAILED) is ``not run``: a warning, never
an exception.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import DpnbError
from .runs import RunId

__all__ = [
    "Check", "Upstream", "load_upstream", "bucket_runs", "check_run_sets", "check_mc_luminosity",
    "check_skim_events", "check_excluded_runs", "run_checks", "record_checks", "checks_frame",
    "differences_frame", "RUN_TABLES", "EXCLUDED_TABLES", "DEFAULT_OPTIONS",
]

LUMI = "luminosity_summary"
MC = "mc_normalization"
SKIM = "skim_validation"
#: results tables that hold the runs a notebook used (first present wins)
RUN_TABLES = ("runs_used", "per_run", "runs", "timeline")
#: results tables that hold the runs a notebook excluded, with a ``reason`` column
EXCLUDED_TABLES = ("runs_excluded", "excluded_runs")
DEFAULT_OPTIONS = {"lumi_tolerance": 1e-6, "count_file_events": True}


@dataclass
class Check:
    """One consistency gate: verdict inputs, differences and where each run list came from."""

    name: str
    description: str
    value: float | None = None  # number of differences (or largest relative difference)
    threshold: float = 0
    not_run: str | None = None  # why the check could not be made
    rows: list[dict] = field(default_factory=list)
    sources: list[dict] = field(default_factory=list)

    def add(self, run, source: str, issue: str) -> None:
        self.rows.append({"check": self.name, "run": "" if run is None else str(run), "source": source,
                          "issue": issue})

    @property
    def verdict(self) -> str:
        if self.not_run:
            return "warn"
        return "pass" if self.value is not None and self.value <= self.threshold else "fail"


@dataclass
class Upstream:
    """An upstream notebook's report version (``results`` None when it has none or it FAILED)."""

    name: str
    dir: Path | None
    results: dict | None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.results is not None

    def table(self, name: str) -> list[dict] | None:
        return ((self.results or {}).get("tables") or {}).get(name)

    def value(self, name: str, default=None):
        entry = ((self.results or {}).get("values") or {}).get(name)
        return entry.get("value", default) if isinstance(entry, Mapping) else default


def load_upstream(ctx, name: str) -> Upstream:
    """``ctx.upstream_dir(name)`` and its results, or an Upstream saying why it is not available."""
    try:
        vdir = Path(ctx.upstream_dir(name))
    except DpnbError:
        return Upstream(name, None, None, f"{name} has no report for bucket {ctx.label!r}")
    path = vdir / "results.json"
    try:
        res = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return Upstream(name, vdir, None, f"{path}: unreadable ({exc})")
    if str(res.get("status", "")).lower() == "failed":
        return Upstream(name, vdir, None, f"{name} {vdir.name} FAILED: {res.get('error') or 'no results'}")
    return Upstream(name, vdir, res)


def _rid(row: Mapping) -> RunId:
    return RunId(int(row["exp"]), int(row["run"]))


def _run_list(up: Upstream) -> tuple[list[RunId] | None, str | None]:
    for t in RUN_TABLES:
        rows = up.table(t)
        if rows and all("exp" in r and "run" in r for r in rows):
            return sorted({_rid(r) for r in rows}), t
    return None, None


def _excluded(up: Upstream) -> dict[RunId, str]:
    out: dict[RunId, str] = {}
    for t in EXCLUDED_TABLES:
        for r in up.table(t) or []:
            if "exp" in r and "run" in r:
                out[_rid(r)] = str(r.get("reason") or "excluded")
    return out


def _fmt_runs(runs: Iterable[RunId], limit: int = 8) -> str:
    runs = sorted(runs)
    text = ", ".join(map(str, runs[:limit]))
    return text + (f" ... ({len(runs)} in all)" if len(runs) > limit else "")


def bucket_runs(ctx):
    """The bucket's run selection (:func:`dpnb.bucket.select_runs`)."""
    from .bucket import select_runs

    return select_runs(ctx)


def _read_csv(path: Path):
    import pandas as pd

    return pd.read_csv(path)


def _lumi_table(up: Upstream):
    """``runs_lumi.csv`` of the luminosity summary as a DataFrame, or None with the reason."""
    if not up.ok:
        return None, up.reason
    path = up.dir / "runs_lumi.csv"
    if not path.is_file():
        return None, f"{path} not found (luminosity_summary writes runs_lumi.csv)"
    df = _read_csv(path)
    missing = [c for c in ("exp", "run", "recorded_pb") if c not in df.columns]
    if missing:
        return None, f"{path}: columns {missing} missing; columns present: {list(df.columns)}"
    return df, None


def calibration_steps(ctx) -> list[str]:
    """Calibration notebook names of the project's DAG (``calibration_*``), in DAG order."""
    from .reports.rollup import dag_notebooks

    names = dag_notebooks(ctx.name)
    names += [n for n in getattr(ctx, "_upstream", {}) if n not in names]
    return [n for n in names if n.startswith("calibration_")]


# --- (a) run sets -------------------------------------------------------------------------
def check_run_sets(ctx, sel=None, lumi: Upstream | None = None, calib: Mapping[str, Upstream] | None = None,
                   conditions_db: str | None = None) -> Check:
    """The bucket's runs vs the luminosity table, the calibration inputs and the global tag's IOVs."""
    c = Check("run_sets", "runs differing between the bucket's selection, the luminosity table, the calibration "
                          "inputs and the global tag's IOV coverage")
    sel = sel if sel is not None else bucket_runs(ctx)
    bucket = set(sel.selected)
    bad: set[RunId] = set()
    other = 0  # differences not tied to one run
    missing_parts = []
    c.sources.append({"source": "bucket", "runs": len(bucket), "how": "dpnb.bucket.select_runs (canonical)"})

    lumi = lumi if lumi is not None else load_upstream(ctx, LUMI)
    df, why = _lumi_table(lumi)
    if df is None:
        missing_parts.append(f"luminosity: {why}")
    else:
        lruns = {RunId(int(e), int(r)) for e, r in zip(df["exp"], df["run"])}
        nolumi = {RunId(int(e), int(r)) for e, r, v in zip(df["exp"], df["run"], df["recorded_pb"]) if v != v}
        c.sources.append({"source": LUMI, "runs": len(lruns), "how": f"recorded: {lumi.dir.name}/runs_lumi.csv"})
        for r in sorted(lruns - bucket):
            why_ex = sel.excluded.get(r, "not in the bucket's run ranges")
            c.add(r, LUMI, f"in the luminosity table but not a bucket run ({why_ex})")
            bad.add(r)
        for r in sorted(bucket - lruns):
            c.add(r, LUMI, "bucket run missing from the luminosity table")
            bad.add(r)
        for r in sorted(nolumi & bucket):
            c.add(r, LUMI, "bucket run without luminosity (recorded_pb empty)")
            bad.add(r)

    calib = calib if calib is not None else {n: load_upstream(ctx, n) for n in calibration_steps(ctx)}
    for name, up in calib.items():
        if not up.ok:
            missing_parts.append(f"{name}: {up.reason}")
            continue
        runs, table = _run_list(up)
        n_runs = up.value("n_runs")
        if runs is None:
            c.sources.append({"source": name, "runs": n_runs,
                              "how": "derived: records no run list; bucket selection assumed, n_runs compared"})
            if n_runs is not None and int(n_runs) != len(bucket):
                c.add(None, name, f"records n_runs = {n_runs} but the bucket has {len(bucket)} runs "
                                  "(run list not recorded, so which runs differ is unknown)")
                other += 1
            continue
        used = set(runs)
        c.sources.append({"source": name, "runs": len(used), "how": f"recorded: results table {table!r}"})
        for r in sorted(used - bucket):
            why_ex = sel.excluded.get(r, "not in the bucket")
            c.add(r, name, f"calibration used a run that is not a bucket run ({why_ex})")
            bad.add(r)
        for r in sorted(bucket - used):
            c.add(r, name, "bucket run not used by the calibration step")
            bad.add(r)
        if n_runs is not None and int(n_runs) != len(used):
            c.add(None, name, f"records n_runs = {n_runs} but its run table {table!r} lists {len(used)} runs")
            other += 1

    tag = (ctx.conditions or {}).get("global_tag")
    db_path = conditions_db or (ctx.conditions or {}).get("db")
    if not db_path or not Path(db_path).is_file():
        missing_parts.append(f"global tag: conditions database {db_path} does not exist")
    else:
        from .conditions import ConditionsDB

        try:
            with ConditionsDB(db_path, create=False) as db:
                cov = db.coverage(tag, sorted(bucket))
        except DpnbError as exc:
            missing_parts.append(f"global tag {tag!r}: {exc}")
        else:
            c.sources.append({"source": f"global tag {tag}", "runs": len(bucket),
                              "how": f"IOV coverage of payloads {', '.join(cov.names) or 'none'}"})
            if not cov.names:
                c.add(None, f"global tag {tag}", "the tag holds no payloads")
                other += 1
            for name, runs in sorted(cov.gaps.items()):
                for r in runs:
                    c.add(r, f"global tag {tag}", f"no {name} payload covers this bucket run")
                    bad.add(r)
            for name, pairs in sorted(cov.overlaps.items()):
                c.add(None, f"global tag {tag}", f"{name}: {len(pairs)} pair(s) of payloads with overlapping IOVs")
                other += 1
    c.value = len(bad) + other
    for m in missing_parts:
        c.add(None, m.split(":")[0], f"not run: {m}")
    if missing_parts and not c.value:
        c.not_run = "; ".join(missing_parts)  # nothing contradicts, but not everything could be compared
    return c


# --- (b) MC luminosity --------------------------------------------------------------------
def check_mc_luminosity(ctx, lumi: Upstream | None = None, mc: Upstream | None = None,
                        tolerance: float = 1e-6) -> Check:
    """Luminosity used by the MC normalisation vs the luminosity summary over the same runs."""
    c = Check("mc_luminosity", "largest relative difference between the luminosity MC was normalised to and the "
                               "luminosity summary's recorded luminosity of the same runs", threshold=tolerance)
    lumi = lumi if lumi is not None else load_upstream(ctx, LUMI)
    mc = mc if mc is not None else load_upstream(ctx, MC)
    df, why = _lumi_table(lumi)
    if df is None or not mc.ok:
        c.not_run = "; ".join(x for x in (why, None if mc.ok else mc.reason) if x)
        return c
    col = ((ctx.params.get("notebooks") or {}).get(MC) or {}).get("lumi_column") or "recorded_pb"
    if col not in df.columns:
        col = "recorded_pb"
    per_run = {RunId(int(e), int(r)): float(v) for e, r, v in zip(df["exp"], df["run"], df[col])}
    runs_csv = mc.dir / "mc_weights_runs.csv"
    if runs_csv.is_file():
        rdf = _read_csv(runs_csv)
        mc_runs = sorted({RunId(int(e), int(r)) for e, r in zip(rdf["exp"], rdf["run"])})
        how = f"recorded: {mc.dir.name}/mc_weights_runs.csv"
    else:
        from .mcnorm.bucket_inputs import mc_request

        types = ((ctx.params.get("notebooks") or {}).get(MC) or {}).get("run_types") or ctx.params.get("run_types")
        mc_runs = mc_request(ctx, types).selected
        how = "derived: select_runs with mc_normalization's run_types (mc_weights_runs.csv absent)"
    c.sources.append({"source": MC, "runs": len(mc_runs), "how": how})
    worst = 0.0
    not_in_lumi = [r for r in mc_runs if r not in per_run]
    for r in not_in_lumi:
        c.add(r, MC, "MC requested a run that is not in the luminosity table")
        worst = math.inf
    ref = float(sum(per_run[r] for r in mc_runs if r in per_run and per_run[r] == per_run[r]))
    c.sources.append({"source": LUMI, "runs": len(mc_runs) - len(not_in_lumi),
                      "how": f"{col} summed over MC's runs: {ref:.6g} pb^-1"})

    def compare(label: str, used) -> None:
        nonlocal worst
        if used is None:
            return
        used = float(used)
        rel = abs(used - ref) / abs(ref) if ref else (0.0 if used == 0 else math.inf)
        if rel > tolerance:
            c.add(None, MC, f"{label} = {used:.9g} pb^-1 but the luminosity summary gives {ref:.9g} pb^-1 "
                            f"for the same runs (relative difference {rel:.3g})")
        worst = max(worst, rel)

    compare("lumi_requested", mc.value("lumi_requested"))
    weights = mc.dir / "mc_weights.csv"
    if weights.is_file():
        w = _read_csv(weights)
        if "lumi_pb" in w.columns and "process" in w.columns:
            keys = [k for k in ("exp", "run_first", "run_last") if k in w.columns]
            groups = w.drop_duplicates(subset=["process", *keys])
            for proc, sub in groups.groupby("process", sort=True):
                compare(f"lumi_pb of process {proc!r} (mc_weights.csv)", float(sub["lumi_pb"].sum()))
    else:
        c.add(None, MC, f"{weights} not found: per-process luminosity not checked")
    lumi_source = str(mc.value("lumi_source") or "")
    expected_source = str(lumi.dir / "runs_lumi.csv")
    if lumi_source and Path(lumi_source).parent.parts[-3:] != Path(lumi.dir).parts[-3:]:
        c.add(None, MC, f"normalised with {lumi_source}, not the luminosity summary version summarised here "
                        f"({expected_source})")
        worst = math.inf
    c.value = worst
    return c


# --- (c) skim input events ----------------------------------------------------------------
def _file_events(path: Path) -> int | None:
    import uproot

    try:
        with uproot.open(path) as f:
            return int(f["events"].num_entries)
    except Exception:  # noqa: BLE001 - an unreadable file is a listed difference, not a crash
        return None


def check_skim_events(ctx, sel=None, skim: Upstream | None = None, calib: Mapping[str, Upstream] | None = None,
                      count_file_events: bool = True) -> Check:
    """Skim input events vs the processed events (registry, files, calibration steps)."""
    c = Check("skim_events", "event-count mismatches between the skims' input, the run registry, the event files "
                             "and the calibration steps")
    sel = sel if sel is not None else bucket_runs(ctx)
    skim = skim if skim is not None else load_upstream(ctx, SKIM)
    if not skim.ok:
        c.not_run = skim.reason
        return c
    stats = [r for r in skim.table("skim_statistics") or [] if r.get("sample") == "data"]
    if not stats:
        c.not_run = f"{SKIM} {skim.dir.name} recorded no data sample in its skim_statistics table"
        return c
    reg = sel.registry
    n_reg = {}
    if reg is not None:
        for e, r, n in zip(reg["exp"], reg["run"], reg["n_events"]):
            n_reg[RunId(int(e), int(r))] = int(n)
    expected = sum(n_reg.get(r, 0) for r in sel.selected)
    c.sources.append({"source": "run registry", "runs": len(sel.selected), "how": f"n_events summed: {expected}"})
    c.sources.append({"source": SKIM, "runs": None,
                      "how": "recorded totals only (n_input_events of the data sample per skim; no per-run counts)"})
    n_bad = 0
    for r in sorted(stats, key=lambda x: str(x.get("skim"))):
        n_in = r.get("n_input_events")
        if n_in is None or int(n_in) != expected:
            c.add(None, SKIM, f"skim {r.get('skim')!r}: {n_in} input events, but the bucket's runs hold {expected} "
                              "(run registry n_events)")
            n_bad += 1
    if count_file_events:
        n_files = 0
        for rid in sel.selected:
            path = sel.files.get(rid)
            if path is None:
                continue
            n = _file_events(path)
            n_files += n or 0
            if n is None:
                c.add(rid, "event files", f"{path}: cannot read the 'events' tree")
                n_bad += 1
            elif n != n_reg.get(rid):
                c.add(rid, "event files", f"{path} holds {n} events, the run registry says {n_reg.get(rid)}")
                n_bad += 1
        c.sources.append({"source": "event files", "runs": len(sel.files), "how": f"entries counted: {n_files}"})
    calib = calib if calib is not None else {n: load_upstream(ctx, n) for n in calibration_steps(ctx)}
    for name, up in calib.items():
        if not up.ok:
            continue
        n_ev = up.value("n_events")
        if n_ev is not None and int(n_ev) != expected:
            c.add(None, name, f"processed n_events = {n_ev}, but the bucket's runs hold {expected}")
            n_bad += 1
        for t in ("per_run",):
            for row in up.table(t) or []:
                if "events" in row and "exp" in row and "run" in row:
                    rid = _rid(row)
                    if rid in n_reg and int(row["events"]) != n_reg[rid]:
                        c.add(rid, name,
                              f"processed {row['events']} events of this run, the registry says {n_reg[rid]}")
                        n_bad += 1
    c.value = n_bad
    return c


# --- (d) excluded runs --------------------------------------------------------------------
def _mc_specific(reason: str) -> bool:
    """MC's own run types (option ``run_types``, a subset of the bucket's) are a legitimate MC-only exclusion."""
    return reason.startswith("run type ")


def check_excluded_runs(ctx, sel=None, lumi: Upstream | None = None, calib: Mapping[str, Upstream] | None = None,
                        mc: Upstream | None = None) -> Check:
    """Runs excluded anywhere are excluded, for an agreeing reason, everywhere they appear."""
    c = Check("excluded_runs", "runs excluded (bad file, no luminosity, failed quality, parameter) by one source "
                               "but used by another, or excluded by a source although the bucket selected them")
    sel = sel if sel is not None else bucket_runs(ctx)
    lumi = lumi if lumi is not None else load_upstream(ctx, LUMI)
    mc = mc if mc is not None else load_upstream(ctx, MC)
    calib = calib if calib is not None else {n: load_upstream(ctx, n) for n in calibration_steps(ctx)}
    bucket = set(sel.selected)
    excluded: dict[RunId, dict[str, str]] = {}
    used: dict[str, set[RunId]] = {}
    for r, why in sel.excluded.items():
        excluded.setdefault(r, {})["bucket"] = why
    df, _ = _lumi_table(lumi)
    if df is not None:
        used[LUMI] = set()
        for e, r, v in zip(df["exp"], df["run"], df["recorded_pb"]):
            rid = RunId(int(e), int(r))
            if v != v:
                excluded.setdefault(rid, {})[LUMI] = "no luminosity"
            else:
                used[LUMI].add(rid)
    available = [u for u in (lumi, mc, *calib.values()) if u.ok]
    if not available:
        c.not_run = "; ".join(u.reason or "" for u in (lumi, mc, *calib.values())) or "no upstream notebook"
        return c
    for name, up in [(MC, mc), *calib.items()]:
        if not up.ok:
            continue
        for r, why in _excluded(up).items():
            excluded.setdefault(r, {})[name] = why
        runs, _ = _run_list(up)
        if name == MC and (mc.dir / "mc_weights_runs.csv").is_file():
            rdf = _read_csv(mc.dir / "mc_weights_runs.csv")
            runs = sorted({RunId(int(e), int(r)) for e, r in zip(rdf["exp"], rdf["run"])})
        if runs is not None:
            used[name] = set(runs)
    skim_up = load_upstream(ctx, SKIM)
    if skim_up.ok:
        used[SKIM + " (data = bucket runs)"] = set(bucket)
    bad: set[RunId] = set()
    for rid in sorted(excluded):
        reasons = excluded[rid]
        wide = {s: w for s, w in reasons.items() if not (s == MC and _mc_specific(w))}
        if not wide:
            continue
        users = sorted(s for s, runs in used.items() if rid in runs and s not in reasons)
        why = "; ".join(f"{s}: {w}" for s, w in sorted(wide.items()))
        for s in users:
            c.add(rid, s, f"used here but excluded by {why}")
            bad.add(rid)
        if rid in bucket:
            for s, w in sorted(wide.items()):
                c.add(rid, s, f"excluded here ({w}) but selected by the bucket")
                bad.add(rid)
    c.value = len(bad)
    c.sources.append({"source": "exclusions", "runs": len(excluded),
                      "how": "bucket selection, runs_excluded/excluded_runs tables, luminosity without value"})
    return c


# --- all together ---------------------------------------------------------------------------
def run_checks(ctx, options: Mapping[str, Any] | None = None) -> list[Check]:
    """The four checks for a notebook context (bucket_summary), upstreams loaded once."""
    opts = dict(DEFAULT_OPTIONS, **{k: v for k, v in (options or {}).items() if v is not None})
    try:
        sel = bucket_runs(ctx)
    except DpnbError as exc:  # no run registry: nothing can be compared, but the summary still renders
        return [Check(n, d, not_run=f"the bucket's runs cannot be selected: {exc}") for n, d in (
            ("run_sets", "bucket runs vs luminosity, calibration, global tag"),
            ("mc_luminosity", "MC luminosity vs luminosity summary"),
            ("skim_events", "skim input events vs processed events"),
            ("excluded_runs", "excluded runs consistent everywhere"))]
    lumi, mc, skim = (load_upstream(ctx, n) for n in (LUMI, MC, SKIM))
    calib = {n: load_upstream(ctx, n) for n in calibration_steps(ctx)}
    return [
        check_run_sets(ctx, sel, lumi, calib),
        check_mc_luminosity(ctx, lumi, mc, float(opts["lumi_tolerance"])),
        check_skim_events(ctx, sel, skim, calib, bool(opts["count_file_events"])),
        check_excluded_runs(ctx, sel, lumi, calib, mc),
    ]


def record_checks(ctx, checks: Iterable[Check]) -> dict[str, str]:
    """Record each check as a gate ``consistency.<name>`` plus its differences table; return verdicts."""
    out = {}
    all_rows, sources = [], []
    for c in checks:
        name = f"consistency.{c.name}"
        if c.not_run:
            out[c.name] = ctx.gate(name, 1, 1, "<=", warn_threshold=0, description=f"not run: {c.not_run}")
        else:
            value = c.value if c.value is None or math.isfinite(c.value) else None
            out[c.name] = ctx.gate(name, value, c.threshold, "<=", description=c.description)
        all_rows += c.rows
        sources += [{"check": c.name, **s} for s in c.sources]
    ctx.table("consistency_differences", all_rows)
    ctx.table("consistency_sources", sources)
    return out


def checks_frame(checks: Iterable[Check]):
    import pandas as pd

    rows = [{"check": c.name, "verdict": "not run" if c.not_run else c.verdict, "value": c.value,
             "threshold": c.threshold, "differences": len(c.rows), "note": c.not_run or c.description}
            for c in checks]
    return pd.DataFrame(rows, columns=["check", "verdict", "value", "threshold", "differences", "note"])


def differences_frame(checks: Iterable[Check]):
    import pandas as pd

    return pd.DataFrame([r for c in checks for r in c.rows], columns=["check", "run", "source", "issue"])
