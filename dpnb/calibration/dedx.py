"""Step 4b, dE/dx gain per run from muon pairs, and the one-pass reader of step 4.

Model (``dpnb.detector``): ``dedx = gain[run] * expected_dedx(p, mass) * (1 + 0.07 N(0,1))``.
Muons from e+e- -> mu+mu- are a clean sample of known mass: the ratio
``dedx / expected_dedx(p, m_mu)`` is ``gain * (1 + 0.07 N)``. The gain is the mean ratio
within ``n_sigma`` robust widths of the median (removing any electron or pion that passed
the selection; for a Gaussian the truncation at 4 sigma moves the mean by nothing and the
width by < 0.1 %), its uncertainty the standard error of that mean.

Dimuon selection (shared with the beam-energy step): the ``hlt_mumu_2trk`` trigger bit
(two fast tracks, little calorimeter energy: rejects Bhabha pairs), exactly two tracks
of opposite charge, each above ``p_min_gev``, back to back within ``max_acol_rad``.

:func:`collect_post_tracking` reads each run once and fills both the beam-spot sums and
the muon dE/dx ratios.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from ..detector import ELECTRON_MASS_GEV, HLT_BITS, MUON_MASS_GEV, expected_dedx
from ..errors import InputError
from ..io.events import iterate_chunks
from ..kernels.tracks import dimuon_candidates
from ..runs import RunId
from .beam_spot import BEAM_SPOT_BRANCHES, BeamSpotSums

__all__ = [
    "DIMUON_BRANCHES", "DEDX_BRANCHES", "DimuonSelection", "select_dimuons", "muon_dedx_ratios",
    "GainFit", "fit_gain", "RunPostTracking", "collect_post_tracking", "post_tracking_figure",
]

DIMUON_BRANCHES = ("hlt_bits", "trk_px", "trk_py", "trk_pz", "trk_charge")
DEDX_BRANCHES = (*DIMUON_BRANCHES, "trk_dedx")


@dataclass(frozen=True)
class DimuonSelection:
    """Cuts of the lepton-pair selection (GeV, rad); ``hlt_bit`` None = no trigger
    requirement; ``mass_gev`` is the lepton mass used for the invariant mass (the muon
    mass; the electron mass for Bhabha pairs selected with ``hlt_bhabha``)."""

    p_min_gev: float = 4.0
    max_acol_rad: float = 0.1
    hlt_bit: str | None = "hlt_mumu_2trk"
    mass_gev: float = MUON_MASS_GEV

    @classmethod
    def from_options(cls, opts: Mapping) -> "DimuonSelection":
        bit = opts.get("dimuon_hlt_bit") or None
        if bit is not None and bit not in HLT_BITS:
            msg = f"option dimuon_hlt_bit = {bit!r}: unknown trigger bit; expected one of {list(HLT_BITS)} or ''"
            raise InputError(msg)
        return cls(float(opts.get("dimuon_p_min_gev", 4.0)), float(opts.get("dimuon_max_acol_rad", 0.1)), bit)

    def bhabha(self) -> "DimuonSelection":
        """The same cuts for e+e- pairs (Bhabha trigger bit, electron mass)."""
        return DimuonSelection(self.p_min_gev, self.max_acol_rad, "hlt_bhabha", ELECTRON_MASS_GEV)


def select_dimuons(chunk, sel: DimuonSelection) -> tuple[np.ndarray, np.ndarray]:
    """(invariant masses in GeV, first-track indices) of the lepton-pair candidates of a chunk."""
    off = chunk.offsets["trk_px"]
    mass, first = dimuon_candidates(chunk.values["trk_px"], chunk.values["trk_py"], chunk.values["trk_pz"],
                                    chunk.values["trk_charge"], off, sel.p_min_gev, sel.max_acol_rad, sel.mass_gev)
    ok = first >= 0
    if sel.hlt_bit is not None:
        ok &= (chunk.flat["hlt_bits"].astype(np.int64) >> HLT_BITS[sel.hlt_bit]) & 1 == 1
    return mass[ok], first[ok]


def muon_dedx_ratios(chunk, sel: DimuonSelection) -> np.ndarray:
    """``dedx / expected_dedx(p, m_mu)`` of both tracks of each dimuon candidate (dimensionless)."""
    _, first = select_dimuons(chunk, sel)
    idx = np.concatenate([first, first + 1])
    v = chunk.values
    p = np.sqrt(v["trk_px"][idx].astype(np.float64) ** 2 + v["trk_py"][idx].astype(np.float64) ** 2
                + v["trk_pz"][idx].astype(np.float64) ** 2)
    return v["trk_dedx"][idx].astype(np.float64) / expected_dedx(p, MUON_MASS_GEV)


@dataclass
class GainFit:
    gain: float
    gain_err: float
    width: float  # relative dE/dx resolution seen in the sample
    n_used: int
    n_total: int
    status: str = "OK"

    def payload(self) -> dict:
        """Data of the ``DedxGain`` payload."""
        return {"gain": float(self.gain), "gain_err": float(self.gain_err)}


def fit_gain(ratios: np.ndarray, n_sigma: float = 4.0, min_tracks: int = 50, iterations: int = 3) -> GainFit:
    """Gain = mean ratio within ``n_sigma`` robust widths of the centre (iterated from the median).

    ``NOT_ENOUGH_DATA`` (NaN values) with fewer than ``min_tracks`` ratios.
    """
    r = np.asarray(ratios, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size < max(min_tracks, 3):
        return GainFit(np.nan, np.nan, np.nan, 0, int(r.size), "NOT_ENOUGH_DATA")
    centre = float(np.median(r))
    sigma = 1.4826 * float(np.median(np.abs(r - centre)))
    used = r
    for _ in range(iterations):
        used = r[np.abs(r - centre) <= n_sigma * sigma]
        if used.size < 3:
            return GainFit(np.nan, np.nan, np.nan, int(used.size), int(r.size), "FAILURE")
        centre = float(used.mean())
        sigma = float(used.std(ddof=1))
    err = sigma / np.sqrt(used.size)
    return GainFit(centre, float(err), sigma / centre, int(used.size), int(r.size))


@dataclass
class RunPostTracking:
    """What step 4 collects from one run: beam-spot sums, muon dE/dx ratios, events read."""

    beam_spot: BeamSpotSums
    dedx_ratios: np.ndarray
    n_events: int


def collect_post_tracking(
    files: Mapping[RunId, str | Path],
    sel: DimuonSelection,
    *,
    max_abs_d0_cm: float = 1.0,
    step_size: int = 200_000,
    n_threads: int = 2,
    schema: Mapping[str, str] | None = None,
    on_bad_file: str = "fail",
    skipped: list | None = None,
) -> dict[RunId, RunPostTracking]:
    """Read each run's file once (chunked) and fill its beam-spot sums and dE/dx ratios."""
    branches = list(dict.fromkeys((*BEAM_SPOT_BRANCHES, *DEDX_BRANCHES)))
    out = {}
    for run, path in sorted(files.items()):
        bs = BeamSpotSums(max_abs_d0_cm=float(max_abs_d0_cm), n_threads=int(n_threads))
        ratios, n_ev = [], 0
        for chunk in iterate_chunks([path], branches, step_size=step_size, schema=schema,
                                    on_bad_file=on_bad_file, skipped=skipped):
            v = chunk.values
            bs.add(v["trk_px"], v["trk_py"], v["trk_d0"], v["trk_z0"], chunk.offsets["trk_px"])
            ratios.append(muon_dedx_ratios(chunk, sel))
            n_ev += chunk.n_events
        out[run] = RunPostTracking(bs, np.concatenate(ratios) if ratios else np.zeros(0), n_ev)
    return out


