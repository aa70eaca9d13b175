"""Figures of the skim validation report (matplotlib, dpi ≤ 90)."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_retention", "plot_overlap", "plot_skim_histograms", "DPI"]

DPI = 80


def plot_retention(v, sample: str = "data"):
    """Retention per skim on ``sample`` (with binomial errors), the combined MC and the ceiling."""
    import matplotlib.pyplot as plt

    names = [s.name for s in v.skims]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7.5, 3.6), dpi=DPI)
    if sample in v.results:
        st = v.results[sample].stats
        ax.errorbar(x - 0.1, [100 * st[n].retention for n in names], yerr=[100 * st[n].retention_error for n in names],
                    fmt="o", label=f"{sample}")
    comb = [v.combined.get(n) for n in names]
    if any(c is not None for c in comb):
        ax.plot(x + 0.1, [100 * c if c is not None else np.nan for c in comb], "s", label="combined MC (σ-weighted)")
    ax.plot(x, [100 * s.retention_ceiling for s in v.skims], "_", color="red", markersize=30, mew=2, label="ceiling")
    ax.set_xticks(x, names, rotation=20)
    ax.set_ylabel("retention [%]")
    ax.set_title("Skim retention per skim, with the retention ceilings")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def plot_overlap(v, sample: str = "data"):
    """Heatmap of the overlap matrix: events selected by both / events selected by the row's skim."""
    import matplotlib.pyplot as plt

    frame = v.overlap_frame(sample)
    names = list(frame.index)
    fig, ax = plt.subplots(figsize=(6.0, 5.0), dpi=DPI)
    im = ax.imshow(frame.to_numpy(dtype=float), vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            val = frame.iat[i, j]
            if np.isfinite(val):
                ax.text(j, i, f"{val:.2f}", ha="center", va="center", fontsize=7, color="w" if val < 0.6 else "k")
    fig.colorbar(im, ax=ax, label="fraction of the row skim's events [1]")
    ax.set_title(f"Skim overlap ({sample}): selected by both / by row skim")
    ax.set_xlabel("skim")
    ax.set_ylabel("skim (normalisation)")
    fig.tight_layout()
    return fig


def _hist_row(rows, skim, sample, var):
    for r in rows:
        if r["skim"] == skim and r["sample"] == sample and r["variable"] == var:
            return r
    return None


def plot_skim_histograms(v, skim, sample: str = "data"):
    """Key variables of one skim on ``sample``, normalised, with the reference release overlaid
    (and its test p-value) when one is given. The owner is in the title."""
    import matplotlib.pyplot as plt

    variables = list(v.hist_specs)
    if not variables:
        return None
    fig, axes = plt.subplots(1, len(variables), figsize=(3.4 * len(variables), 3.2), dpi=DPI, squeeze=False)
    for ax, var in zip(axes[0], variables):
        spec = v.hist_specs[var]
        cur = _hist_row(v.hist_rows, skim.name, sample, var)
        if cur is None:
            ax.set_visible(False)
            continue
        edges = np.asarray(cur["edges"])
        c = np.asarray(cur["counts"], dtype=float)
        norm = c.sum() or 1.0
        ax.stairs(c / norm, edges, label=f"this release (N={int(c.sum())})")
        if v.reference is not None:
            ref = _hist_row(v.reference["histograms"], skim.name, sample, var)
            if ref is not None and len(ref["counts"]) == len(c):
                rc = np.asarray(ref["counts"], dtype=float)
                ax.stairs(rc / (rc.sum() or 1.0), np.asarray(ref["edges"]), ls="--", label=f"reference (N={int(rc.sum())})")
            test = [r for r in v.histogram_test_rows if (r["skim"], r["sample"], r["variable"]) == (skim.name, sample, var)]
            if test and test[0]["p_value"] is not None:
                ax.set_title(f"{test[0]['test']} p = {test[0]['p_value']:.3g}: {test[0]['verdict']}", fontsize=9)
        unit = f" [{spec.unit}]" if spec.unit else ""
        ax.set_xlabel(f"{spec.label}{unit}")
        ax.set_ylabel("fraction per bin [1]")
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"Skim {skim.name} ({sample}) — owner: {skim.owner}", fontsize=10)
    fig.tight_layout()
    return fig
