"""Selection kernels over jagged objects (numba) and their plain-numpy twins.

Jagged data is ``values`` (one entry per object, all events concatenated) plus
``offsets`` (int64, length ``n_events + 1``, ``offsets[0] == 0``): the objects of event
``i`` are ``values[offsets[i]:offsets[i + 1]]``. Momenta are in GeV, impact parameters
in cm. Kernels take plain arrays, do no I/O and hold no state; ``n_threads`` is the number
of contiguous event blocks processed in parallel (pass the thread count you want to use).

The same kernels serve *candidate multiplicity*: when a file holds several candidate rows
per event, group the rows by event (``offsets`` of the groups) and count the passing rows
with :func:`count_per_event`.
"""

from __future__ import annotations

import numpy as np

from ._jit import njit, prange

__all__ = [
    "count_per_event",
    "count_per_event_numpy",
    "sum_per_event",
    "sum_per_event_numpy",
    "max_per_event",
    "max_per_event_numpy",
    "min_per_event",
    "min_per_event_numpy",
    "count_good_tracks",
    "count_good_tracks_numpy",
    "good_track_event_mask",
    "good_track_event_mask_numpy",
    "leading_pair_mass",
    "leading_pair_mass_numpy",
    "hemisphere_counts",
    "hemisphere_counts_numpy",
]


@njit
def _block(n, n_blocks, b):
    """First and one-past-last index of block ``b`` when ``n`` items are cut into ``n_blocks``."""
    size = (n + n_blocks - 1) // n_blocks
    lo = min(n, b * size)
    hi = min(n, lo + size)
    return lo, hi


# --- segment reductions ------------------------------------------------------------------


@njit(parallel=True)
def count_per_event(mask, offsets, n_threads):
    """Number of ``True`` entries of the per-object ``mask`` in each event (int64)."""
    n = offsets.shape[0] - 1
    out = np.zeros(n, dtype=np.int64)
    nb = max(1, n_threads)
    for b in prange(nb):
        lo, hi = _block(n, nb, b)
        for i in range(lo, hi):
            c = 0
            for j in range(offsets[i], offsets[i + 1]):
                if mask[j]:
                    c += 1
            out[i] = c
    return out


def count_per_event_numpy(mask, offsets):
    """Plain-numpy twin of :func:`count_per_event`."""
    csum = np.zeros(len(mask) + 1, dtype=np.int64)
    np.cumsum(np.asarray(mask, dtype=np.int64), out=csum[1:])
    return csum[offsets[1:]] - csum[offsets[:-1]]


@njit(parallel=True)
def sum_per_event(values, offsets, n_threads):
    """Sum of ``values`` over the objects of each event (float64; 0 for an empty event)."""
    n = offsets.shape[0] - 1
    out = np.zeros(n, dtype=np.float64)
    nb = max(1, n_threads)
    for b in prange(nb):
        lo, hi = _block(n, nb, b)
        for i in range(lo, hi):
            s = 0.0
            for j in range(offsets[i], offsets[i + 1]):
                s += values[j]
            out[i] = s
    return out


def sum_per_event_numpy(values, offsets):
    """Plain-numpy twin of :func:`sum_per_event`."""
    values = np.asarray(values, dtype=np.float64)
    return np.array([values[offsets[i] : offsets[i + 1]].sum() for i in range(len(offsets) - 1)], dtype=np.float64)


@njit(parallel=True)
def _extreme_per_event(values, offsets, empty, largest, n_threads):
    # the first value of each event, replaced by any later one that is larger (``largest``)
    # or smaller; ``empty`` for an event without objects
    n = offsets.shape[0] - 1
    out = np.empty(n, dtype=np.float64)
    nb = max(1, n_threads)
    for b in prange(nb):
        lo, hi = _block(n, nb, b)
        for i in range(lo, hi):
            m = empty
            first = True
            for j in range(offsets[i], offsets[i + 1]):
                v = values[j]
                if first or (v > m if largest else v < m):
                    m = v
                    first = False
            out[i] = m
    return out


