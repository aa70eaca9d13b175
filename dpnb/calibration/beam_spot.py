"""Step 4a, beam spot: position and size per run from track impact parameters.

Model (``dpnb.detector``): ``d0 = vx sin(phi) - vy cos(phi) + resolution`` and
``z0 = vz + resolution``, with the production vertex (vx, vy, vz) of an event drawn from
the beam spot (position x, y, z; Gaussian sizes) and shared by all tracks of the event.

* Position: least squares of ``d0`` on ``(sin phi, -cos phi)`` over all tracks, and the
  mean ``z0``. Because the tracks of one event share a vertex (and the resolution
  depends on momentum), the covariance is the event-clustered sandwich estimator
  ``A^-1 (sum_e g_e g_e^T) A^-1`` with ``g_e`` the score of event ``e``; it is computed
  exactly from per-event moments (``kernels.tracks.beam_spot_moments``).
* Size: two tracks of one event share the vertex, so for a pair ``i < j`` the product of
  their residuals has expectation ``sx^2 sin_i sin_j + sy^2 cos_i cos_j`` in the
  transverse plane and ``sz^2`` along z, free of the track resolution. The transverse
  residuals are taken about a reference position (the fit of the run's first chunk); the
  small offset of that reference from the final position is subtracted.

All sums are additive over chunks and runs: :class:`BeamSpotSums` merges runs for the
run-by-run IOV strategy (a run without enough tracks joins its neighbour).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from ..kernels.tracks import (
    BS_N_EVENTS, BS_N_MOMENTS, BS_N_TRACKS, BS_NN, BS_NZ, BS_V, BS_VV, BS_Z, BS_ZE2, BS_ZZ,
    beam_spot_moments, beam_spot_pair_sums,
)

__all__ = ["BEAM_SPOT_BRANCHES", "BeamSpotSums", "BeamSpotFit", "solve_position", "fit_beam_spot"]

BEAM_SPOT_BRANCHES = ("trk_px", "trk_py", "trk_d0", "trk_z0")
#: events needed before the reference position for the pair sums is fixed
_MIN_EVENTS_FOR_REFERENCE = 20


@dataclass
class BeamSpotSums:
    """Additive beam-spot sums of one run (or of several merged runs)."""

    moments: np.ndarray = field(default_factory=lambda: np.zeros(BS_N_MOMENTS))
    pairs: np.ndarray = field(default_factory=lambda: np.zeros(7))
    #: (x_ref_cm, y_ref_cm, n_pairs) of each reference the pair sums were taken about
    references: list = field(default_factory=list)
    max_abs_d0_cm: float = 1.0
    n_threads: int = 2

    def add(self, px, py, d0, z0, offsets) -> None:
        """Add the tracks of a chunk (jagged: flat arrays plus event ``offsets``; d0, z0 in cm)."""
        offsets = np.asarray(offsets, dtype=np.int64)
        mom = beam_spot_moments(px, py, d0, z0, offsets, self.max_abs_d0_cm, self.n_threads)
        self.moments = self.moments + mom
        if not self.references and self.moments[BS_N_EVENTS] >= _MIN_EVENTS_FOR_REFERENCE:
            x, y, _ = solve_position(self.moments)
            self.references.append([float(x), float(y), 0.0])
        if self.references:
            xr, yr, _ = self.references[-1]
            pairs = beam_spot_pair_sums(px, py, d0, offsets, xr, yr, self.max_abs_d0_cm, self.n_threads)
            self.pairs = self.pairs + pairs
            self.references[-1][2] += pairs[0]

    def __add__(self, other: "BeamSpotSums") -> "BeamSpotSums":
        return BeamSpotSums(self.moments + other.moments, self.pairs + other.pairs,
                            [list(r) for r in self.references + other.references],
                            self.max_abs_d0_cm, self.n_threads)

    @property
    def n_events(self) -> int:
        return int(self.moments[BS_N_EVENTS])

    @property
    def n_tracks(self) -> int:
        return int(self.moments[BS_N_TRACKS])

    @classmethod
    def merged(cls, items: Iterable["BeamSpotSums"]) -> "BeamSpotSums":
        out = None
        for it in items:
            out = it if out is None else out + it
        return out if out is not None else cls()


@dataclass
class BeamSpotFit:
    """Beam-spot position (cm) with uncertainties, sizes (cm), statistics and status."""

    x_cm: float
    y_cm: float
    z_cm: float
    x_err_cm: float
    y_err_cm: float
    z_err_cm: float
    size_x_cm: float
    size_y_cm: float
    size_z_cm: float
    xy_corr: float
    n_events: int
    n_tracks: int
    n_pairs: int
    status: str = "OK"

    @property
    def converged(self) -> bool:
        return self.status == "OK"

    def payload(self) -> dict:
        """Data of the ``BeamSpot`` payload."""
        keys = ("x_cm", "y_cm", "z_cm", "x_err_cm", "y_err_cm", "z_err_cm", "size_x_cm", "size_y_cm", "size_z_cm")
        return {k: float(getattr(self, k)) for k in keys}


def _normal_matrix(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = m[BS_V]
    a = np.array([[v[2], v[3]], [v[3], v[4]]])
    return a, v[:2].copy()


def solve_position(moments: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Least-squares (x, y) in cm and their event-clustered covariance (cm^2) from moments."""
    a, b = _normal_matrix(moments)
    theta = np.linalg.solve(a, b)
    lin = np.array([[1.0, 0.0, -theta[0], -theta[1], 0.0], [0.0, 1.0, 0.0, -theta[0], -theta[1]]])
    meat = lin @ moments[BS_VV].reshape(5, 5) @ lin.T
    a_inv = np.linalg.inv(a)
    g = moments[BS_N_EVENTS]
    cov = a_inv @ meat @ a_inv * (g / (g - 1.0))
    return float(theta[0]), float(theta[1]), cov


