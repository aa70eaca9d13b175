"""Data/MC comparison of a control distribution: histograms, χ² test and the stacked plot.

Control variables are computed per event from one jagged branch of the event files:

* ``ntrk``            number of tracks (entries of ``trk_px``)
* ``nclus``           number of clusters (entries of ``clus_energy``)
* ``visible_energy``  Σ clus_energy (GeV)

Values outside the histogram range go to the first/last bin, so no event is lost from the
absolute normalisation. The χ² compares data counts ``d`` with the normalised MC sum
``m`` (variance ``v`` from the MC weights)::

    χ² = Σ_groups (d - m)² / (m + v),   ndf = number of groups

where adjacent bins are merged from the left until each group expects at least
``min_expected`` MC events (the remainder joins the last full group). The MC is absolutely
normalised (no fitted parameter), so every group is a degree of freedom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from ..detector import PROCESSES
from ..errors import InputError, ParameterError, nearest
from ..io.events import iterate_chunks

__all__ = ["CONTROL_VARIABLES", "Hist", "fill_histogram", "event_values", "control_histograms", "merge_bins",
           "chi2_test", "plot_stack"]

#: variable -> (jagged branch, reduction, axis label with unit)
CONTROL_VARIABLES = {
    "ntrk": ("trk_px", "count", "track multiplicity"),
    "nclus": ("clus_energy", "count", "cluster multiplicity"),
    "visible_energy": ("clus_energy", "sum", "visible energy Σ E_clus [GeV]"),
}


@dataclass
class Hist:
    """A weighted 1D histogram: ``sumw`` and ``sumw2`` per bin, ``edges`` of length n+1."""

    edges: np.ndarray
    sumw: np.ndarray
    sumw2: np.ndarray
    n_events: int = 0
    processes: set = field(default_factory=set)

    @classmethod
    def empty(cls, edges) -> "Hist":
        edges = np.asarray(edges, dtype=np.float64)
        n = len(edges) - 1
        return cls(edges, np.zeros(n), np.zeros(n))

    def __add__(self, other: "Hist") -> "Hist":
        if not np.array_equal(self.edges, other.edges):
            msg = "cannot add histograms with different binning"
            raise ValueError(msg)
        return Hist(self.edges, self.sumw + other.sumw, self.sumw2 + other.sumw2, self.n_events + other.n_events,
                    self.processes | other.processes)


def _variable(name: str):
    if name not in CONTROL_VARIABLES:
        msg = (f"control variable {name!r} is not known; expected one of {sorted(CONTROL_VARIABLES)} "
               f"(nearest: {nearest(name, CONTROL_VARIABLES)})")
        raise ParameterError(msg)
    return CONTROL_VARIABLES[name]


def event_values(values: np.ndarray, offsets: np.ndarray, reduction: str) -> np.ndarray:
    """Per-event count (``"count"``) or sum (``"sum"``) of a jagged branch (values, offsets)."""
    counts = np.diff(offsets)
    if reduction == "count":
        return counts.astype(np.float64)
    event_index = np.repeat(np.arange(len(counts)), counts)
    return np.bincount(event_index, weights=np.asarray(values, dtype=np.float64), minlength=len(counts))


def _clip_into(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    # under/overflow into the edge bins; the last edge is exclusive, so aim just below it
    top = np.nextafter(edges[-1], edges[0])
    return np.clip(x, edges[0], top)


def fill_histogram(files: Iterable, variable: str, edges, *, tree: str = "events", weight_branch: str = "",
                   scale: float = 1.0, schema: Mapping[str, str] | None = None, collect_processes: bool = False,
                   step_size: int = 200_000) -> Hist:
    """Histogram ``variable`` over the events of ``files``; each event counts ``scale × weight``.

    ``weight_branch`` (a per-event branch, "" for unit weights) and the variable's branch
    are looked up through ``schema``. With ``collect_processes`` the process names of
    ``true_process`` seen in the events are collected (ids outside
    :data:`dpnb.detector.PROCESSES` raise :class:`InputError`).
    """
    branch, reduction, _ = _variable(variable)
    edges = np.asarray(edges, dtype=np.float64)
    hist = Hist.empty(edges)
    wanted = [branch] + (["weight"] if weight_branch else []) + (["true_process"] if collect_processes else [])
    smap = dict(schema or {})
    if weight_branch:
        smap["weight"] = weight_branch
    for chunk in iterate_chunks(files, wanted, tree=tree, schema=smap, step_size=step_size):
        vals, offs = chunk.jagged(branch)
        x = _clip_into(event_values(vals, offs, reduction), edges)
        w = scale * (np.asarray(chunk["weight"], dtype=np.float64) if weight_branch else np.ones(len(x)))
        hist.sumw += np.histogram(x, bins=edges, weights=w)[0]
        hist.sumw2 += np.histogram(x, bins=edges, weights=w * w)[0]
        hist.n_events += chunk.n_events
        if collect_processes:
            for pid in np.unique(chunk["true_process"]).tolist():
                if pid not in PROCESSES:
                    msg = (f"{chunk.path}: true_process id {pid} is not in dpnb.detector.PROCESSES "
                           f"{sorted(PROCESSES)}; cannot name its process")
                    raise InputError(msg)
                hist.processes.add(PROCESSES[pid])
    return hist


def control_histograms(data_files: Iterable, samples: Iterable, weights: Mapping[str, float], variable: str, edges,
                       *, schema: Mapping[str, str] | None = None, collect_processes: bool = False
                       ) -> tuple[Hist, dict[str, Hist]]:
    """Data histogram and normalised MC histograms summed per process.

    ``samples`` are :class:`dpnb.mcnorm.Sample` s; ``weights[sample]`` is the normalisation
    weight of each (from :class:`dpnb.mcnorm.Normalization`), multiplying the per-event
    weight named by ``schema["weight"]``. Samples with weight 0 (no requested run) are left out.
    """
    schema = dict(schema or {})
    tree = schema.get("events_tree") or "events"
    data = fill_histogram(list(data_files), variable, edges, collect_processes=collect_processes)
    mc: dict[str, Hist] = {}
    for s in samples:
        scale = float(weights[s.sample])
        if scale == 0.0:
            continue
        h = fill_histogram([s.path], variable, edges, tree=tree, weight_branch=schema.get("weight") or "",
                           scale=scale)
        mc[s.process] = mc[s.process] + h if s.process in mc else h
    return data, mc


def merge_bins(expected: np.ndarray, min_expected: float) -> list[np.ndarray]:
    """Groups of adjacent bin indices, each expecting at least ``min_expected`` (see module doc)."""
    groups: list[list[int]] = []
    current: list[int] = []
    acc = 0.0
    for i, m in enumerate(np.asarray(expected, dtype=np.float64)):
        current.append(i)
        acc += m
        if acc >= min_expected:
            groups.append(current)
            current, acc = [], 0.0
    if current:
        if groups:
            groups[-1].extend(current)
        else:
            groups.append(current)
    return [np.asarray(g, dtype=np.int64) for g in groups]


def chi2_test(data: np.ndarray, mc: np.ndarray, mc_var: np.ndarray | None = None,
              min_expected: float = 5.0) -> dict:
    """χ², ndf and p-value of data counts against normalised MC (see the module docstring)."""
    from scipy import stats

    data = np.asarray(data, dtype=np.float64)
    mc = np.asarray(mc, dtype=np.float64)
    mc_var = np.zeros_like(mc) if mc_var is None else np.asarray(mc_var, dtype=np.float64)
    if data.shape != mc.shape or mc.shape != mc_var.shape:
        msg = f"data {data.shape}, MC {mc.shape} and MC variance {mc_var.shape} must have the same bins"
        raise InputError(msg)
    groups = merge_bins(mc, min_expected)
    chi2 = 0.0
    ndf = 0
    for g in groups:
        d, m, v = data[g].sum(), mc[g].sum(), mc_var[g].sum()
        if m + v <= 0:
            if d > 0:  # data where the MC predicts exactly nothing: incompatible
                return {"chi2": math.inf, "ndf": len(groups), "chi2_ndf": math.inf, "pvalue": 0.0}
            continue
        chi2 += (d - m) ** 2 / (m + v)
        ndf += 1
    pvalue = float(stats.chi2.sf(chi2, ndf)) if ndf > 0 else math.nan
    return {"chi2": float(chi2), "ndf": ndf, "chi2_ndf": chi2 / ndf if ndf else math.nan, "pvalue": pvalue}

def plot_stack(data: Hist, mc: Mapping[str, Hist], variable: str, *, title: str = "", result: dict | None = None,
               dpi: int = 80):
    """Stacked normalised MC per process, data with √N errors, and a data/MC ratio panel."""
    import matplotlib.pyplot as plt

    _, _, xlabel = _variable(variable)
    edges = data.edges
    centers = 0.5 * (edges[1:] + edges[:-1])
    fig, (ax, rax) = plt.subplots(2, 1, sharex=True, figsize=(7, 5.5), dpi=dpi,
                                  gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05})
    base = np.zeros(len(centers))
    order = sorted(mc, key=lambda p: mc[p].sumw.sum())  # small contributions at the bottom
    for proc in order:
        top = base + mc[proc].sumw
        ax.stairs(top, edges, baseline=base, fill=True, label=proc, alpha=0.85)
        base = top
    total_var = sum((h.sumw2 for h in mc.values()), np.zeros(len(centers)))
    ax.stairs(base + np.sqrt(total_var), edges, baseline=base - np.sqrt(total_var), fill=True, color="none",
              hatch="///", edgecolor="0.3", linewidth=0, label="MC stat.")
    ax.errorbar(centers, data.sumw, yerr=np.sqrt(data.sumw), fmt="ko", ms=3, label="data")
    ax.set_ylabel("events / bin")
    ax.set_ylim(0.0, 1.4 * max(float(np.max(base + np.sqrt(total_var))), float(np.max(data.sumw)), 1.0))
    ax.legend(fontsize=7, ncol=3, loc="upper right")  # the headroom above keeps it off the bars
    head = title or f"Data vs normalised MC: {xlabel}"
    if result:
        head += f"\nχ²/ndf = {result['chi2']:.1f}/{result['ndf']}, p = {result['pvalue']:.3g}"
    ax.set_title(head, fontsize=10)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(base > 0, data.sumw / base, np.nan)
        rerr = np.where(base > 0, np.sqrt(data.sumw) / base, np.nan)
        band = np.where(base > 0, np.sqrt(total_var) / base, 0.0)
    rax.stairs(1 + band, edges, baseline=1 - band, fill=True, color="0.85", label="MC stat.")
    rax.errorbar(centers, ratio, yerr=rerr, fmt="ko", ms=3)
    rax.axhline(1.0, color="k", lw=0.8)
    rax.set_ylim(0.5, 1.5)
    rax.set_ylabel("data / MC")
    rax.set_xlabel(xlabel)
    return fig
