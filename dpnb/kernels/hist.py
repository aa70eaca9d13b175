"""Histogram fills (numba) and their plain-numpy twins.

Hits come as flat arrays: ``channel`` (integer channel id) and ``value`` (e.g. hit time
in ns). Every fill ignores entries it cannot place (channel outside ``[0, n_channels)``,
value outside ``[lo, hi)`` or NaN); callers that must *report* such entries count them
first with :func:`count_invalid` (the kernels stay pure and never raise).

Binning is regular: bin ``b`` holds ``lo + b * w <= value < lo + (b + 1) * w`` with
``w = (hi - lo) / n_bins``; histograms are int64 counts. Parallel fills split the
entries into ``nthreads`` contiguous blocks, one partial histogram per block, then add the
partials (for the large per-channel histogram the first block fills the output directly);
integer counts make the result exactly the serial one for any thread count. Inputs too
small to be worth a thread run serially (:func:`effective_threads`).
"""

from __future__ import annotations

import numpy as np

from ._jit import njit, prange

__all__ = [
    "effective_threads",
    "MIN_ENTRIES_PER_THREAD",
    "count_invalid",
    "count_invalid_numpy",
    "fill_channel_counts",
    "fill_channel_counts_numpy",
    "fill_channel_hist",
    "fill_channel_hist_numpy",
    "fill_hist1d",
    "fill_hist1d_numpy",
]


#: entries per thread below which a fill runs serially: starting a parallel region costs
#: more than it saves for small inputs (much more on a loaded, shared machine)
MIN_ENTRIES_PER_THREAD = 1 << 19


