"""Channel masking: hot and dead channels from per-channel hit counts.

A channel's expected count is a robust *reference* built from its neighbours: the median
count of the other channels of its layer inside a sliding window of ``window_wires``
wires (wires of a layer wrap around in azimuth), or of the whole layer
(``reference="layer"``). A median ignores the few bad channels themselves.

* hot: ``count > hot_factor * reference`` and the Poisson probability of at least that
  many hits, given the reference, is below ``p_value``;
* dead: ``count <= dead_factor * reference`` and the Poisson probability of at most that
  many hits is below ``p_value``.

The Poisson condition stops low-statistics fluctuations (few events per channel) from
being flagged: with too little data a channel simply stays ``ok``.
Status codes are those of the ``ChannelMask`` payload (:mod:`dpnb.calibration.payloads`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .payloads import MASK_DEAD, MASK_HOT, MASK_OK

__all__ = ["MaskResult", "reference_counts", "find_bad_channels", "truth_comparison"]


@dataclass
class MaskResult:
    """Outcome of :func:`find_bad_channels` (arrays per channel)."""

    status: np.ndarray  # int8: 0 ok, 1 hot, 2 dead
    counts: np.ndarray  # int64 hits
    reference: np.ndarray  # f8 expected hits from the neighbours
    occupancy: np.ndarray  # f8 hits per event
    n_events: int
    hot_threshold: np.ndarray  # f8 hits above which a channel is hot
    dead_threshold: np.ndarray  # f8 hits at or below which a channel is dead

    @property
    def n_hot(self) -> int:
        return int(np.count_nonzero(self.status == MASK_HOT))

    @property
    def n_dead(self) -> int:
        return int(np.count_nonzero(self.status == MASK_DEAD))

    @property
    def masked_fraction(self) -> float:
        return float(np.count_nonzero(self.status != MASK_OK)) / max(self.status.size, 1)

    def payload(self) -> dict:
        """Data of a ``ChannelMask`` payload."""
        return {"status": self.status.astype(np.int8), "occupancy": self.occupancy.astype(np.float64)}


def reference_counts(counts, n_layers: int, n_wires_per_layer: int, reference: str = "window",
                     window_wires: int = 16) -> np.ndarray:
    """Robust expected count per channel (f8[n_channels]) from its neighbours (see module doc).

    ``reference="window"``: median of the ``window_wires`` nearest wires of the same layer
    (half on each side, the channel itself excluded, wrapping around); ``"layer"``: median of
    the whole layer.
    """
    counts = np.asarray(counts, dtype=np.float64)
    n = n_layers * n_wires_per_layer
    if counts.shape != (n,):
        msg = (f"occupancy has {counts.shape[0] if counts.ndim == 1 else counts.shape} entries; expected "
               f"{n} channels = {n_layers} layers x {n_wires_per_layer} wires (detector.json)")
        raise InputError(msg)
    grid = counts.reshape(n_layers, n_wires_per_layer)
    if reference == "layer":
        ref = np.repeat(np.median(grid, axis=1, keepdims=True), n_wires_per_layer, axis=1)
        return ref.reshape(-1)
    if reference != "window":
        msg = f"reference must be 'window' or 'layer', got {reference!r}"
        raise InputError(msg)
    half = max(1, min(window_wires // 2, (n_wires_per_layer - 1) // 2))
    padded = np.concatenate([grid[:, -half:], grid, grid[:, :half]], axis=1)
    win = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1, axis=1)  # (layers, wires, 2h+1)
    neighbours = np.delete(win, half, axis=2)  # drop the channel itself
    return np.median(neighbours, axis=2).reshape(-1)


def find_bad_channels(counts, n_events: int, n_layers: int, n_wires_per_layer: int, *, hot_factor: float = 5.0,
                      dead_factor: float = 0.1, p_value: float = 1e-6, reference: str = "window",
                      window_wires: int = 16) -> MaskResult:
    """Classify channels as ok / hot / dead from their hit counts over ``n_events`` events."""
    from scipy.stats import poisson

    counts = np.asarray(counts, dtype=np.int64)
    ref = reference_counts(counts, n_layers, n_wires_per_layer, reference, window_wires)
    # Poisson tail probabilities of the observed count given the reference
    p_high = poisson.sf(counts - 1, ref)  # P(X >= count)
    p_low = poisson.cdf(counts, ref)  # P(X <= count)
    hot = (counts > hot_factor * ref) & (p_high < p_value)
    dead = (counts <= dead_factor * ref) & (p_low < p_value)
    status = np.full(counts.size, MASK_OK, dtype=np.int8)
    status[hot] = MASK_HOT
    status[dead] = MASK_DEAD
    occ = counts / n_events if n_events > 0 else np.zeros(counts.size)
    return MaskResult(status, counts, ref, occ.astype(np.float64), int(n_events), hot_factor * ref, dead_factor * ref)


def truth_comparison(status, hot_channels, dead_channels) -> dict:
    """Found / missed / false-positive counts against injected hot and dead channel ids."""
    status = np.asarray(status)
    true_hot = np.zeros(status.size, dtype=bool)
    true_dead = np.zeros(status.size, dtype=bool)
    true_hot[np.asarray(hot_channels, dtype=np.int64)] = True
    true_dead[np.asarray(dead_channels, dtype=np.int64)] = True
    flagged = status != MASK_OK
    false_pos = flagged & ~true_hot & ~true_dead
    return {
        "n_true_hot": int(true_hot.sum()),
        "n_true_hot_found": int(np.count_nonzero(true_hot & (status == MASK_HOT))),
        "n_true_dead": int(true_dead.sum()),
        "n_true_dead_found": int(np.count_nonzero(true_dead & (status == MASK_DEAD))),
        "n_false_positive": int(false_pos.sum()),
        "false_positive_fraction": float(false_pos.sum()) / max(status.size, 1),
        "false_positive_channels": np.flatnonzero(false_pos).tolist(),
    }
