"""Shared plot helpers for the calibration notebooks (matplotlib, small PNG-friendly figures).

Every helper takes an optional ``ax`` and returns the figure, sets a title and axis labels
with units, and draws nothing it was not asked for. Reports embed the figures as PNG, so
the default size and :data:`DPI` are modest.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DPI", "channel_map", "ratio_distribution", "value_distribution", "pull_distribution", "peak_fit",
           "new_axes"]

DPI = 80


def new_axes(ax=None, figsize=(7.0, 3.6), nrows=1, ncols=1):
    """``(fig, ax)``: the given axes' figure, or a new figure with ``nrows x ncols`` axes."""
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(nrows, ncols, figsize=figsize, dpi=DPI, squeeze=True)
    return fig, ax


def _finish(fig, ax, xlabel: str, title: str, ylabel: str = "channels"):
    """Axis labels, title and a small legend; tight layout; returns ``fig``."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def channel_map(values, n_layers: int, n_wires_per_layer: int, *, title: str, label: str, ax=None, log=False,
                marks: dict | None = None, cmap="viridis", vmin=None, vmax=None):
    """Image of a per-channel quantity, layer (y) x wire (x); ``marks`` = {legend: channel ids}
    draws markers on given channels (e.g. hot, dead). NaN values are shown grey."""
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt

    fig, ax = new_axes(ax, figsize=(8.0, 3.4))
    img = np.asarray(values, dtype=np.float64).reshape(n_layers, n_wires_per_layer)
    norm = None
    if log:
        pos = img[np.isfinite(img) & (img > 0)]
        lo = vmin if vmin is not None else (pos.min() if pos.size else 1e-3)
        hi = vmax if vmax is not None else (pos.max() if pos.size else 1.0)
        norm = mcolors.LogNorm(vmin=lo, vmax=max(hi, lo * 1.0001))
        img = np.where(img > 0, img, np.nan)
    cm = plt.get_cmap(cmap).copy()
    cm.set_bad("0.8")
    im = ax.imshow(img, origin="lower", aspect="auto", interpolation="nearest", cmap=cm, norm=norm,
                   vmin=None if log else vmin, vmax=None if log else vmax)
    fig.colorbar(im, ax=ax, label=label, pad=0.01)
    for i, (name, chans) in enumerate((marks or {}).items()):
        chans = np.asarray(chans, dtype=np.int64)
        if chans.size:
            ax.plot(chans % n_wires_per_layer, chans // n_wires_per_layer, ["rs", "wo", "m^"][i % 3], mfc="none",
                    ms=7, mew=1.3, label=f"{name} ({chans.size})")
    if marks:
        ax.legend(fontsize=7, loc="upper right", framealpha=0.8)
    ax.set_xlabel("wire in layer")
    ax.set_ylabel("layer")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def ratio_distribution(ratio, *, thresholds: dict, title: str, xlabel: str, ax=None, bins=80):
    """Histogram of a ratio on a log x axis (zeros drawn in the first bin), with vertical
    threshold lines ``{label: value}``."""
    fig, ax = new_axes(ax)
    r = np.asarray(ratio, dtype=np.float64)
    r = r[np.isfinite(r)]
    floor = 1e-3
    rr = np.clip(r, floor, None)
    top = max(rr.max() if rr.size else 10.0, 10.0) * 1.5
    edges = np.logspace(np.log10(floor), np.log10(top), bins + 1)
    ax.hist(rr, bins=edges, color="C0", alpha=0.8, label=f"channels ({r.size}); zero hits at {floor:g}")
    for i, (name, v) in enumerate(thresholds.items()):
        ax.axvline(v, color=f"C{i + 1}", ls="--", label=f"{name} = {v:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    return _finish(fig, ax, xlabel, title)


def value_distribution(values, *, title: str, xlabel: str, ax=None, bins=60, label=None, truth=None):
    """Histogram of finite ``values``; ``truth`` (same length) is overlaid as a step histogram."""
    fig, ax = new_axes(ax)
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    h, edges, _ = ax.hist(v, bins=bins, color="C0", alpha=0.7,
                          label=label or f"recovered ({v.size}); mean {v.mean():.3g}, rms {v.std():.3g}")
    if truth is not None:
        t = np.asarray(truth, dtype=np.float64)
        t = t[np.isfinite(t)]
        ax.hist(t, bins=edges, histtype="step", color="k", label=f"injected truth ({t.size})")
    return _finish(fig, ax, xlabel, title)


def pull_distribution(pulls, *, title: str, ax=None, bins=50, span=5.0):
    """Pull histogram with the unit Gaussian expected for honest uncertainties (same
    normalisation), and mean / width in the legend."""
    fig, ax = new_axes(ax)
    p = np.asarray(pulls, dtype=np.float64)
    p = p[np.isfinite(p)]
    edges = np.linspace(-span, span, bins + 1)
    ax.hist(np.clip(p, -span + 1e-9, span - 1e-9), bins=edges, color="C0", alpha=0.7,
            label=f"{p.size} channels: mean {p.mean():.3f}, width {p.std(ddof=1):.3f}")
    x = np.linspace(-span, span, 400)
    bw = edges[1] - edges[0]
    ax.plot(x, p.size * bw * np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi), "k-", label="N(0, 1)")
    return _finish(fig, ax, "pull = (recovered - true) / uncertainty", title)


def peak_fit(counts, edges, *, title: str, ax=None, window=None, models: dict | None = None, xlabel="hit time [ns]"):
    """One channel's histogram (``counts`` over ``edges``) with fitted model curves
    ``{label: (x_bin_centres, expected counts)}`` and the fit window shaded."""
    fig, ax = new_axes(ax)
    counts = np.asarray(counts)
    centres = 0.5 * (edges[1:] + edges[:-1])
    ax.errorbar(centres, counts, yerr=np.sqrt(np.maximum(counts, 1)), fmt="k.", ms=3, lw=0.8, label="hits")
    if window is not None:
        ax.axvspan(window[0], window[1], color="C2", alpha=0.12, label="fit window")
    for i, (name, (x, y)) in enumerate((models or {}).items()):
        ax.step(x, y, where="mid", color=f"C{i}", lw=1.4, ls="-" if i == 0 else "--", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"hits / {edges[1] - edges[0]:g} ns")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6)
    fig.tight_layout()
    return fig
