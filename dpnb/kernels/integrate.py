"""Luminosity integration kernels (numba) and their plain-numpy twins.

A lumi sample ``i`` is a time bin starting at ``time_s[i]`` (UNIX s) and lasting
``duration_s[i]`` seconds, with instantaneous luminosity ``lumi[i]`` (Hz/µb), its
point-to-point error ``dlumi[i]`` (Hz/µb) and the stable-beam fraction ``stab[i]`` of the
bin. Integrals are stable-beam weighted::

    L_int = sum_i duration_i * stab_i * lumi_i            (µb^-1)
    var   = sum_i (duration_i * stab_i * dlumi_i) ** 2     (µb^-2, errors uncorrelated)

Kernels take flat float64 arrays that the caller has already cleaned (sorted, unique
times, no negative values; see :mod:`dpnb.lumi`); they do no I/O and hold no state.
``n_chunks`` is the number of independent partial sums run in parallel (pass the thread
count you want to use).
"""

from __future__ import annotations

import numpy as np

from ._jit import njit, prange

__all__ = [
    "TOTAL_FIELDS",
    "WINDOW_FIELDS",
    "bin_durations",
    "bin_durations_numpy",
    "integrate_total",
    "integrate_total_numpy",
    "integrate_windows",
    "integrate_windows_numpy",
    "streaming_sum",
]

#: names of the entries returned by integrate_total
TOTAL_FIELDS = ("integral_ub", "variance_ub2", "stable_time_s", "total_time_s", "peak_hz_per_ub")
#: names of the columns returned by integrate_windows
WINDOW_FIELDS = ("integral_ub", "variance_ub2", "stable_time_s", "covered_time_s", "peak_hz_per_ub")


@njit
def bin_durations(time_s, nominal_s, max_gap_factor):
    """Duration (s) of each bin: the distance to the next timestamp, or ``nominal_s`` when
    that distance exceeds ``max_gap_factor * nominal_s`` (a gap: no extrapolation across it)
    and for the last bin. ``time_s`` must be strictly increasing."""
    n = time_s.shape[0]
    out = np.empty(n, dtype=np.float64)
    limit = max_gap_factor * nominal_s
    for i in range(n - 1):
        d = time_s[i + 1] - time_s[i]
        out[i] = d if d <= limit else nominal_s
    if n > 0:
        out[n - 1] = nominal_s
    return out


def bin_durations_numpy(time_s, nominal_s, max_gap_factor):
    """Plain-numpy twin of :func:`bin_durations`."""
    time_s = np.asarray(time_s, dtype=np.float64)
    if time_s.size == 0:
        return np.empty(0, dtype=np.float64)
    d = np.append(np.diff(time_s), nominal_s)
    return np.where(d <= max_gap_factor * nominal_s, d, nominal_s)


# reassociation lets LLVM vectorize the float sums (the order of additions changes the last
# bits only); NaN/inf semantics are kept (no "fast" nnan/ninf flags)
_REDUCE_MATH = {"reassoc", "contract"}


