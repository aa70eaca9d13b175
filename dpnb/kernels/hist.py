"""Histogram fills (numba) and their plain-numpy twins.

Hits come as flat arrays: ``channel`` (integer channel id) and ``value`` (e.g. hit time
in ns). Every fill ignores entries it cannot place (channel outside ``[0, n_channels)``,
value outside ``[lo, hi)`` or NaN); callers that must *report* such entries count them
first with :func:`count_invalid` (the kernels stay pure and never raise).

Binning is regular: bin ``b`` holds ``lo + b * w <= value < lo + (b + 1) * w`` with
``w = (hi - lo) / n_bins``; histograms are int64 counts (the per-channel fills also take
int32 / uint32 counts: half the memory traffic). The small fills split the entries into
``nthreads`` contiguous blocks, one partial histogram per block, then add the partials.
The per-channel fills (a histogram far larger than the L2 cache) group each block of hits
by bucket of bins before adding them (each bucket's slice of the histogram stays in L2);
threads fill blocks of hits into private copies (the first into the output) added at the
end. Integer counts make every result
exactly the serial one for any thread count. Inputs too small to be worth a thread run
serially (:func:`effective_threads`).

:func:`fill_channel_occupancy_hist` fills the hits per channel and the per-channel
histogram in one pass and counts what it could not place (bad channel, NaN, outside the
range); :func:`sparse_from_dense` and :func:`add_sparse` convert to and from the compact
(flat bin, count) form of mostly empty histograms.
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
    "fill_channel_occupancy_hist",
    "fill_channel_occupancy_hist_numpy",
    "fill_hist1d",
    "fill_hist1d_numpy",
    "sparse_from_dense",
    "sparse_from_dense_numpy",
    "add_sparse",
    "add_sparse_numpy",
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


#: hits per block in the per-channel fills (two int32 scratch buffers of 4 MB per thread)
FILL_CHUNK = 1 << 20
#: flat bins per bucket in the per-channel fills: 2**16 bins (256 kB of uint32, 512 kB of
#: int64 counts) stay in a core's L2 cache while a bucket's hits are added
BUCKET_SHIFT = 16


@njit
def _bin_and_group(channel, value, a, e, n_channels, n_bins, lo, hi, n_buckets, idx, srt, start, occ, stats, count):
    # Flat bins (channel * n_bins + bin) of hits [a, e), grouped by bucket of
    # 2**BUCKET_SHIFT bins into srt (a counting sort on the high bits, no comparison sort);
    # bucket q's bins are srt[start[q]:start[q + 1]]. With ``count``, also count per channel
    # into ``occ`` every hit with a valid channel and a non-NaN value, and into stats [bad
    # channel, NaN value (valid channel), value outside [lo, hi) (valid channel, not NaN)].
    scale = n_bins / (hi - lo)
    k = 0
    start[:] = 0
    bad = 0
    nan = 0
    outside = 0
    for i in range(a, e):
        ch = np.int64(channel[i])
        x = value[i]
        if ch < 0 or ch >= n_channels:
            bad += 1
            continue
        if count:
            if np.isnan(x):
                nan += 1
                continue
            occ[ch] += 1
        if x >= lo and x < hi:
            b = np.int64((x - lo) * scale)
            if b >= n_bins:
                b = n_bins - 1
            v = ch * n_bins + b
            idx[k] = v
            k += 1
            start[(v >> BUCKET_SHIFT) + 1] += 1
        elif count:
            outside += 1
    for q in range(n_buckets):
        start[q + 1] += start[q]
    cursor = start[:n_buckets].copy()
    for j in range(k):
        v = idx[j]
        q = v >> BUCKET_SHIFT
        srt[cursor[q]] = v
        cursor[q] += 1
    if count:
        stats[0] += bad
        stats[1] += nan
        stats[2] += outside
    return k


@njit
def _fill_channel_serial(channel, value, n_channels, n_bins, lo, hi, flat_out, occ, stats, count):
    # A loop that increments a histogram much larger than the L2 cache at random places
    # waits for memory on nearly every hit. Per block of hits the flat bins are computed
    # first (streaming) and grouped by bucket, then added bucket by bucket: each bucket's
    # slice of the histogram stays in L2 while its hits are added.
    n = channel.shape[0]
    n_buckets = ((n_channels * n_bins - 1) >> BUCKET_SHIFT) + 1
    m = min(n, FILL_CHUNK)
    idx = np.empty(m, dtype=np.int32)
    srt = np.empty(m, dtype=np.int32)
    start = np.zeros(n_buckets + 1, dtype=np.int64)
    for a in range(0, n, FILL_CHUNK):
        k = _bin_and_group(channel, value, a, min(n, a + FILL_CHUNK), n_channels, n_bins, lo, hi, n_buckets, idx,
                           srt, start, occ, stats, count)
        for j in range(k):
            flat_out[srt[j]] += 1


@njit(parallel=True)
def _fill_channel_parallel(channel, value, n_channels, n_bins, lo, hi, nthreads, flat_out, occ, stats, count):
    # Each thread fills a contiguous block of hits with the grouped serial fill, the first
    # into the output, the others into private copies, added at the end (in parallel over
    # bins: ~10 ms for 20k x 200 int64 bins). One parallel region, no barrier per block.
    n = channel.shape[0]
    total = n_channels * n_bins
    step = (n + nthreads - 1) // nthreads
    part = np.zeros((nthreads - 1, total), dtype=flat_out.dtype)
    occs = np.zeros((nthreads, occ.shape[0]), dtype=np.int64)
    for t in prange(nthreads):
        a = min(n, t * step)
        b = min(n, a + step)
        if t == 0:
            _fill_channel_serial(channel[a:b], value[a:b], n_channels, n_bins, lo, hi, flat_out, occs[0], stats[0],
                                 count)
        else:
            _fill_channel_serial(channel[a:b], value[a:b], n_channels, n_bins, lo, hi, part[t - 1], occs[t],
                                 stats[t], count)
    if nthreads > 1:
        for j in prange(total):
            acc = flat_out[j]
            for k in range(nthreads - 1):
                acc += part[k, j]
            flat_out[j] = acc
    if count:
        for t in range(nthreads):
            for c in range(occ.shape[0]):
                occ[c] += occs[t, c]


_COUNT_DTYPES = (np.int64, np.uint64, np.int32, np.uint32)


def _check_fill_args(name, channel, value, n_channels, n_bins, out):
    if channel.shape != value.shape:
        msg = f"{name}: channel and value lengths differ ({channel.shape[0]} vs {value.shape[0]})"
        raise ValueError(msg)
    if n_channels * n_bins >= 2**31:
        msg = f"{name}: {n_channels} channels x {n_bins} bins is too many (flat bin index must fit in int32)"
        raise ValueError(msg)
    if out.shape != (n_channels, n_bins) or not out.flags.c_contiguous or out.dtype.type not in _COUNT_DTYPES:
        msg = (f"{name}: out must be a C-contiguous ({n_channels}, {n_bins}) array of int64, uint64, int32 or "
               f"uint32 counts, got {out.shape} {out.dtype}")
        raise ValueError(msg)
    if out.dtype.itemsize == 4 and channel.shape[0] > np.iinfo(out.dtype).max:
        msg = f"{name}: {channel.shape[0]} entries could overflow {out.dtype} counts; use int64"
        raise ValueError(msg)


def fill_channel_hist(channel, value, n_channels, n_bins, lo, hi, nthreads=1, out=None, dtype=np.int64):
    """Per-channel histogram of ``value``: ``dtype[n_channels, n_bins]`` over ``[lo, hi)``.

    ``channel`` is an integer array, ``value`` a float array of the same length (e.g. hit
    times in ns). Per block of hits the flat bins are computed, grouped by bucket of
    ``2**BUCKET_SHIFT`` bins and added bucket by bucket (cache friendly); with
    ``nthreads`` threads, each fills a block of hits into its own copy (the first into the
    output), and the copies are added. The result does not
    depend on ``nthreads``. ``dtype`` may be int64 (default), uint64, int32 or uint32: 32-bit
    counts halve the memory traffic; the caller guarantees that no bin reaches 2**31 / 2**32.
    ``out`` (C-contiguous ``(n_channels, n_bins)`` of one of those types) is added to in place
    when given, so a stream of chunks accumulates without reallocating. Returns the histogram.
    """
    channel = np.ascontiguousarray(channel)
    value = np.ascontiguousarray(value)
    if out is None:
        out = np.zeros((n_channels, n_bins), dtype=dtype)
    _check_fill_args("fill_channel_hist", channel, value, n_channels, n_bins, out)
    flat_out = out.reshape(-1)  # a view: out is C-contiguous
    if channel.shape[0]:
        nthreads = effective_threads(nthreads, channel.shape[0])
        occ = np.zeros(1, dtype=np.int64)
        stats = np.zeros((max(nthreads, 1), 3), dtype=np.int64)
        if nthreads == 1:  # no thread pool at all
            _fill_channel_serial(channel, value, n_channels, n_bins, float(lo), float(hi), flat_out, occ, stats[0],
                                 False)
        else:
            _fill_channel_parallel(channel, value, n_channels, n_bins, float(lo), float(hi), nthreads, flat_out,
                                   occ, stats, False)
    return out


def fill_channel_hist_numpy(channel, value, n_channels, n_bins, lo, hi, nthreads=1, out=None, dtype=np.int64):
    """Plain-numpy twin of :func:`fill_channel_hist` (``nthreads`` is ignored)."""
    channel = np.asarray(channel, dtype=np.int64)
    value = np.asarray(value, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ok = (channel >= 0) & (channel < n_channels) & (value >= lo) & (value < hi)
    b = np.minimum(((value[ok] - lo) * (n_bins / (hi - lo))).astype(np.int64), n_bins - 1)
    h = np.bincount(channel[ok] * n_bins + b, minlength=n_channels * n_bins).reshape(n_channels, n_bins)
    if out is None:
        return h.astype(dtype)
    out += h.astype(out.dtype)
    return out


def fill_channel_occupancy_hist(channel, value, n_channels, n_bins, lo, hi, occ, hist, nthreads=1):
    """One pass over hits for the calibration accumulation: add to ``occ`` (int64[n_channels])
    the hits per channel and to ``hist`` (see :func:`fill_channel_hist`) the per-channel
    histogram of ``value`` over ``[lo, hi)``; return int64[3]: (hits with a channel outside
    ``[0, n_channels)``, hits with a valid channel and a NaN value, hits with a valid channel
    and a finite value outside ``[lo, hi)``).

    Hits with an invalid channel or a NaN value are in neither ``occ`` nor ``hist``; hits
    outside the range are in ``occ`` only. The result does not depend on ``nthreads``.
    """
    channel = np.ascontiguousarray(channel)
    value = np.ascontiguousarray(value)
    _check_fill_args("fill_channel_occupancy_hist", channel, value, n_channels, n_bins, hist)
    if occ.shape != (n_channels,) or occ.dtype != np.int64 or not occ.flags.c_contiguous:
        msg = f"fill_channel_occupancy_hist: occ must be a contiguous int64[{n_channels}], got {occ.shape} {occ.dtype}"
        raise ValueError(msg)
    flat = hist.reshape(-1)
    nthreads = effective_threads(nthreads, channel.shape[0])
    stats = np.zeros((nthreads, 3), dtype=np.int64)
    if channel.shape[0] == 0:
        return stats.sum(axis=0)
    if nthreads == 1:
        _fill_channel_serial(channel, value, n_channels, n_bins, float(lo), float(hi), flat, occ, stats[0], True)
    else:
        _fill_channel_parallel(channel, value, n_channels, n_bins, float(lo), float(hi), nthreads, flat, occ, stats,
                               True)
    return stats.sum(axis=0)


def fill_channel_occupancy_hist_numpy(channel, value, n_channels, n_bins, lo, hi, occ, hist, nthreads=1):
    """Plain-numpy twin of :func:`fill_channel_occupancy_hist` (``nthreads`` is ignored)."""
    channel = np.asarray(channel, dtype=np.int64)
    value = np.asarray(value, dtype=np.float64)
    valid = (channel >= 0) & (channel < n_channels)
    isnan = np.isnan(value)
    counted = valid & ~isnan
    occ += np.bincount(channel[counted], minlength=n_channels).astype(np.int64)
    fill_channel_hist_numpy(channel, value, n_channels, n_bins, lo, hi, out=hist)
    with np.errstate(invalid="ignore"):
        outside = counted & ((value < lo) | (value >= hi))
    return np.array([np.count_nonzero(~valid), np.count_nonzero(valid & isnan), np.count_nonzero(outside)],
                    dtype=np.int64)


@njit
def _nonzero_bins(flat, bins, counts, reset):
    # Branch-free compaction: every bin is written at slot k, and k advances only past a
    # nonzero bin. With ~10 % of the bins filled at random, a branch per bin would be
    # mispredicted often enough to double the time. bins/counts need one spare slot.
    k = 0
    cap = bins.shape[0] - 1
    for i in range(flat.shape[0]):
        c = flat[i]
        if reset:
            flat[i] = 0
        j = min(k, cap)
        bins[j] = i
        counts[j] = c
        k += c != 0
    return k


def sparse_from_dense(hist, max_nonzero=None, reset=False, count_dtype=None):
    """The nonzero bins of ``hist`` (any shape, C-contiguous): ``(flat bin int32[k] ascending,
    counts[k])``; counts keep ``hist``'s dtype unless ``count_dtype``. ``max_nonzero`` bounds
    the number of nonzero bins (e.g. the number of entries filled) to size the outputs;
    ``reset=True`` sets ``hist`` to zero afterwards (a scratch histogram ready for reuse)."""
    flat = hist.reshape(-1)
    if flat.shape[0] >= 2**31:
        msg = f"sparse_from_dense: {flat.shape[0]} bins; flat bin index must fit in int32"
        raise ValueError(msg)
    size = flat.shape[0] if max_nonzero is None else min(int(max_nonzero), flat.shape[0])
    bins = np.empty(size + 1, dtype=np.int32)
    counts = np.empty(size + 1, dtype=flat.dtype)
    k = _nonzero_bins(flat, bins, counts, bool(reset))
    if k > size:  # (bins beyond max_nonzero were not kept: refuse rather than lose counts)
        msg = f"sparse_from_dense: {k} nonzero bins, more than max_nonzero = {size}"
        raise ValueError(msg)
    return bins[:k].copy(), counts[:k].astype(count_dtype or flat.dtype)


def sparse_from_dense_numpy(hist, max_nonzero=None, reset=False, count_dtype=None):
    """Plain-numpy twin of :func:`sparse_from_dense`."""
    flat = hist.reshape(-1)
    nz = np.flatnonzero(flat)
    out = nz.astype(np.int32), flat[nz].astype(count_dtype or flat.dtype)
    if reset:
        flat[nz] = 0
    return out


@njit
def _add_sparse(flat, bins, counts):
    for i in range(bins.shape[0]):
        flat[bins[i]] += counts[i]


def add_sparse(hist, bins, counts):
    """Add sparse counts (flat bins, counts) to ``hist`` (C-contiguous) in place; returns it."""
    flat = hist.reshape(-1)
    bins = np.ascontiguousarray(bins)
    if bins.size and (bins.min() < 0 or bins.max() >= flat.shape[0]):
        msg = f"add_sparse: flat bins {bins.min()}..{bins.max()} outside a histogram of {flat.shape[0]} bins"
        raise ValueError(msg)
    _add_sparse(flat, bins, np.ascontiguousarray(counts))
    return hist


def add_sparse_numpy(hist, bins, counts):
    """Plain-numpy twin of :func:`add_sparse`."""
    np.add.at(hist.reshape(-1), np.asarray(bins, dtype=np.int64), np.asarray(counts).astype(hist.dtype))
    return hist


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
