"""What the mc_normalization notebook reads for a bucket: luminosity, MC request, E_cm per run,
on-spill time.

These take a :class:`dpnb.notebook.NotebookContext` and its options; the computations they
feed (:mod:`.normalize`, :mod:`.pot`) take plain tables so tests need no notebook.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..bucket import BucketRuns, select_runs
from ..errors import ChecksumError, ConditionsError, InputError, ParameterError, PipelineError, TagStateError
from ..params import project_root
from .normalize import prepare_lumi

__all__ = ["EcmLookup", "ecm_for_runs", "load_bucket_lumi", "mc_request", "on_spill_time_s", "samples_csv_path"]

#: the payload the beam-energy calibration writes (data: ecm_gev, ecm_err_gev)
ECM_PAYLOAD = "BeamEnergy"

#: the per-run table written by the luminosity_summary notebook
UPSTREAM_NOTEBOOK = "luminosity_summary"
UPSTREAM_FILE = "runs_lumi.csv"


def load_bucket_lumi(ctx, opts: dict) -> tuple[pd.DataFrame, str, bool]:
    """(lumi table from :func:`prepare_lumi`, its source path, True if it is the luminosity_summary's).

    ``opts["lumi_table"]`` names a CSV explicitly; otherwise the luminosity_summary report's
    ``runs_lumi.csv`` is used, falling back to the dataset's ``lumi/run_lumi.csv`` (column
    ``lumi_pb``) when ``lumi_fallback_to_dataset`` is true and no report exists.
    """
    explicit = str(opts.get("lumi_table") or "")
    if explicit:
        path = Path(explicit)
        if not path.is_absolute():
            path = project_root() / path
        return _read(path, opts["lumi_column"], opts["lumi_unit"]), str(path), False
    try:
        path = ctx.upstream_dir(UPSTREAM_NOTEBOOK) / UPSTREAM_FILE
    except PipelineError:
        if not opts.get("lumi_fallback_to_dataset"):
            raise
        path = Path(ctx.data["lumi"]) / "run_lumi.csv"
        return _read(path, "lumi_pb", "pb^-1"), str(path), False
    return _read(path, opts["lumi_column"], opts["lumi_unit"]), str(path), True


def samples_csv_path(ctx, opts: dict) -> Path:
    """The MC inventory CSV: option ``samples_csv`` (relative to the project root) or ``<data.mc>/samples.csv``."""
    given = str(opts.get("samples_csv") or "")
    if not given:
        return Path(ctx.data["mc"]) / "samples.csv"
    path = Path(given)
    return path if path.is_absolute() else project_root() / path


def _read(path: Path, column: str, unit: str) -> pd.DataFrame:
    if not path.is_file():
        msg = f"{path}: per-run luminosity table not found"
        raise InputError(msg)
    return prepare_lumi(pd.read_csv(path), column=column, unit=unit, source=str(path))


def mc_request(ctx, run_types) -> BucketRuns:
    """The bucket's selected runs whose type is also in ``run_types`` (the runs MC is normalised to)."""
    bucket_types = list(ctx.params.get("run_types") or [])
    types = [t for t in run_types if not bucket_types or t in bucket_types]
    if not types:
        msg = (f"notebooks.mc_normalization.run_types = {list(run_types)} shares no run type with the bucket's "
               f"run_types {bucket_types}; expected at least one in common")
        raise ParameterError(msg)
    return select_runs(ctx, run_types=types)


def on_spill_time_s(opts: dict, runs: BucketRuns, duty_factor: float) -> float:
    """On-spill time (s): fixed, or the selected runs' wall time (stop − start) × duty factor."""
    source = opts["time_source"]
    if source == "fixed":
        return float(opts["on_spill_time_s"])
    if source != "runs":
        msg = f"notebooks.mc_normalization.livetime.time_source = {source!r}; expected 'runs' or 'fixed'"
        raise ParameterError(msg)
    frame = runs.selected_frame()
    wall = float((frame["stop_time"] - frame["start_time"]).sum()) if len(frame) else 0.0
    return wall * duty_factor


@dataclass
class EcmLookup:
    """Measured E_cm (GeV) per requested run and the runs without one."""

    source: str  # "conditions" or "nominal"
    values: dict = field(default_factory=dict)  # RunId -> ecm_gev
    errors: dict = field(default_factory=dict)  # RunId -> ecm_err_gev
    missing: list = field(default_factory=list)
    where: str = ""  # database and tag chain read

    @property
    def fraction(self) -> float:
        n = len(self.values) + len(self.missing)
        return len(self.values) / n if n else math.nan

    def frame(self) -> pd.DataFrame:
        """One row per run with a measured E_cm: exp, run, ecm_gev, ecm_err_gev."""
        rows = []
        for r in sorted(self.values):
            rows.append({"exp": r.exp, "run": r.run, "ecm_gev": self.values[r], "ecm_err_gev": self.errors.get(r)})
        return pd.DataFrame(rows, columns=["exp", "run", "ecm_gev", "ecm_err_gev"])


def ecm_for_runs(ctx, opts: dict, runs) -> EcmLookup:
    """E_cm of ``runs`` from the ``BeamEnergy`` payloads of the bucket's global tag chain
    (``ecm_source: conditions``), or none (``nominal``). A run without a payload is listed in
    ``missing`` (``on_missing_ecm: nominal``) or an :class:`InputError` (``fail``). A
    payload whose checksum fails, or an INVALID tag in the chain, always raises."""
    source, policy = opts.get("ecm_source", "nominal"), opts.get("on_missing_ecm", "nominal")
    if source not in ("conditions", "nominal"):
        msg = f"notebooks.mc_normalization.ecm_source = {source!r}; expected 'conditions' or 'nominal'"
        raise ParameterError(msg)
    if policy not in ("nominal", "fail"):
        msg = f"notebooks.mc_normalization.on_missing_ecm = {policy!r}; expected 'nominal' or 'fail'"
        raise ParameterError(msg)
    runs = sorted(runs)
    if source == "nominal":
        return EcmLookup("nominal")
    db_path = Path(ctx.conditions["db"])
    tags = [ctx.conditions["global_tag"], *(ctx.conditions.get("chain") or [])]
    out = EcmLookup("conditions", where=f"{db_path} (global tag chain {tags})")
    if not db_path.is_file():
        out.missing = list(runs)
    else:
        from ..conditions import ConditionsDB

        db = ConditionsDB(db_path)
        try:
            for r in runs:
                try:
                    p = db.get(ECM_PAYLOAD, r, tags)
                except (ChecksumError, TagStateError):
                    raise
                except ConditionsError:
                    out.missing.append(r)
                    continue
                out.values[r] = float(p.data["ecm_gev"])
                out.errors[r] = float(p.data.get("ecm_err_gev", math.nan))
        finally:
            db.close()
    if out.missing and policy == "fail":
        shown = ", ".join(map(str, out.missing[:10])) + (" …" if len(out.missing) > 10 else "")
        msg = (f"{out.where}: no {ECM_PAYLOAD} payload for run{'s' if len(out.missing) > 1 else ''} {shown} of the "
               f"MC request; expected the beam-energy calibration (calibration_beam_energy) to cover every requested "
               f"run (or set notebooks.mc_normalization.on_missing_ecm: nominal)")
        raise InputError(msg)
    return out
