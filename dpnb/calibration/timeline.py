"""Timelines of calibration constants per run, with bounds, and pulls against the truth.

A timeline is a long-format :class:`pandas.DataFrame`, one row per (run, quantity), with
columns :data:`TIMELINE_COLUMNS`. ``lower``/``upper`` are the bounds a reviewer expects
the constant to stay in (NaN = no bound); ``in_bounds`` says whether it does. When the
injected truth is known (demo data), ``truth`` and ``pull = (value - truth) / error`` are
filled; otherwise they are NaN.

Every calibration step uses the same frame and :func:`plot_timeline`, so reports look alike.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..runs import RunId

__all__ = ["TIMELINE_COLUMNS", "timeline_frame", "plot_timeline", "pull_summary", "load_truth", "truth_by_run"]

TIMELINE_COLUMNS = ("exp", "run", "quantity", "value", "error", "unit", "lower", "upper", "in_bounds", "truth", "pull")


def timeline_frame(
    runs: Sequence[RunId],
    quantity: str,
    values: Iterable[float],
    errors: Iterable[float],
    unit: str = "",
    lower: float | None = None,
    upper: float | None = None,
    truth: Iterable[float] | None = None,
) -> pd.DataFrame:
    """One quantity per run as a timeline frame (units as given by ``unit``)."""
    values = np.asarray(list(values), dtype=np.float64)
    errors = np.asarray(list(errors), dtype=np.float64)
    if not (len(runs) == values.size == errors.size):
        msg = f"timeline {quantity!r}: {len(runs)} runs but {values.size} values and {errors.size} errors"
        raise ValueError(msg)
    lo = -math.inf if lower is None else float(lower)
    hi = math.inf if upper is None else float(upper)
    tr = np.full(values.size, np.nan) if truth is None else np.asarray(list(truth), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        pull = (values - tr) / errors
    return pd.DataFrame({
        "exp": [r.exp for r in runs],
        "run": [r.run for r in runs],
        "quantity": quantity,
        "value": values,
        "error": errors,
        "unit": unit,
        "lower": np.nan if lower is None else lo,
        "upper": np.nan if upper is None else hi,
        "in_bounds": (values >= lo) & (values <= hi),
        "truth": tr,
        "pull": pull,
    }, columns=list(TIMELINE_COLUMNS))


def plot_timeline(frame: pd.DataFrame, quantities: Sequence[str] | None = None, title: str | None = None, axes=None):
    """One panel per quantity: value ± error per run, bounds dashed, truth as crosses.

    Returns the matplotlib figure. ``quantities`` picks and orders the panels.
    """
    import matplotlib.pyplot as plt

    quantities = list(quantities) if quantities is not None else list(dict.fromkeys(frame["quantity"]))
    if axes is None:
        fig, axes = plt.subplots(len(quantities), 1, figsize=(8, 2.2 * len(quantities) + 0.6), dpi=80,
                                 sharex=True, squeeze=False)
        axes = axes[:, 0]
    else:
        axes = np.atleast_1d(axes)
    fig = axes[0].figure
    for ax, q in zip(axes, quantities):
        d = frame[frame["quantity"] == q]
        x = d["run"].to_numpy()
        bad = ~d["in_bounds"].to_numpy(dtype=bool)
        ax.errorbar(x[~bad], d["value"].to_numpy()[~bad], yerr=d["error"].to_numpy()[~bad], fmt="o", ms=3,
                    color="C0", label="calibrated")
        if bad.any():
            ax.errorbar(x[bad], d["value"].to_numpy()[bad], yerr=d["error"].to_numpy()[bad], fmt="o", ms=4,
                        color="C3", label="out of bounds")
        if np.isfinite(d["truth"]).any():
            ax.plot(x, d["truth"], "x", color="k", label="injected truth")
        # zoom on the data; a bound far away from it is named in the legend instead of squashing the plot
        val, err, tru = (d[c].to_numpy(dtype=np.float64) for c in ("value", "error", "truth"))
        pts = np.concatenate([val - np.nan_to_num(err), val + np.nan_to_num(err), tru])
        pts = pts[np.isfinite(pts)]
        lo_hi = (pts.min(), pts.max()) if pts.size else (0.0, 1.0)
        span = max(lo_hi[1] - lo_hi[0], 1e-12)
        view = [lo_hi[0] - 0.15 * span, lo_hi[1] + 0.15 * span]
        bounds = [float(d[c].iloc[0]) for c in ("lower", "upper")] if len(d) else []
        shown = [b for b in bounds if np.isfinite(b) and lo_hi[0] - 2 * span <= b <= lo_hi[1] + 2 * span]
        if any(np.isfinite(b) for b in bounds):
            label = "bounds [{}, {}]".format(*(f"{b:.4g}" for b in bounds))
            for i, b in enumerate(shown):
                ax.axhline(b, ls="--", color="C1", lw=1, label=label if i == 0 else None)
            if not shown:
                ax.plot([], [], ls="--", color="C1", lw=1, label=label + " (off scale)")
            view = [min([view[0], *shown]), max([view[1], *shown])]
        ax.set_ylim(view[0] - 0.05 * (view[1] - view[0]), view[1] + 0.05 * (view[1] - view[0]))
        unit = d["unit"].iloc[0] if len(d) else ""
        ax.set_ylabel(f"{q} [{unit}]" if unit else q)
        ax.grid(alpha=0.3)
    for ax in axes:
        ax.legend(fontsize=7, loc="best")
    axes[-1].set_xlabel("run number")
    if title:
        axes[0].set_title(title)
    fig.tight_layout()
    return fig


def pull_summary(values, errors, truth) -> dict:
    """Pulls ``(value - truth) / error`` over the finite entries: n, mean, width (sample
    standard deviation), max |pull| and the fraction within 3 sigma."""
    v, e, t = (np.asarray(a, dtype=np.float64).ravel() for a in (values, errors, truth))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = (v - t) / e
    p = p[np.isfinite(p)]
    n = int(p.size)
    if n == 0:
        return {"n": 0, "mean": math.nan, "width": math.nan, "max_abs": math.nan, "frac_within_3sigma": math.nan}
    width = float(np.std(p, ddof=1)) if n > 1 else math.nan
    return {"n": n, "mean": float(p.mean()), "width": width, "max_abs": float(np.max(np.abs(p))),
            "frac_within_3sigma": float(np.mean(np.abs(p) < 3.0))}


def load_truth(data_root) -> dict | None:
    """The injected constants (``<data root>/truth.json``) or None when absent (real data).

    Only tests and truth-comparison plots may use this; calibration code never does.
    """
    path = Path(data_root) / "truth.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def truth_by_run(table: Mapping[str, object] | None, runs: Sequence[RunId], field: str | None = None) -> np.ndarray:
    """Values of a run-keyed truth table (``{"1:5": ...}``) for ``runs`` (NaN where absent);
    ``field`` picks one entry when the values are dicts."""
    out = np.full(len(runs), np.nan)
    if not table:
        return out
    for i, r in enumerate(runs):
        v = table.get(str(r))
        if v is None:
            continue
        out[i] = float(v[field] if field is not None else v)
    return out
