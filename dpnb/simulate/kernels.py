"""Hit generation: turn tracks into drift-chamber hits (numba kernel + plain-numpy twin).

All random numbers are drawn beforehand by the caller (one set per track x layer "slot"),
so the kernel is a pure function of its inputs and the twin gives identical hits.

Geometry: layer ``l`` sits at radius ``r = (l + 0.5) / n_layers`` (units of the outer
radius); a track with azimuth ``phi0`` and curvature ``curv`` (rad of turning at r = 1)
crosses it at ``phi = phi0 + curv * r``, wire ``floor(phi / 2pi * n_wires) mod n_wires``.
A track crosses its first ``reach`` layers. A slot gives a hit if ``u_eff < efficiency``
and the channel is not dead. The hit time follows the model of :mod:`dpnb.detector`.
Per event, hits are: the tracks' hits (track order, layer order), then the event's
noise hits (given by the caller).
"""

from __future__ import annotations

import numpy as np

from ..kernels._jit import njit, prange

__all__ = ["make_hits", "make_hits_numpy"]

TWO_PI = 2.0 * np.pi


@njit
def _slot_channel(phi0, curv, layer, n_layers, n_wires):
    r = (layer + 0.5) / n_layers
    frac = (phi0 + curv * r) / TWO_PI
    frac = frac - np.floor(frac)
    wire = int(np.floor(frac * n_wires))
    if wire >= n_wires:
        wire = n_wires - 1
    return layer * n_wires + wire


@njit(parallel=True)
def make_hits(
    trk_offsets, phi0, curv, reach, adc_scale, slot_offsets,
    u_eff, u_core, z_drift, u_tail, z_adc,
    t0, dead, noise_offsets, noise_channel, noise_time, noise_adc,
    n_layers, n_wires, efficiency, drift_peak, drift_sigma, core_fraction, tail_lo, tail_hi,
):  # fmt: skip
    """Hits of a chunk of events (numba). Returns (hit_offsets, channel i4, time f4 ns, adc i4, trk_nhits i4).

    ``trk_offsets`` (n_events+1) delimit each event's tracks; ``slot_offsets`` (n_tracks+1)
    each track's slots (``reach`` of them) in the ``u_*``/``z_*`` arrays; ``noise_offsets``
    (n_events+1) each event's noise hits. ``t0`` (ns) and ``dead`` are per channel.
    """
    n_ev = len(trk_offsets) - 1
    n_trk = len(phi0)
    trk_nhits = np.zeros(n_trk, dtype=np.int32)
    for t in prange(n_trk):
        s0 = slot_offsets[t]
        c = 0
        for k in range(reach[t]):
            ch = _slot_channel(phi0[t], curv[t], k, n_layers, n_wires)
            if u_eff[s0 + k] < efficiency and not dead[ch]:
                c += 1
        trk_nhits[t] = c
    counts = np.zeros(n_ev, dtype=np.int64)
    for e in range(n_ev):
        c = noise_offsets[e + 1] - noise_offsets[e]
        for t in range(trk_offsets[e], trk_offsets[e + 1]):
            c += trk_nhits[t]
        counts[e] = c
    hit_offsets = np.zeros(n_ev + 1, dtype=np.int64)
    for e in range(n_ev):
        hit_offsets[e + 1] = hit_offsets[e] + counts[e]
    n_hits = hit_offsets[n_ev]
    channel = np.empty(n_hits, dtype=np.int32)
    time = np.empty(n_hits, dtype=np.float32)
    adc = np.empty(n_hits, dtype=np.int32)
    for e in prange(n_ev):
        h = hit_offsets[e]
        for t in range(trk_offsets[e], trk_offsets[e + 1]):
            s0 = slot_offsets[t]
            for k in range(reach[t]):
                s = s0 + k
                ch = _slot_channel(phi0[t], curv[t], k, n_layers, n_wires)
                if u_eff[s] < efficiency and not dead[ch]:
                    if u_core[s] < core_fraction:
                        drift = drift_sigma * z_drift[s]
                    else:
                        drift = tail_lo + (tail_hi - tail_lo) * u_tail[s]
                    channel[h] = ch
                    time[h] = np.float32(t0[ch] + drift_peak + drift)
                    a = adc_scale[t] * (1.0 + 0.15 * z_adc[s])
                    adc[h] = max(1, int(np.floor(a)))
                    h += 1
        for j in range(noise_offsets[e], noise_offsets[e + 1]):
            channel[h] = noise_channel[j]
            time[h] = np.float32(noise_time[j])
            adc[h] = noise_adc[j]
            h += 1
    return hit_offsets, channel, time, adc, trk_nhits


def make_hits_numpy(
    trk_offsets, phi0, curv, reach, adc_scale, slot_offsets,
    u_eff, u_core, z_drift, u_tail, z_adc,
    t0, dead, noise_offsets, noise_channel, noise_time, noise_adc,
    n_layers, n_wires, efficiency, drift_peak, drift_sigma, core_fraction, tail_lo, tail_hi,
):  # fmt: skip
    """Plain-numpy twin of :func:`make_hits` (same inputs, identical outputs)."""
    n_ev = len(trk_offsets) - 1
    n_trk = len(phi0)
    reach = np.asarray(reach, dtype=np.int64)
    slot_trk = np.repeat(np.arange(n_trk), reach)
    layer = np.arange(len(slot_trk)) - np.repeat(np.asarray(slot_offsets[:-1], dtype=np.int64), reach)
    r = (layer + 0.5) / n_layers
    frac = (phi0[slot_trk] + curv[slot_trk] * r) / TWO_PI
    frac = frac - np.floor(frac)
    wire = np.minimum(np.floor(frac * n_wires).astype(np.int64), n_wires - 1)
    ch = layer * n_wires + wire
    n_slots = len(slot_trk)
    ok = (u_eff[:n_slots] < efficiency) & ~dead[ch]
    trk_nhits = np.bincount(slot_trk[ok], minlength=n_trk).astype(np.int32)
    s = np.flatnonzero(ok)
    drift = np.where(u_core[s] < core_fraction, drift_sigma * z_drift[s], tail_lo + (tail_hi - tail_lo) * u_tail[s])
    sig_time = (t0[ch[s]] + drift_peak + drift).astype(np.float32)
    sig_adc = np.maximum(1, np.floor(adc_scale[slot_trk[s]] * (1.0 + 0.15 * z_adc[s])).astype(np.int64))
    trk_event = np.repeat(np.arange(n_ev), np.diff(trk_offsets))
    sig_event = trk_event[slot_trk[s]]
    noise_event = np.repeat(np.arange(n_ev), np.diff(noise_offsets))
    # order: by event, then signal before noise, then generation order
    event = np.concatenate([sig_event, noise_event])
    kind = np.concatenate([np.zeros(len(s), np.int8), np.ones(len(noise_event), np.int8)])
    order = np.lexsort((np.arange(len(event)), kind, event))
    channel = np.concatenate([ch[s], noise_channel]).astype(np.int32)[order]
    time = np.concatenate([sig_time, np.asarray(noise_time).astype(np.float32)])[order]
    adc = np.concatenate([sig_adc, noise_adc]).astype(np.int32)[order]
    hit_offsets = np.zeros(n_ev + 1, dtype=np.int64)
    np.cumsum(np.bincount(event, minlength=n_ev), out=hit_offsets[1:])
    return hit_offsets, channel, time, adc, trk_nhits