def _extreme_per_event_numpy(values, offsets, empty, reduce):
    values = np.asarray(values, dtype=np.float64)
    return np.array(
        [reduce(values[offsets[i] : offsets[i + 1]]) if offsets[i + 1] > offsets[i] else empty
         for i in range(len(offsets) - 1)],
        dtype=np.float64,
    )


def max_per_event(values, offsets, empty, n_threads):
    """Largest of ``values`` in each event (float64); ``empty`` for an event without objects."""
    return _extreme_per_event(values, offsets, empty, True, n_threads)


def max_per_event_numpy(values, offsets, empty):
    """Plain-numpy twin of :func:`max_per_event`."""
    return _extreme_per_event_numpy(values, offsets, empty, np.max)


def min_per_event(values, offsets, empty, n_threads):
    """Smallest of ``values`` in each event (float64); ``empty`` for an event without objects."""
    return _extreme_per_event(values, offsets, empty, False, n_threads)


def min_per_event_numpy(values, offsets, empty):
    """Plain-numpy twin of :func:`min_per_event`."""
    return _extreme_per_event_numpy(values, offsets, empty, np.min)


# --- fused track selections ---------------------------------------------------------------


@njit(parallel=True)
def count_good_tracks(px, py, d0, z0, offsets, pt_min, d0_max, z0_max, n_threads):
    """Per event, the number of tracks with pt > ``pt_min`` (GeV), |d0| < ``d0_max`` (cm)
    and |z0| < ``z0_max`` (cm), in one pass without temporaries (int64)."""
    n = offsets.shape[0] - 1
    out = np.zeros(n, dtype=np.int64)
    pt2_min = pt_min * pt_min
    nb = max(1, n_threads)
    for b in prange(nb):
        lo, hi = _block(n, nb, b)
        for i in range(lo, hi):
            c = 0
            for j in range(offsets[i], offsets[i + 1]):
                # float64 like the numpy twin; pt^2 avoids a square root; '&' of the three
                # tests (no short-circuit branches) keeps the loop branch-free
                x = np.float64(px[j])
                y = np.float64(py[j])
                c += (x * x + y * y > pt2_min) & (abs(np.float64(d0[j])) < d0_max) & (abs(np.float64(z0[j])) < z0_max)
            out[i] = c
    return out


def count_good_tracks_numpy(px, py, d0, z0, offsets, pt_min, d0_max, z0_max):
    """Plain-numpy twin of :func:`count_good_tracks`."""
    px = np.asarray(px, dtype=np.float64)
    py = np.asarray(py, dtype=np.float64)
    d0 = np.asarray(d0, dtype=np.float64)
    z0 = np.asarray(z0, dtype=np.float64)
    good = (px * px + py * py > pt_min * pt_min) & (np.abs(d0) < d0_max) & (np.abs(z0) < z0_max)
    return count_per_event_numpy(good, offsets)


@njit(parallel=True)
def good_track_event_mask(px, py, d0, z0, offsets, pt_min, d0_max, z0_max, n_min, n_threads):
    """Event mask: at least ``n_min`` good tracks (see :func:`count_good_tracks`), without
    storing the counts."""
    n = offsets.shape[0] - 1
    out = np.zeros(n, dtype=np.bool_)
    pt2_min = pt_min * pt_min
    nb = max(1, n_threads)
    for b in prange(nb):
        lo, hi = _block(n, nb, b)
        for i in range(lo, hi):
            c = 0
            for j in range(offsets[i], offsets[i + 1]):
                x = np.float64(px[j])
                y = np.float64(py[j])
                c += (x * x + y * y > pt2_min) & (abs(np.float64(d0[j])) < d0_max) & (abs(np.float64(z0[j])) < z0_max)
            out[i] = c >= n_min
    return out


def good_track_event_mask_numpy(px, py, d0, z0, offsets, pt_min, d0_max, z0_max, n_min):
    """Plain-numpy twin of :func:`good_track_event_mask`."""
    return count_good_tracks_numpy(px, py, d0, z0, offsets, pt_min, d0_max, z0_max) >= n_min