@njit(parallel=True, fastmath=_REDUCE_MATH)
def integrate_total(duration_s, stab, lumi, dlumi, n_chunks):
    """Whole-array sums, see :data:`TOTAL_FIELDS`: stable-beam weighted integral (µb^-1),
    its variance (µb^-2), time in stable beams (s), total time (s) and peak luminosity
    (Hz/µb) over bins with ``stab > 0``. One pass over the four arrays."""
    n = lumi.shape[0]
    n_chunks = max(1, min(n_chunks, n)) if n > 0 else 1
    part = np.zeros((n_chunks, 5), dtype=np.float64)
    step = (n + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        lo = c * step
        hi = min(n, lo + step)
        s_int = 0.0
        s_var = 0.0
        s_stab = 0.0
        s_time = 0.0
        peak = 0.0
        for i in range(lo, hi):
            w = duration_s[i] * stab[i]
            s_int += w * lumi[i]
            e = w * dlumi[i]
            s_var += e * e
            s_stab += w
            s_time += duration_s[i]
            v = lumi[i] if stab[i] > 0.0 else 0.0  # branch-free, so the loop vectorizes
            peak = max(peak, v)
        part[c, 0] = s_int
        part[c, 1] = s_var
        part[c, 2] = s_stab
        part[c, 3] = s_time
        part[c, 4] = peak
    out = np.zeros(5, dtype=np.float64)
    for c in range(n_chunks):
        for k in range(4):
            out[k] += part[c, k]
        out[4] = max(out[4], part[c, 4])
    return out


def integrate_total_numpy(duration_s, stab, lumi, dlumi, n_chunks=1):
    """Plain-numpy twin of :func:`integrate_total` (``n_chunks`` is ignored)."""
    w = np.asarray(duration_s, dtype=np.float64) * stab
    lumi = np.asarray(lumi, dtype=np.float64)
    sel = np.asarray(stab) > 0
    peak = float(lumi[sel].max()) if sel.any() else 0.0
    return np.array([np.dot(w, lumi), np.sum((w * dlumi) ** 2), w.sum(), np.sum(duration_s), max(peak, 0.0)])


@njit
def _first_bin_ending_after(time_s, duration_s, t):
    # bins are sorted and do not overlap, so bin ends are sorted too: binary search
    lo = 0
    hi = time_s.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if time_s[mid] + duration_s[mid] <= t:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(parallel=True)
def integrate_windows(time_s, duration_s, stab, lumi, dlumi, win_start_s, win_stop_s):
    """Integrate over time windows ``[win_start_s[k], win_stop_s[k])`` (e.g. runs).

    A bin partly inside a window contributes the overlapping fraction of its duration.
    Returns an array (n_windows, 5) with the columns of :data:`WINDOW_FIELDS`: integral
    (µb^-1), variance (µb^-2), stable-beam time (s), time covered by bins (s), peak (Hz/µb).
    Bins must be sorted and non-overlapping (``time_s[i] + duration_s[i] <= time_s[i+1]``).
    """
    nw = win_start_s.shape[0]
    n = time_s.shape[0]
    out = np.zeros((nw, 5), dtype=np.float64)
    for k in prange(nw):
        a = win_start_s[k]
        b = win_stop_s[k]
        i = _first_bin_ending_after(time_s, duration_s, a)
        while i < n and time_s[i] < b:
            t0 = time_s[i]
            t1 = t0 + duration_s[i]
            lo = t0 if t0 > a else a
            hi = t1 if t1 < b else b
            ov = hi - lo
            if ov > 0.0:
                w = ov * stab[i]
                out[k, 0] += w * lumi[i]
                e = w * dlumi[i]
                out[k, 1] += e * e
                out[k, 2] += w
                out[k, 3] += ov
                if stab[i] > 0.0 and lumi[i] > out[k, 4]:
                    out[k, 4] = lumi[i]
            i += 1
    return out


def integrate_windows_numpy(time_s, duration_s, stab, lumi, dlumi, win_start_s, win_stop_s):
    """Plain-numpy twin of :func:`integrate_windows` (overlap of every bin with every window)."""
    t0 = np.asarray(time_s, dtype=np.float64)[None, :]
    t1 = t0 + np.asarray(duration_s, dtype=np.float64)[None, :]
    a = np.asarray(win_start_s, dtype=np.float64)[:, None]
    b = np.asarray(win_stop_s, dtype=np.float64)[:, None]
    ov = np.clip(np.minimum(t1, b) - np.maximum(t0, a), 0.0, None)
    w = ov * stab[None, :]
    inside = (ov > 0) & (stab[None, :] > 0)
    peak = np.where(inside, lumi[None, :], 0.0).max(axis=1) if t0.size else np.zeros(a.shape[0])
    return np.column_stack([w @ lumi, (w * dlumi[None, :]) ** 2 @ np.ones(t0.shape[1]), w.sum(axis=1),
                            ov.sum(axis=1), np.maximum(peak, 0.0)])


@njit(parallel=True, fastmath=_REDUCE_MATH)
def streaming_sum(x, n_chunks):
    """Sum of a float64 array in ``n_chunks`` parallel partial sums: the memory-bandwidth
    reference that the integration benchmark compares against."""
    n = x.shape[0]
    n_chunks = max(1, min(n_chunks, n)) if n > 0 else 1
    step = (n + n_chunks - 1) // n_chunks
    part = np.zeros(n_chunks, dtype=np.float64)
    for c in prange(n_chunks):
        s = 0.0
        for i in range(c * step, min(n, c * step + step)):
            s += x[i]
        part[c] = s
    return part.sum()
