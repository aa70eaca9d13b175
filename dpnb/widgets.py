"""ipywidgets explorers for the calibration notebooks, degrading to static plots in batch.

:func:`explorer` always shows one static example figure (so an executed report, e.g. run
by papermill where no frontend is live, has something to look at); with
``interactive=True`` it also shows controls and an output area redrawn on every change
(in JupyterLab). The notebooks pass their ``interactive`` option, so a batch run can
switch the widgets off entirely.

:func:`t0_channel_explorer` (pick a channel and a run: its hit-time histogram and T0 fit)
and :func:`occupancy_layer_explorer` (pick a layer: hits per wire against the reference
and thresholds) build on it.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

__all__ = ["explorer", "t0_channel_figure", "t0_channel_explorer", "occupancy_layer_figure",
           "occupancy_layer_explorer"]


def _show(fig) -> None:
    import matplotlib.pyplot as plt
    from IPython.display import display

    display(fig)
    plt.close(fig)  # displayed once, not again by the inline backend


def explorer(render: Callable[..., object], controls: Mapping[str, object], example: Mapping[str, object], *,
             interactive: bool = True):
    """Show ``render(**example)`` as a static figure; if ``interactive``, also show the
    ipywidgets ``controls`` ({keyword: widget}) above an output redrawn with
    ``render(**{keyword: widget.value})``. Returns the widget box, or None."""
    _show(render(**example))
    if not interactive:
        return None
    import ipywidgets as w
    from IPython.display import display

    out = w.Output()

    def update(_change=None):
        with out:
            out.clear_output(wait=True)
            _show(render(**{k: c.value for k, c in controls.items()}))

    for c in controls.values():
        c.observe(update, names="value")
    box = w.VBox([w.HBox(list(controls.values())), out])
    display(box)
    return box


def t0_channel_figure(channel: int, run, hists: Mapping, result, edges, *, with_iminuit: bool = False):
    """Hit-time histogram of ``channel`` for ``run`` (a key of ``hists``: "all" or a run
    label) with the bucket fit of ``result`` (a :class:`dpnb.calibration.time_offsets.T0Result`)
    and optionally the iminuit reference fit of the same window."""
    from .calibration.time_offsets import METHOD_FALLBACK, expected_counts, fit_channel_iminuit
    from .plotting import peak_fit

    channel = int(channel)
    counts = np.asarray(hists[run][channel])
    x0 = float(result.window_first_edge_ns[channel])
    bw, nw = result.bin_width_ns, result.window_bins
    centres = x0 + bw * (np.arange(nw) + 0.5)
    models = {}
    status = int(result.status[channel])
    if np.isfinite(result.params[channel]).all():
        scale = 1.0
        if run != "all":  # scale the bucket model to this run's share of the window
            tot = hists["all"][channel]
            b0 = int(round((x0 - edges[0]) / bw))
            scale = counts[b0:b0 + nw].sum() / max(tot[b0:b0 + nw].sum(), 1)
        models["fast fit (bucket)"] = (centres, scale * expected_counts(result.params[channel], x0, bw, nw))
    if with_iminuit:
        b0 = int(round((x0 - edges[0]) / bw))
        win = counts[b0:b0 + nw]
        if win.sum() > 0:
            vals, errs, m = fit_channel_iminuit(win, x0, bw)
            models[f"iminuit: mu {vals[1]:.2f} ± {errs[1]:.2f} ns{'' if m.valid else ' (invalid)'}"] = (
                centres, expected_counts(vals, x0, bw, nw))
    t0 = result.t0_ns[channel]
    err = result.t0_err_ns[channel]
    how = " (fallback)" if result.method[channel] == METHOD_FALLBACK else ""
    title = (f"channel {channel}, run {run}: T0 = {t0:.2f} ± {err:.2f} ns{how}, status {status}, "
             f"{int(counts.sum())} hits")
    return peak_fit(counts, np.asarray(edges), title=title, window=(x0, x0 + nw * bw), models=models)


def t0_channel_explorer(hists: Mapping, result, edges, example_channel: int, *, interactive: bool = True):
    """Explorer of per-channel T0 fits: channel number, run ("all" = the bucket) and the
    iminuit reference fit on demand."""
    n_ch = len(result.t0_ns)

    def render(channel, run, with_iminuit):
        return t0_channel_figure(channel, run, hists, result, edges, with_iminuit=with_iminuit)

    controls = {}
    if interactive:
        import ipywidgets as w

        controls = {
            "channel": w.BoundedIntText(value=int(example_channel), min=0, max=n_ch - 1, description="channel"),
            "run": w.Dropdown(options=list(hists), value="all", description="run"),
            "with_iminuit": w.Checkbox(value=False, description="iminuit fit"),
        }
    return explorer(render, controls, {"channel": example_channel, "run": "all", "with_iminuit": True},
                    interactive=interactive)


def occupancy_layer_figure(layer: int, mask, n_wires_per_layer: int):
    """Hits per wire of one layer with the reference and the hot / dead thresholds
    (``mask`` is a :class:`dpnb.calibration.masking.MaskResult`)."""
    from .plotting import new_axes

    layer = int(layer)
    sl = slice(layer * n_wires_per_layer, (layer + 1) * n_wires_per_layer)
    wires = np.arange(n_wires_per_layer)
    fig, ax = new_axes(None, figsize=(7.5, 3.4))
    ax.step(wires, mask.counts[sl], where="mid", color="k", lw=1, label="hits")
    ax.plot(wires, mask.reference[sl], "C0-", label="reference (neighbour median)")
    ax.plot(wires, mask.hot_threshold[sl], "C3--", label="hot threshold")
    ax.plot(wires, mask.dead_threshold[sl], "C1--", label="dead threshold")
    st = mask.status[sl]
    for code, name, style in ((1, "hot", "rs"), (2, "dead", "bo")):
        sel = st == code
        if sel.any():
            ax.plot(wires[sel], np.maximum(mask.counts[sl][sel], 0.8), style, mfc="none", label=name)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlabel("wire in layer")
    ax.set_ylabel("hits in the bucket")
    ax.set_title(f"layer {layer}: hits per wire, {int(np.count_nonzero(st))} masked")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def occupancy_layer_explorer(mask, n_layers: int, n_wires_per_layer: int, example_layer: int, *,
                             interactive: bool = True):
    """Explorer of the masking: pick a layer, see hits per wire and the thresholds."""
    def render(layer):
        return occupancy_layer_figure(layer, mask, n_wires_per_layer)

    controls = {}
    if interactive:
        import ipywidgets as w

        controls = {"layer": w.IntSlider(value=int(example_layer), min=0, max=n_layers - 1, description="layer")}
    return explorer(render, controls, {"layer": example_layer}, interactive=interactive)