@njit(parallel=True)
def leading_pair_mass(px, py, pz, offsets, mass, n_threads):
    """Invariant mass (GeV) of the two highest-momentum objects of each event, each given
    the mass hypothesis ``mass`` (GeV); NaN for events with fewer than two objects."""
    n = offsets.shape[0] - 1
    out = np.empty(n, dtype=np.float64)
    nb = max(1, n_threads)
    m2 = mass * mass
    for b in prange(nb):
        lo, hi = _block(n, nb, b)
        for i in range(lo, hi):
            i1 = -1
            i2 = -1
            p1 = -1.0
            p2 = -1.0
            for j in range(offsets[i], offsets[i + 1]):
                x = np.float64(px[j])
                y = np.float64(py[j])
                z = np.float64(pz[j])
                p = x * x + y * y + z * z
                if p > p1:
                    i2, p2 = i1, p1
                    i1, p1 = j, p
                elif p > p2:
                    i2, p2 = j, p
            if i2 < 0:
                out[i] = np.nan
                continue
            e = np.sqrt(p1 + m2) + np.sqrt(p2 + m2)
            sx = np.float64(px[i1]) + np.float64(px[i2])
            sy = np.float64(py[i1]) + np.float64(py[i2])
            sz = np.float64(pz[i1]) + np.float64(pz[i2])
            out[i] = np.sqrt(max(0.0, e * e - sx * sx - sy * sy - sz * sz))
    return out


def leading_pair_mass_numpy(px, py, pz, offsets, mass):
    """Plain-numpy twin of :func:`leading_pair_mass`."""
    px, py, pz = (np.asarray(a, dtype=np.float64) for a in (px, py, pz))
    out = np.full(len(offsets) - 1, np.nan)
    for i in range(len(offsets) - 1):
        lo, hi = offsets[i], offsets[i + 1]
        if hi - lo < 2:
            continue
        p2 = px[lo:hi] ** 2 + py[lo:hi] ** 2 + pz[lo:hi] ** 2
        order = np.argsort(-p2, kind="stable")[:2] + lo
        e = np.sqrt(px[order] ** 2 + py[order] ** 2 + pz[order] ** 2 + mass * mass).sum()
        s = np.array([px[order].sum(), py[order].sum(), pz[order].sum()])
        out[i] = np.sqrt(max(0.0, e * e - (s * s).sum()))
    return out


@njit(parallel=True)
def hemisphere_counts(px, py, pz, offsets, n_threads):
    """Per event, the number of objects in the hemisphere of the highest-momentum object
    (itself included) and in the opposite one (p · p_lead < 0); two int64 arrays."""
    n = offsets.shape[0] - 1
    same = np.zeros(n, dtype=np.int64)
    opp = np.zeros(n, dtype=np.int64)
    nb = max(1, n_threads)
    for b in prange(nb):
        lo, hi = _block(n, nb, b)
        for i in range(lo, hi):
            lead = -1
            pmax = -1.0
            for j in range(offsets[i], offsets[i + 1]):
                x = np.float64(px[j])
                y = np.float64(py[j])
                z = np.float64(pz[j])
                p = x * x + y * y + z * z
                if p > pmax:
                    pmax = p
                    lead = j
            if lead < 0:
                continue
            for j in range(offsets[i], offsets[i + 1]):
                dot = (np.float64(px[j]) * px[lead] + np.float64(py[j]) * py[lead]
                       + np.float64(pz[j]) * pz[lead])
                if dot < 0.0:
                    opp[i] += 1
                else:
                    same[i] += 1
    return same, opp


def hemisphere_counts_numpy(px, py, pz, offsets):
    """Plain-numpy twin of :func:`hemisphere_counts`."""
    px, py, pz = (np.asarray(a, dtype=np.float64) for a in (px, py, pz))
    n = len(offsets) - 1
    same = np.zeros(n, dtype=np.int64)
    opp = np.zeros(n, dtype=np.int64)
    for i in range(n):
        lo, hi = offsets[i], offsets[i + 1]
        if hi == lo:
            continue
        p2 = px[lo:hi] ** 2 + py[lo:hi] ** 2 + pz[lo:hi] ** 2
        lead = lo + int(np.argmax(p2))
        dot = px[lo:hi] * px[lead] + py[lo:hi] * py[lead] + pz[lo:hi] * pz[lead]
        opp[i] = int((dot < 0).sum())
        same[i] = (hi - lo) - opp[i]
    return same, opp
