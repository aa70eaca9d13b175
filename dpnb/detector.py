"""The toy detector: geometry, physics model and the event-file schema, in one place.

These are *design* constants, known to both the simulation and the calibration (like a
real experiment's geometry database). The *calibration constants* the simulation injects
(T0 per channel, module shifts, beam spot, gains, beam energy) are random per dataset and
live only in ``truth.json``; calibration code must never read that file.

Event files (``<data>/raw/e{exp:04d}/r{run:05d}.root``, TTree ``events``)
------------------------------------------------------------------------------
event level: ``exp`` i4, ``run`` i4, ``event`` i8, ``timestamp`` f8 (UNIX s),
``hlt_bits`` u4 (see ``HLT_BITS``), ``true_process`` i4 (see ``PROCESSES``)
hits (counter ``nhit``): ``hit_channel`` i4, ``hit_time`` f4 (ns), ``hit_adc`` i4
tracks (counter ``ntrk``): ``trk_px trk_py trk_pz`` f4 (GeV), ``trk_charge`` i4,
``trk_d0 trk_z0`` f4 (cm), ``trk_nhits`` i4, ``trk_dedx`` f4 (arbitrary units, MIP = 1),
``trk_module`` i4 (silicon module crossed), ``trk_res_x trk_res_y`` f4 (µm)
clusters (counter ``nclus``): ``clus_energy`` f4 (GeV), ``clus_theta clus_phi`` f4 (rad)
MC files (``<data>/mc/<sample>.root``) have the same ``events`` tree plus a ``weight``
branch (f8) and a ``runs`` tree with one entry per generated job: ``n_generated`` i8,
``sum_w`` f8, ``sum_w2`` f8 (the full generated sample, before any selection).

Models
------
* hit time: ``hit_time = T0[channel] + DRIFT_PEAK_NS + drift``; ``drift`` is Gaussian
  with width ``DRIFT_SIGMA_NS`` with probability ``DRIFT_CORE_FRACTION``, otherwise
  uniform in ``DRIFT_TAIL_NS``; noise hits are uniform in ``[0, TDC_RANGE_NS)``.
* residuals: a track's fit includes the module's own hit with weight
  ``ALIGN_FIT_WEIGHT``, so the stored (unaligned) residual is
  ``(1 - ALIGN_FIT_WEIGHT) * shift[module] + noise``; after applying corrections ``c``
  the residual becomes ``res - (1 - w) * c`` and alignment iterates ``c += mean(res)``.
* impact parameter: ``d0 = vx*sin(phi) - vy*cos(phi) + resolution`` with the production
  vertex (vx, vy) drawn from the beam spot; ``z0 = vz + resolution``.
* dE/dx: ``dedx = gain[run] * expected_dedx(p, mass) * (1 + DEDX_RESOLUTION * N(0,1))``.
* dimuon mass: ``M(mu mu) = E_cm`` smeared by momentum resolution (and a small ISR tail).
"""

from __future__ import annotations

import numpy as np

N_LAYERS = 56
N_WIRES_PER_LAYER = 256
N_CHANNELS = N_LAYERS * N_WIRES_PER_LAYER  # 14,336
N_MODULES = 16

TDC_RANGE_NS = 400.0
DRIFT_PEAK_NS = 100.0
DRIFT_SIGMA_NS = 4.0
DRIFT_CORE_FRACTION = 0.85
DRIFT_TAIL_NS = (-50.0, 200.0)

ALIGN_FIT_WEIGHT = 0.3
RESIDUAL_SIGMA_UM = 25.0

DEDX_RESOLUTION = 0.07
NOMINAL_ECM_GEV = 10.58
MUON_MASS_GEV = 0.1056584
ELECTRON_MASS_GEV = 0.000511
PION_MASS_GEV = 0.13957

HLT_BITS = {"hlt_hadron": 0, "hlt_mumu_2trk": 1, "hlt_bhabha": 2, "hlt_gamma_gamma": 3}

#: true_process id -> name (data and MC share the ids)
PROCESSES = {
    0: "uubar",
    1: "ddbar",
    2: "ssbar",
    3: "ccbar",
    4: "mixed",
    5: "charged",
    6: "mumu",
    7: "ee",
    8: "gammagamma",
    9: "taupair",
    10: "cosmic",
}
PROCESS_IDS = {v: k for k, v in PROCESSES.items()}

RUN_TYPES = ("4S", "continuum", "scan", "cosmic", "beam", "calib")
PHYSICS_RUN_TYPES = ("4S", "continuum", "scan")

EVENT_BRANCHES = ("exp", "run", "event", "timestamp", "hlt_bits", "true_process")
HIT_BRANCHES = ("hit_channel", "hit_time", "hit_adc")
TRACK_BRANCHES = (
    "trk_px", "trk_py", "trk_pz", "trk_charge", "trk_d0", "trk_z0",
    "trk_nhits", "trk_dedx", "trk_module", "trk_res_x", "trk_res_y",
)
CLUSTER_BRANCHES = ("clus_energy", "clus_theta", "clus_phi")


def channel_id(layer, wire):
    """Channel number of (layer, wire)."""
    return np.asarray(layer) * N_WIRES_PER_LAYER + np.asarray(wire)


def expected_dedx(p_gev, mass_gev):
    """Expected dE/dx in MIP units for momentum ``p_gev`` and particle mass (a Bethe-like shape)."""
    p = np.asarray(p_gev, dtype=np.float64)
    bg = p / mass_gev
    beta2 = bg * bg / (1.0 + bg * bg)
    # normalised so that the minimum (bg ~ 3.5) is close to 1, with a logarithmic rise
    return (1.0 / beta2) * (np.log1p(bg * bg) + 4.0) / (np.log1p(3.5**2) + 4.0) * 0.9 + 0.1 * np.log1p(bg) / np.log1p(3.5)


# --- geometry of one dataset ----------------------------------------------------------
from dataclasses import dataclass, asdict  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402


@dataclass(frozen=True)
class Geometry:
    """Detector geometry of a dataset (``<data root>/detector.json``), not a calibration constant."""

    n_layers: int = N_LAYERS
    n_wires_per_layer: int = N_WIRES_PER_LAYER
    n_modules: int = N_MODULES
    expt: str = "TOY"  # experiment name used in Massi file names

    @property
    def n_channels(self) -> int:
        return self.n_layers * self.n_wires_per_layer

    def to_dict(self) -> dict:
        return asdict(self)


def load_geometry(data_root) -> Geometry:
    """Read ``detector.json`` from a dataset directory (defaults when absent)."""
    path = Path(data_root) / "detector.json"
    if not path.exists():
        return Geometry()
    raw = json.loads(path.read_text())
    fields = {k: raw[k] for k in Geometry.__dataclass_fields__ if k in raw}
    return Geometry(**fields)