def effective_threads(nthreads, n_entries, max_threads=None):
    """Threads worth using for ``n_entries`` entries: at most ``nthreads`` (and
    ``max_threads``), with at least :data:`MIN_ENTRIES_PER_THREAD` entries each."""
    t = min(int(nthreads), max(1, int(n_entries) // MIN_ENTRIES_PER_THREAD))
    if max_threads is not None:
        t = min(t, int(max_threads))
    return max(1, t)


@njit
def _count_invalid_range(channel, value, n_channels, start, stop, out):
    # out: [bad channels, NaN values, min channel, max channel] over entries [start, stop)
    bad = 0
    nan = 0
    cmin = np.iinfo(np.int64).max
    cmax = np.iinfo(np.int64).min
    for i in range(start, stop):
        ch = np.int64(channel[i])
        if ch < 0 or ch >= n_channels:
            bad += 1
        if ch < cmin:
            cmin = ch
        if ch > cmax:
            cmax = ch
        if np.isnan(value[i]):
            nan += 1
    out[0] = bad
    out[1] = nan
    out[2] = cmin
    out[3] = cmax


@njit(parallel=True)
def _count_invalid_parallel(channel, value, n_channels, nthreads):
    n = channel.shape[0]
    step = (n + nthreads - 1) // nthreads
    part = np.zeros((nthreads, 4), dtype=np.int64)
    for c in prange(nthreads):
        _count_invalid_range(channel, value, n_channels, c * step, min(n, c * step + step), part[c])
    return part


def count_invalid(channel, value, n_channels, nthreads=1):
    """int64[4]: (number of channels outside ``[0, n_channels)``, number of NaN values, min
    channel, max channel) over all entries, in up to ``nthreads`` parallel blocks."""
    channel = np.ascontiguousarray(channel)
    value = np.ascontiguousarray(value)
    n = channel.shape[0]
    nthreads = effective_threads(nthreads, n)
    if nthreads == 1:
        part = np.zeros((1, 4), dtype=np.int64)
        _count_invalid_range(channel, value, n_channels, 0, n, part[0])
    else:
        part = _count_invalid_parallel(channel, value, n_channels, nthreads)
    return np.array([part[:, 0].sum(), part[:, 1].sum(), part[:, 2].min(), part[:, 3].max()], dtype=np.int64)


def count_invalid_numpy(channel, value, n_channels, nthreads=1):
    """Plain-numpy twin of :func:`count_invalid` (``nthreads`` is ignored)."""
    channel = np.asarray(channel, dtype=np.int64)
    imax, imin = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    return np.array([
        np.count_nonzero((channel < 0) | (channel >= n_channels)),
        np.count_nonzero(np.isnan(value)),
        channel.min() if channel.size else imax,
        channel.max() if channel.size else imin,
    ], dtype=np.int64)


@njit
def _channel_counts_range(channel, start, stop, n_channels, out):
    for i in range(start, stop):
        ch = channel[i]
        if ch >= 0 and ch < n_channels:
            out[ch] += 1


@njit(parallel=True)
def _channel_counts_parallel(channel, n_channels, nthreads):
    n = channel.shape[0]
    step = (n + nthreads - 1) // nthreads
    part = np.zeros((nthreads, n_channels), dtype=np.int64)
    for c in prange(nthreads):
        _channel_counts_range(channel, c * step, min(n, c * step + step), n_channels, part[c])
    out = np.zeros(n_channels, dtype=np.int64)
    for c in range(nthreads):
        out += part[c]
    return out


def fill_channel_counts(channel, n_channels, nthreads=1):
    """Entries per channel (int64[n_channels]): a bincount ignoring out-of-range channels,
    in up to ``nthreads`` parallel partial counts."""
    channel = np.ascontiguousarray(channel)
    nthreads = effective_threads(nthreads, channel.shape[0])
    if nthreads == 1:
        out = np.zeros(n_channels, dtype=np.int64)
        _channel_counts_range(channel, 0, channel.shape[0], n_channels, out)
        return out
    return _channel_counts_parallel(channel, n_channels, nthreads)


def fill_channel_counts_numpy(channel, n_channels, nthreads=1):
    """Plain-numpy twin of :func:`fill_channel_counts`."""
    channel = np.asarray(channel, dtype=np.int64)
    ok = (channel >= 0) & (channel < n_channels)
    return np.bincount(channel[ok], minlength=n_channels).astype(np.int64)


#: hits per chunk in :func:`fill_channel_hist` (bounds the int32 scratch buffer to 4 MB)
FILL_CHUNK = 1 << 20


@njit
def _fill_channel_range(channel, value, n_channels, n_bins, lo, hi, first, stop, flat_out):
    # Add the hits whose flat bin (channel * n_bins + bin) is in [first, stop).
    # A loop that computes a bin and increments a histogram larger than the caches at once
    # is slow: each increment misses the cache and the misses do not overlap. Computing a
    # chunk's flat indices first (streaming) and then incrementing lets the CPU keep many
    # misses in flight (~3x faster).
    n = channel.shape[0]
    scale = n_bins / (hi - lo)
    idx = np.empty(min(n, FILL_CHUNK), dtype=np.int32)
    for c0 in range(0, n, FILL_CHUNK):
        c1 = min(n, c0 + FILL_CHUNK)
        for i in range(c0, c1):
            ch = channel[i]
            x = value[i]
            v = -1
            if ch >= 0 and ch < n_channels and x >= lo and x < hi:
                b = int((x - lo) * scale)
                if b >= n_bins:
                    b = n_bins - 1
                v = ch * n_bins + b
            idx[i - c0] = v
        for j in range(c1 - c0):
            v = idx[j]
            if v >= first and v < stop:
                flat_out[v] += 1


@njit(parallel=True)
def _fill_channel_parallel(channel, value, n_channels, n_bins, lo, hi, nthreads, flat_out):
    # Each thread fills a contiguous block of hits: the first into the output, the others
    # into private copies added at the end (a few ms for a 20k x 200 histogram, far less
    # than having threads share the increments).
    n = channel.shape[0]
    total = n_channels * n_bins
    step = (n + nthreads - 1) // nthreads
    part = np.zeros((nthreads - 1, total), dtype=np.int64)
    for th in prange(nthreads):
        a = th * step
        b = min(n, a + step)
        if th == 0:
            _fill_channel_range(channel[a:b], value[a:b], n_channels, n_bins, lo, hi, 0, total, flat_out)
        else:
            _fill_channel_range(channel[a:b], value[a:b], n_channels, n_bins, lo, hi, 0, total, part[th - 1])
    for k in range(nthreads - 1):
        for j in range(total):
            flat_out[j] += part[k, j]


def fill_channel_hist(channel, value, n_channels, n_bins, lo, hi, nthreads=1, out=None):
    """Per-channel histogram of ``value``: int64[n_channels, n_bins] over ``[lo, hi)``.

    ``channel`` is an integer array, ``value`` a float array of the same length (e.g. hit
    times in ns). Hits are processed in chunks (flat bin indices first, then increments);
    each of ``nthreads`` threads fills a block of hits into its own copy, and the copies are
    added. The result does not depend on ``nthreads``.
    ``out`` (int64[n_channels, n_bins], C-contiguous) is added to in place when given, so a
    stream of chunks accumulates without reallocating. Returns the histogram.
    """
    channel = np.ascontiguousarray(channel)
    value = np.ascontiguousarray(value)
    if channel.shape != value.shape:
        msg = f"fill_channel_hist: channel and value lengths differ ({channel.shape[0]} vs {value.shape[0]})"
        raise ValueError(msg)
    if n_channels * n_bins >= 2**31:
        msg = f"fill_channel_hist: {n_channels} channels x {n_bins} bins is too many (flat bin index must fit in int32)"
        raise ValueError(msg)
    if out is None:
        out = np.zeros((n_channels, n_bins), dtype=np.int64)
    flat_out = out.reshape(-1)  # a view: out must be C-contiguous
    if channel.shape[0]:
        nthreads = effective_threads(nthreads, channel.shape[0], n_channels)
        if nthreads == 1:  # no thread pool at all
            _fill_channel_range(channel, value, n_channels, n_bins, float(lo), float(hi), 0, n_channels * n_bins,
                                flat_out)
        else:
            _fill_channel_parallel(channel, value, n_channels, n_bins, float(lo), float(hi), nthreads, flat_out)
    return out


def fill_channel_hist_numpy(channel, value, n_channels, n_bins, lo, hi, nthreads=1, out=None):
    """Plain-numpy twin of :func:`fill_channel_hist` (``nthreads`` is ignored)."""
    channel = np.asarray(channel, dtype=np.int64)
    value = np.asarray(value, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ok = (channel >= 0) & (channel < n_channels) & (value >= lo) & (value < hi)
    b = np.minimum(((value[ok] - lo) * (n_bins / (hi - lo))).astype(np.int64), n_bins - 1)
    h = np.bincount(channel[ok] * n_bins + b, minlength=n_channels * n_bins).reshape(n_channels, n_bins)
    if out is None:
        return h.astype(np.int64)
    out += h
    return out


@njit
def _hist1d_range(value, start, stop, n_bins, lo, hi, out):
    scale = n_bins / (hi - lo)
    for i in range(start, stop):
        x = value[i]
        if x >= lo and x < hi:
            b = int((x - lo) * scale)
            if b >= n_bins:
                b = n_bins - 1
            out[b] += 1


@njit(parallel=True)
def _hist1d_parallel(value, n_bins, lo, hi, nthreads):
    n = value.shape[0]
    step = (n + nthreads - 1) // nthreads
    part = np.zeros((nthreads, n_bins), dtype=np.int64)
    for c in prange(nthreads):
        _hist1d_range(value, c * step, min(n, c * step + step), n_bins, lo, hi, part[c])
    out = np.zeros(n_bins, dtype=np.int64)
    for c in range(nthreads):
        out += part[c]
    return out


def fill_hist1d(value, n_bins, lo, hi, nthreads=1):
    """Histogram int64[n_bins] of ``value`` over ``[lo, hi)`` (outside and NaN ignored),
    filled in ``nthreads`` parallel partial histograms (serially, without a thread pool,
    for ``nthreads=1``)."""
    value = np.ascontiguousarray(value)
    n = value.shape[0]
    nthreads = effective_threads(nthreads, n)
    if nthreads == 1:
        out = np.zeros(n_bins, dtype=np.int64)
        _hist1d_range(value, 0, n, n_bins, float(lo), float(hi), out)
        return out
    return _hist1d_parallel(value, n_bins, float(lo), float(hi), nthreads)


def fill_hist1d_numpy(value, n_bins, lo, hi, nthreads=1):
    """Plain-numpy twin of :func:`fill_hist1d`."""
    value = np.asarray(value, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ok = (value >= lo) & (value < hi)
    b = np.minimum(((value[ok] - lo) * (n_bins / (hi - lo))).astype(np.int64), n_bins - 1)
    return np.bincount(b, minlength=n_bins).astype(np.int64)
