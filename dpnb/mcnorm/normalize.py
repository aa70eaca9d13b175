"""Cross section × luminosity → expected events, MC weights, luminosity ratios and streams.

For every group of MC samples of one process covering one run range (samples of a group
are combined, e.g. several streams of run-dependent MC):

* ``lumi_pb``          Σ L_run over the requested runs of the range (pb⁻¹)
* ``produced_events``  Σ σ(run type, E_cm of the run) · L_run (events produced in the
                       collisions; σ at the table's nominal E_cm unless ``ecm_by_run`` gives
                       the run's measured one, see :meth:`CrossSectionTable.sigma_at`)
* ``expected_events``  produced × prescale (events the data keeps; = σ·L when prescale is 1)
* ``weight``           expected_events / Σw of the group (per unit MC event weight; equals
                       σ·L/N_gen for unweighted samples)
* ``lumi_ratio``       L_MC / L_data with L_MC = Σw/σ of the sample and L_data the
                       luminosity the data recorded for the process, L × prescale
                       (so lumi_ratio = Σw / expected_events; = N_gen/(σ·L) unprescaled)
* ``streams``          whole run-dependent streams the sample provides: floor(lumi_ratio)
* ``lumi_ratio_eff``   N_eff / expected_events of the group: the MC statistics relative to
                       the data's (equal to the group's lumi_ratio for unweighted samples);
                       below ``min_lumi_ratio`` the group is flagged ``low_stats``.

A sample without a run range (``exp = -1``) covers every requested run.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from ..errors import InputError
from ..io.tables import require_columns
from ..runs import RunId
from ..units import expected_events as sigma_times_lumi
from ..units import integrated_to_pb
from .inventory import Sample
from .tables import CrossSectionTable

__all__ = [
    "WEIGHTS_COLUMNS",
    "Normalization",
    "prepare_lumi",
    "normalize",
    "write_csv_atomic",
]

#: columns of mc_weights.csv (the contract with downstream notebooks), then extras
WEIGHTS_COLUMNS = (
    "process", "sample", "sigma_nb", "lumi_pb", "n_generated", "sum_w", "weight", "expected_events",
    "lumi_ratio", "streams",
)
_EXTRA_COLUMNS = (
    "exp", "run_first", "run_last", "n_runs", "prescale", "produced_events", "sum_w2", "n_eff", "group_sum_w",
    "lumi_ratio_eff", "low_stats", "table",
)
_EPS = 1e-9  # rounding tolerance for whole streams (3 × L computed as 2.9999999 × L)


@dataclass
class Normalization:
    """Result of :func:`normalize` (all luminosities in pb⁻¹, cross sections in nb)."""

    table: str
    samples: pd.DataFrame
    runs: pd.DataFrame
    processes: pd.DataFrame
    uncovered: dict = field(default_factory=dict)  # process -> runs requested but in no sample's range
    warnings: list = field(default_factory=list)

    @property
    def min_lumi_ratio_eff(self) -> float:
        vals = self.processes["min_lumi_ratio_eff"].to_numpy(dtype=float)
        vals = vals[np.isfinite(vals)]
        return float(vals.min()) if vals.size else math.nan

    def weight_of(self, sample: str) -> float:
        """The normalisation weight (per unit event weight) of ``sample``."""
        row = self.samples[self.samples["sample"] == sample]
        if row.empty:
            msg = f"no sample {sample!r} in the normalisation; samples: {sorted(self.samples['sample'])}"
            raise InputError(msg)
        return float(row["weight"].iloc[0])


def prepare_lumi(lumi: pd.DataFrame, column: str = "recorded_pb", unit: str = "pb^-1",
                 source: str = "luminosity table") -> pd.DataFrame:
    """Validate a per-run luminosity table and return exp, run, run_type, lumi_pb (pb⁻¹).

    ``unit`` is the unit of ``column`` (converted through :mod:`dpnb.units`); negative,
    missing or repeated runs raise :class:`InputError` naming ``source`` and the run.
    """
    require_columns(lumi, ["exp", "run", "run_type", column], str(source))
    out = pd.DataFrame({
        "exp": lumi["exp"].astype(np.int64).to_numpy(),
        "run": lumi["run"].astype(np.int64).to_numpy(),
        "run_type": lumi["run_type"].astype(str).to_numpy(),
    })
    values = pd.to_numeric(lumi[column], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        msg = (
            f"{source}: run {out.exp[i]}:{out.run[i]}: {column} = {str(lumi[column].iloc[i])!r}; "
            "expected a finite luminosity >= 0"
        )
        raise InputError(msg)
    out["lumi_pb"] = integrated_to_pb(values, unit)
    dup = out.duplicated(["exp", "run"])
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        msg = f"{source}: run {out.exp[i]}:{out.run[i]} appears more than once; expected one row per run"
        raise InputError(msg)
    out.attrs["source"] = source  # named by errors about requested runs
    return out


def _in_range(s: Sample, run: RunId) -> bool:
    if s.exp < 0:
        return True
    return run.exp == s.exp and s.run_first <= run.run <= s.run_last


def normalize(
    samples: Iterable[Sample],
    table: CrossSectionTable,
    lumi: pd.DataFrame,
    runs: Iterable[RunId] | None = None,
    *,
    min_lumi_ratio: float = 1.0,
    lumi_source: str | None = None,
    ecm_by_run: Mapping[RunId, float] | None = None,
) -> Normalization:
    """Normalise ``samples`` to the luminosity of ``runs`` (default: every run of ``lumi``).

    ``lumi`` comes from :func:`prepare_lumi` (columns exp, run, run_type, lumi_pb). Every
    sample's process must be in ``table`` and every requested run in ``lumi``; otherwise
    :class:`InputError` names them (``lumi_source`` defaults to the table's own).
    ``ecm_by_run`` (GeV, e.g. from the ``BeamEnergy`` payloads) evaluates the table's
    energy-dependent cross sections at each listed run's E_cm. See the module docstring for
    the outputs.
    """
    lumi_source = lumi_source or lumi.attrs.get("source", "luminosity table")
    samples = list(samples)
    if not samples:
        msg = "MC inventory is empty: no sample to normalise"
        raise InputError(msg)
    table.check_processes([s.process for s in samples], "MC inventory")
    by_run = {RunId(int(e), int(r)): (t, float(lp)) for e, r, t, lp in
              zip(lumi["exp"], lumi["run"], lumi["run_type"], lumi["lumi_pb"])}
    requested = sorted(set(runs)) if runs is not None else sorted(by_run)
    missing = [r for r in requested if r not in by_run]
    if missing:
        msg = (
            f"{lumi_source}: no luminosity for run{'s' if len(missing) > 1 else ''} "
            f"{', '.join(map(str, missing[:10]))}{' …' if len(missing) > 10 else ''} of the MC request "
            f"({len(requested)} runs); expected every requested run in the luminosity table"
        )
        raise InputError(msg)

    groups: dict[tuple, list[Sample]] = {}
    for s in samples:
        groups.setdefault((s.process, s.exp, s.run_first, s.run_last), []).append(s)

    # a run normalised by two different groups of one process would be counted twice
    owner: dict[tuple[str, RunId], tuple] = {}
    for key, members in groups.items():
        for r in requested:
            if _in_range(members[0], r):
                prev = owner.get((key[0], r))
                if prev is not None:
                    a = sorted(s.sample for s in groups[prev])
                    b = sorted(s.sample for s in members)
                    msg = (
                        f"MC inventory: process {key[0]!r} run {r} is covered by samples {a} and {b} with different "
                        "run ranges; expected non-overlapping ranges (or equal ranges for streams)"
                    )
                    raise InputError(msg)
                owner[(key[0], r)] = key

    sample_rows, run_rows, warnings = [], [], []
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[2], k[3])):
        process, exp, first, last = key
        members = groups[key]
        xs = table[process]
        covered = [r for r in requested if _in_range(members[0], r)]
        lumi_pb = 0.0
        produced = 0.0
        for r in covered:
            rtype, lrun = by_run[r]
            ecm = ecm_by_run.get(r) if ecm_by_run else None
            sigma = table.sigma_at(process, rtype, ecm)
            n_run = float(sigma_times_lumi(sigma, lrun))
            lumi_pb += lrun
            produced += n_run
            run_rows.append({
                "process": process, "exp": r.exp, "run": r.run, "run_type": rtype, "lumi_pb": lrun,
                "ecm_gev": math.nan if ecm is None else float(ecm), "sigma_nb": sigma, "produced_events": n_run,
                "expected_events": n_run * xs.prescale,
                "samples": ",".join(sorted(s.sample for s in members)),
            })
        expected = produced * xs.prescale
        sigma_eff = produced / sigma_times_lumi(1.0, lumi_pb) if lumi_pb > 0 else xs.sigma_nb
        group_sum_w = sum(s.sum_w for s in members)
        group_sum_w2 = sum(s.sum_w2 for s in members)
        group_n_eff = group_sum_w**2 / group_sum_w2
        ratio_eff = group_n_eff / expected if expected > 0 else math.inf
        low = bool(covered) and ratio_eff < min_lumi_ratio
        if low:
            warnings.append(
                f"process {process!r} samples {sorted(s.sample for s in members)}: MC statistics N_eff = "
                f"{group_n_eff:.4g} is {ratio_eff:.3g} × the {expected:.4g} events expected in "
                f"{lumi_pb:.4g} /pb of data, below the threshold {min_lumi_ratio}"
            )
        for s in members:
            ratio = s.sum_w / expected if expected > 0 else math.inf
            sample_rows.append({
                "process": process, "sample": s.sample, "sigma_nb": sigma_eff, "lumi_pb": lumi_pb,
                "n_generated": s.n_generated, "sum_w": s.sum_w,
                "weight": expected / group_sum_w if covered else 0.0,
                "expected_events": expected, "lumi_ratio": ratio,
                "streams": int(math.floor(ratio + _EPS)) if math.isfinite(ratio) else 0,
                "exp": exp, "run_first": first, "run_last": last, "n_runs": len(covered),
                "prescale": xs.prescale, "produced_events": produced, "sum_w2": s.sum_w2, "n_eff": s.n_eff,
                "group_sum_w": group_sum_w, "lumi_ratio_eff": ratio_eff, "low_stats": low, "table": table.tag,
            })

    samples_df = pd.DataFrame(sample_rows, columns=list(WEIGHTS_COLUMNS) + list(_EXTRA_COLUMNS))
    runs_df = pd.DataFrame(run_rows, columns=["process", "exp", "run", "run_type", "lumi_pb", "ecm_gev", "sigma_nb",
                                              "produced_events", "expected_events", "samples"])
    uncovered = {}
    proc_rows = []
    for process in sorted({s.process for s in samples}):
        have = {r for (p, r) in owner if p == process}
        lost = [r for r in requested if r not in have]
        if lost:
            uncovered[process] = lost
            warnings.append(f"process {process!r}: {len(lost)} requested runs are in no sample's run range "
                            f"(first: {lost[0]}); data there has no MC")
        sub = samples_df[samples_df["process"] == process]
        grp = sub.drop_duplicates(["exp", "run_first", "run_last"])
        produced = float(grp["produced_events"].sum())
        expected = float(grp["expected_events"].sum())
        sum_w = float(sub["sum_w"].sum())
        finite_eff = grp["lumi_ratio_eff"][grp["n_runs"] > 0]
        proc_rows.append({
            "process": process, "sigma_nb": table[process].sigma_nb, "prescale": table[process].prescale,
            "lumi_pb": float(grp["lumi_pb"].sum()), "produced_events": produced,
            "expected_events": expected, "n_samples": len(sub),
            "n_generated": int(sub["n_generated"].sum()), "sum_w": sum_w,
            "lumi_ratio": sum_w / expected if expected > 0 else math.inf,
            "min_lumi_ratio_eff": float(finite_eff.min()) if len(finite_eff) else math.nan,
            # whole streams the process provides everywhere: the poorest run range decides
            "streams": min((int(math.floor(g.group_sum_w / g.expected_events + _EPS)) for g in grp.itertuples()
                            if g.n_runs > 0 and g.expected_events > 0), default=0),
            "low_stats": bool(sub["low_stats"].any()), "runs_without_mc": len(lost),
        })
    processes_df = pd.DataFrame(proc_rows)
    return Normalization(table.tag, samples_df, runs_df, processes_df, uncovered, warnings)


def write_csv_atomic(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``df`` as CSV through a temporary file and a rename (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        df.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