def fit_beam_spot(sums: BeamSpotSums, min_events: int = 100) -> BeamSpotFit:
    """Beam-spot position, uncertainties and sizes from a run's (or merged runs') sums.

    Status ``NOT_ENOUGH_DATA`` when fewer than ``min_events`` events have tracks (values
    NaN), ``FAILURE`` when the normal equations are singular (tracks in too few directions).
    """
    m = sums.moments
    g, n = m[BS_N_EVENTS], m[BS_N_TRACKS]
    nan = float("nan")
    if g < max(min_events, 2):
        return BeamSpotFit(*([nan] * 10), int(g), int(n), int(sums.pairs[0]), status="NOT_ENOUGH_DATA")
    a, _ = _normal_matrix(m)
    if np.linalg.cond(a) > 1e8:
        return BeamSpotFit(*([nan] * 10), int(g), int(n), int(sums.pairs[0]), status="FAILURE")
    x, y, cov = solve_position(m)
    # z: mean over tracks, event-clustered variance, size from same-event pairs
    z = m[BS_Z] / n
    var_z = (m[BS_ZE2] - 2.0 * z * m[BS_NZ] + z * z * m[BS_NN]) / n**2 * (g / (g - 1.0))
    n_pairs_z = 0.5 * (m[BS_NN] - n)
    size_z2 = nan
    if n_pairs_z > 0:
        size_z2 = (0.5 * (m[BS_ZE2] - m[BS_ZZ]) - z * (m[BS_NZ] - m[BS_Z]) + z * z * n_pairs_z) / n_pairs_z
    # transverse sizes: pair least squares, minus the reference offsets (pair-count weighted)
    size_x2 = size_y2 = nan
    p = sums.pairs
    if p[0] >= 3:
        uu = np.array([[p[1], p[2]], [p[2], p[3]]])
        if np.linalg.cond(uu) < 1e8:
            c = np.linalg.solve(uu, p[4:6])
            refs = np.array(sums.references, dtype=np.float64).reshape(-1, 3)
            w = refs[:, 2] / max(refs[:, 2].sum(), 1.0)
            size_x2 = c[0] - float(np.sum(w * (x - refs[:, 0]) ** 2))
            size_y2 = c[1] - float(np.sum(w * (y - refs[:, 1]) ** 2))

    def size(v):
        return float(np.sqrt(v)) if np.isfinite(v) and v > 0 else 0.0

    ex, ey = float(np.sqrt(cov[0, 0])), float(np.sqrt(cov[1, 1]))
    return BeamSpotFit(x, y, float(z), ex, ey, float(np.sqrt(max(var_z, 0.0))),
                       size(size_x2), size(size_y2), size(size_z2), float(cov[0, 1] / (ex * ey)),
                       int(g), int(n), int(p[0]))
