"""Step 3, alignment: silicon-module x/y shifts from track residuals, iterated.

Model (``dpnb.detector``): a track's fit includes the module's own hit with weight
``w = ALIGN_FIT_WEIGHT``, so the unaligned residual mean of module ``m`` is
``(1 - w) * shift[m]``, and after corrections ``c`` it is ``mean_raw - (1 - w) * c``.
The alignment loop adds the mean corrected residual to the corrections until the largest
change is below ``tolerance_um`` (or ``max_iterations`` is hit). It converges to
``c = mean_raw / (1 - w)`` geometrically (factor ``w`` per iteration).

Because the corrected residuals are a linear function of the corrections, one pass over
the data (per-module counts, sums and sums of squares, additive over chunks and runs)
is enough for every iteration: :func:`accumulate_residuals` reads, :func:`align_modules`
iterates. The uncertainty of a shift is the standard error of its raw mean residual
divided by ``1 - w``.

This module also holds :func:`check_dependencies`, used by the three track-based steps to
find runs whose upstream payloads are missing in the conditions database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from ..detector import ALIGN_FIT_WEIGHT
from ..errors import ConditionsError, InputError
from ..io.events import iterate_chunks
from ..kernels.tracks import module_residual_sums
from ..runs import RunId

__all__ = [
    "ALIGNMENT_BRANCHES", "AlignmentResult", "accumulate_residuals", "align_modules", "check_dependencies",
    "ensure_tag", "store_payloads", "residual_figure",
]

ALIGNMENT_BRANCHES = ("trk_module", "trk_res_x", "trk_res_y")


def accumulate_residuals(
    files: Mapping[RunId, str | Path],
    n_modules: int,
    *,
    max_abs_res_um: float = 1000.0,
    step_size: int = 200_000,
    n_threads: int = 2,
    schema: Mapping[str, str] | None = None,
    on_bad_file: str = "fail",
    skipped: list | None = None,
) -> dict[RunId, np.ndarray]:
    """Per run: an array (n_modules, 5) of residual sums (see ``kernels.tracks.RESIDUAL_FIELDS``, µm).

    A module id outside ``[0, n_modules)`` raises :class:`InputError` naming the file,
    the entry range and the bad ids.
    """
    out = {}
    for run, path in sorted(files.items()):
        sums = np.zeros((n_modules, 5))
        for chunk in iterate_chunks([path], ALIGNMENT_BRANCHES, step_size=step_size, schema=schema,
                                    on_bad_file=on_bad_file, skipped=skipped):
            module = chunk.values["trk_module"]
            bad = (module < 0) | (module >= n_modules)
            if bad.any():
                ids = np.unique(module[bad])[:5].tolist()
                msg = (f"{chunk.path}: branch 'trk_module', entries {chunk.entry_start}-{chunk.entry_stop - 1}: "
                       f"module ids {ids} out of range; expected 0..{n_modules - 1} (detector.json n_modules)")
                raise InputError(msg)
            sums += module_residual_sums(module.astype(np.int64), chunk.values["trk_res_x"],
                                         chunk.values["trk_res_y"], n_modules, float(max_abs_res_um), n_threads)
        out[run] = sums
    return out


@dataclass
class AlignmentResult:
    """Module shifts (µm) with uncertainties, the iteration history and the step status."""

    dx_um: np.ndarray
    dy_um: np.ndarray
    dx_err_um: np.ndarray
    dy_err_um: np.ndarray
    n_tracks: np.ndarray
    iterations: int
    converged: bool
    tolerance_um: float
    #: largest |change| of any shift (µm) in each iteration
    max_change_um: list = field(default_factory=list)
    #: corrections after each iteration, shape (iterations, 2, n_modules)
    history: np.ndarray | None = None
    #: mean corrected residual per module after the last iteration (µm), (2, n_modules)
    final_mean_residual_um: np.ndarray | None = None
    status: str = "OK"

    def payload(self) -> dict:
        """Data of the ``ModuleAlignment`` payload."""
        return {"dx_um": self.dx_um, "dy_um": self.dy_um, "dx_err_um": self.dx_err_um,
                "dy_err_um": self.dy_err_um, "iterations": int(self.iterations)}

    def frame(self) -> pd.DataFrame:
        """One row per module: shifts, errors, track count."""
        return pd.DataFrame({"module": np.arange(self.dx_um.size), "n_tracks": self.n_tracks.astype(np.int64),
                             "dx_um": self.dx_um, "dx_err_um": self.dx_err_um,
                             "dy_um": self.dy_um, "dy_err_um": self.dy_err_um})


def _mean_and_error(n, s, s2):
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s / n
        var = (s2 - n * mean * mean) / (n - 1.0)
        err = np.sqrt(np.maximum(var, 0.0) / n)
    return mean, err


def align_modules(
    sums: np.ndarray | Iterable[np.ndarray],
    *,
    fit_weight: float = ALIGN_FIT_WEIGHT,
    tolerance_um: float = 0.1,
    max_iterations: int = 10,
    min_tracks: int = 50,
) -> AlignmentResult:
    """Iterate the module corrections from residual sums (one (n_modules, 5) array or several to add).

    Status: ``OK`` when converged, ``ITERATE`` when ``max_iterations`` was hit first,
    ``NOT_ENOUGH_DATA`` when a module has fewer than ``min_tracks`` tracks (its shift is
    left at 0 with a NaN uncertainty).
    """
    if not isinstance(sums, np.ndarray):
        sums = np.sum([np.asarray(s) for s in sums], axis=0)
    sums = np.asarray(sums, dtype=np.float64)
    if max_iterations < 1:
        msg = f"alignment: max_iterations = {max_iterations}; expected an integer >= 1"
        raise InputError(msg)
    n = sums[:, 0]
    enough = n >= max(min_tracks, 2)
    mx, ex = _mean_and_error(n, sums[:, 1], sums[:, 2])
    my, ey = _mean_and_error(n, sums[:, 3], sums[:, 4])
    raw = np.where(enough, np.stack([mx, my]), 0.0)
    corr = np.zeros_like(raw)
    history, changes = [], []
    converged = False
    for _ in range(max_iterations):
        # residual mean after the corrections so far; the loop adds it to the corrections
        mean_res = raw - (1.0 - fit_weight) * corr
        corr = corr + mean_res
        history.append(corr.copy())
        changes.append(float(np.max(np.abs(mean_res))) if mean_res.size else 0.0)
        if changes[-1] < tolerance_um:
            converged = True
            break
    final_res = raw - (1.0 - fit_weight) * corr
    scale = 1.0 / (1.0 - fit_weight)
    nan = np.full(n.size, np.nan)
    status = "OK" if converged else "ITERATE"
    if not enough.all():
        status = "NOT_ENOUGH_DATA"
    return AlignmentResult(
        dx_um=corr[0], dy_um=corr[1],
        dx_err_um=np.where(enough, ex * scale, nan), dy_err_um=np.where(enough, ey * scale, nan),
        n_tracks=n, iterations=len(history), converged=converged, tolerance_um=float(tolerance_um),
        max_change_um=changes, history=np.array(history), final_mean_residual_um=final_res, status=status,
    )


def check_dependencies(db, step: str, runs: Iterable[RunId], tags, policy: str) -> tuple[list[RunId], dict[RunId, str]]:
    """Runs whose upstream payloads (from the step registry) are all in the tag chain.

    Returns ``(runs to use, {skipped run: reason})``. ``policy="fail"`` raises
    :class:`ConditionsError` naming the payloads and the runs without them; ``"skip"``
    drops those runs. (The notebooks' option ``on_missing_dependency``.)
    """
    from .steps import runs_to_calibrate

    if policy not in ("fail", "skip"):
        msg = f"step {step!r}: on_missing_dependency = {policy!r}; expected 'fail' or 'skip'"
        raise InputError(msg)
    return runs_to_calibrate(db, step, runs, tags, policy=policy)


def ensure_tag(db, tag: str) -> str:
    """Create the global tag when it does not exist; return its state (a frozen tag is left alone:
    re-adding identical payloads to it is a no-op, anything else is refused by the database)."""
    if tag not in {t.name for t in db.list_tags()}:
        db.create_tag(tag, description="calibration of a bucket (dpnb)")
    return db.state(tag)


def store_payloads(db, tag: str, name: str, items, provenance: Mapping) -> list[str]:
    """Add ``[(IOV, data), ...]`` of payload ``name`` to ``tag``; return the revisions (content checksums)."""
    return [db.add_payload(tag, name, data, iov, dict(provenance)) for iov, data in items]


def residual_figure(chunk, module: int, dx_um: float, dy_um: float, title: str = ""):
    """Residuals (µm) of one module in a chunk: as stored, and after the corrections
    ``(dx_um, dy_um)`` (``res - (1 - w) * c``). Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    sel = chunk.values["trk_module"] == module
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), dpi=80)
    bins = np.linspace(-200, 200, 61)
    for ax, c, corr in zip(axes, ("x", "y"), (dx_um, dy_um)):
        raw = chunk.values[f"trk_res_{c}"][sel].astype(np.float64)
        after = raw - (1 - ALIGN_FIT_WEIGHT) * corr
        ax.hist(raw, bins, histtype="step", label=f"raw (mean {raw.mean() if raw.size else np.nan:.1f} µm)")
        ax.hist(after, bins, histtype="step", label=f"aligned (mean {after.mean() if after.size else np.nan:.1f} µm)")
        ax.set_xlabel(f"residual {c} [µm]")
        ax.set_ylabel("tracks / 6.7 µm")
        ax.set_title(f"{title} module {module}: {c}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