def post_tracking_figure(path, bs_fit, gain_fit: GainFit, sel: DimuonSelection, *, max_abs_d0_cm: float = 1.0,
                         n_sigma: float = 4.0, step_size: int = 200_000, title: str = ""):
    """Example fits of one run from the first chunk of its file: d0 against phi with the
    fitted beam-spot curve (µm), z0 with the fitted mean (cm), and the muon dE/dx ratio
    with the fitted gain and truncation window. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    chunk = next(iterate_chunks([path], list(dict.fromkeys((*BEAM_SPOT_BRANCHES, *DEDX_BRANCHES))),
                                step_size=step_size))
    v = chunk.values
    phi = np.arctan2(v["trk_py"], v["trk_px"])
    d0 = v["trk_d0"]
    ok = np.abs(d0) < max_abs_d0_cm
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.3), dpi=80)
    axes[0].plot(phi[ok], 1e4 * d0[ok], ",", alpha=0.5)
    if bs_fit.converged:
        grid = np.linspace(-np.pi, np.pi, 200)
        axes[0].plot(grid, 1e4 * (bs_fit.x_cm * np.sin(grid) - bs_fit.y_cm * np.cos(grid)), color="C3", label="fit")
        axes[0].legend(fontsize=7)
    axes[0].set_ylim(-1500, 1500)
    axes[0].set_xlabel("φ [rad]")
    axes[0].set_ylabel("d0 [µm]")
    axes[0].set_title(f"{title}: d0 vs φ")
    zc = bs_fit.z_cm if np.isfinite(bs_fit.z_cm) else float(np.median(v["trk_z0"])) if v["trk_z0"].size else 0.0
    axes[1].hist(v["trk_z0"], bins=60, range=(zc - 0.2, zc + 0.2), histtype="step")
    if bs_fit.converged:
        axes[1].axvline(bs_fit.z_cm, color="C3", label=f"z = {bs_fit.z_cm:.4f} ± {bs_fit.z_err_cm:.4f} cm")
        axes[1].legend(fontsize=7)
    axes[1].set_xlabel("z0 [cm]")
    axes[1].set_ylabel("tracks / 67 µm")
    axes[1].set_title(f"{title}: z0")
    ratio = muon_dedx_ratios(chunk, sel)
    g = gain_fit.gain if np.isfinite(gain_fit.gain) else 1.0
    axes[2].hist(ratio, bins=50, range=(0.6 * g, 1.4 * g), histtype="step")
    if gain_fit.status == "OK":
        axes[2].axvline(gain_fit.gain, color="C3", label=f"gain {gain_fit.gain:.4f} ± {gain_fit.gain_err:.4f}")
        for s in (-1, 1):
            axes[2].axvline(gain_fit.gain * (1 + s * n_sigma * gain_fit.width), color="C1", ls="--")
        axes[2].legend(fontsize=7)
    axes[2].set_xlabel("dE/dx / expected(p, m_μ)")
    axes[2].set_ylabel("muon tracks / bin")
    axes[2].set_title(f"{title}: muon dE/dx ratio")
    fig.tight_layout()
    return fig
