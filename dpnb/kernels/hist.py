"""Histogram fills (numba) and their plain-numpy twins.

Hits come as flat arrays: ``channel`` (integer channel id) and ``value`` (e.g. hit time
in ns). Every fill ignores entries it cannot place (channel outside ``[0, n_channels)``,
value outside ``[lo, hi)`` or NaN); callers that must *report* such entries count them
first with :func:`count_invalid` (the kernels stay pure and never raise).

Binning is regular: bin ``b`` holds ``lo + b * w <= value < lo + (b + 1) * w`` with
``w = (hi - lo) / n_bins``; histograms are int64 counts (the per-channel fills also take
int32 / uint32 counts). The small fills split the entries into ``nthreads`` contiguous
blocks, one partial histogram per block, then add the partials. The per-channel fills (a
histogram far larger than the L2 cache, hit at random places) count into uint8 slots, an
eighth of the int64 histogram's memory, and move 256 to the wide counts each time a slot
wraps; a block of slots is computed branch-free (vectorized) before it is counted. Threads
stage contiguous blocks of hits and then merge disjoint ranges of channels. Sparse fills
(fewer than :data:`STAGE_MIN_FILL` entries per bin) use a plain loop of increments instead.
Integer counts make every result exactly the serial one for any thread count. Inputs too
small to be worth a thread run serially (:func:`effective_threads`).

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
    "fill_channel_occupancy_split",
    "fill_channel_occupancy_split_numpy",
    "sparse_from_split",
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


#: hits per block whose staged slots are computed (vectorized) before they are counted: an
#: int32 buffer of 16 kB that stays in L1
SLOT_BLOCK = 4096
#: entries per histogram bin from which the per-channel fills stage counts in uint8 (the
#: staged fill ends with one pass over the whole histogram; below this fill a plain loop of
#: increments is faster)
STAGE_MIN_FILL = 0.5


@njit
def _locate(ch, x, n_channels, n_bins, lo, hi, scale):
    # flat bin (channel * n_bins + bin) of a hit, or -1 bad channel, -2 NaN value, -3 outside [lo, hi)
    if ch < 0 or ch >= n_channels:
        return -1
    if np.isnan(x):
        return -2
    if x >= lo and x < hi:
        b = np.int64((x - lo) * scale)
        if b >= n_bins:
            b = n_bins - 1
        return ch * n_bins + b
    return -3


@njit
def _plain_fill(channel, value, n_channels, n_bins, lo, hi, flat, low, occ, stats, count, split):
    # The plain loop: one increment per hit, into ``flat``, or (``split``) into uint8 ``low``
    # with every 256th hit of a bin moving 256 to ``flat``. With ``count`` (always with
    # ``split``), also count per channel into ``occ`` every hit with a valid channel and a
    # non-NaN value, and into stats [bad channel, NaN value (valid channel), value outside
    # [lo, hi), (split) entries moved to flat].
    scale = n_bins / (hi - lo)
    bad = 0
    nan = 0
    outside = 0
    moved = 0
    for i in range(channel.shape[0]):
        ch = np.int64(channel[i])
        v = _locate(ch, value[i], n_channels, n_bins, lo, hi, scale)
        if v >= 0:
            if split:
                k = low[v] + 1
                if k == 256:
                    low[v] = 0
                    flat[v] += 256
                    moved += 256
                else:
                    low[v] = k
            else:
                flat[v] += 1
        elif v == -1:
            bad += 1
            continue
        elif v == -2:
            nan += 1
            continue
        else:
            outside += 1
        if count:
            occ[ch] += 1
    if count:
        stats[0] += bad
        stats[1] += nan
        stats[2] += outside
    if split:
        stats[3] += moved


_NO_LOW = np.zeros(0, dtype=np.uint8)


@njit
def _slots(channel, value, a, e, n_channels, n_bins, lo, hi, buf):
    # The staged slot of each hit in [a, e): channel c owns n_bins + 2 slots (underflow, the
    # bins, overflow), then two dump slots (bad channel, NaN value). No branches: the loop
    # vectorizes (out-of-range conversions are computed and then not selected).
    scale = n_bins / (hi - lo)
    width = n_bins + 2
    dump_bad = n_channels * width
    for i in range(a, e):
        ch = np.int64(channel[i])
        x = np.float64(value[i])
        b = min(np.int64((x - lo) * scale), n_bins - 1) + 1
        b = n_bins + 1 if x >= hi else b
        b = 0 if x < lo else b
        v = ch * width + b
        v = dump_bad + 1 if x != x else v
        v = v if (ch >= 0) & (ch < n_channels) else dump_bad
        buf[i - a] = v


@njit
def _spill(v, n_channels, n_bins, spill, side, unit):
    # A uint8 staged count wrapped at 256: ``unit`` goes to a wide counter, spill (per bin: the
    # output itself with unit 256, or a private int32 count of spills with unit 1) or side
    # (per channel: underflow, overflow, all of the channel's hits; then bad channel, NaN).
    width = n_bins + 2
    c = v // width
    s = v - c * width
    if c >= n_channels:
        side[3 * n_channels + s] += 256
        return
    side[3 * c + 2] += 256
    if s == 0:
        side[3 * c] += 256
    elif s == width - 1:
        side[3 * c + 1] += 256
    else:
        spill[c * n_bins + s - 1] += unit


@njit
def _stage_range(channel, value, n_channels, n_bins, lo, hi, stage, spill, side, unit):
    # Count the hits into uint8 slots (an eighth of a channel x bin histogram of int64 counts:
    # far fewer cache misses for random channels); every 256th hit of a slot spills.
    n = channel.shape[0]
    buf = np.empty(min(n, SLOT_BLOCK), dtype=np.int32)
    for a in range(0, n, SLOT_BLOCK):
        e = min(n, a + SLOT_BLOCK)
        _slots(channel, value, a, e, n_channels, n_bins, lo, hi, buf)
        for j in range(e - a):
            v = buf[j]
            s = stage[v] + 1
            if s == 256:
                stage[v] = 0
                _spill(v, n_channels, n_bins, spill, side, unit)
            else:
                stage[v] = s


@njit
def _merge_stages(stage, spills, side, c0, c1, n_bins, flat, occ, stats, count):
    # One pass over channels [c0, c1): add every thread's staged counts (stage[t]) and counts
    # of spills (256 * spills[t], the threads after the first) to flat, and (with count) the
    # channels' hits to occ and their hits outside [lo, hi) to stats[2].
    width = n_bins + 2
    nt = stage.shape[0]
    ns = spills.shape[0]
    outside = 0
    for c in range(c0, c1):
        base = c * width
        o = c * n_bins
        row = 0
        for b in range(n_bins):
            k = np.int64(0)
            for t in range(nt):
                k += stage[t, base + 1 + b]
            row += k
            for t in range(ns):
                k += 256 * np.int64(spills[t, o + b])
            flat[o + b] += k
        if count:
            for t in range(nt):
                flows = np.int64(stage[t, base]) + np.int64(stage[t, base + width - 1])
                outside += flows + side[t, 3 * c] + side[t, 3 * c + 1]
                row += flows + side[t, 3 * c + 2]
            occ[c] += row
    stats[2] += outside


@njit
def _stage_dumps(stage, side, n_channels, stats):
    d = stage.shape[1] - 2
    for t in range(stage.shape[0]):
        stats[0] += np.int64(stage[t, d]) + side[t, 3 * n_channels]
        stats[1] += np.int64(stage[t, d + 1]) + side[t, 3 * n_channels + 1]


@njit
def _fill_staged_serial(channel, value, n_channels, n_bins, lo, hi, flat, occ, stats, count):
    stage = np.zeros((1, n_channels * (n_bins + 2) + 2), dtype=np.uint8)
    side = np.zeros((1, 3 * n_channels + 2), dtype=np.int64)
    _stage_range(channel, value, n_channels, n_bins, lo, hi, stage[0], flat, side[0], 256)
    _merge_stages(stage, np.zeros((0, 0), dtype=np.int32), side, 0, n_channels, n_bins, flat, occ, stats, count)
    _stage_dumps(stage, side, n_channels, stats)


@njit(parallel=True)
def _fill_staged_parallel(channel, value, n_channels, n_bins, lo, hi, nthreads, flat, occ, stats, count):
    # Each thread stages a contiguous block of hits (its spills go to the output for the first
    # thread, to a private int32 count for the others); then each thread merges all of it into
    # a contiguous range of channels. Two parallel regions, no atomics.
    n = channel.shape[0]
    step = (n + nthreads - 1) // nthreads
    stage = np.zeros((nthreads, n_channels * (n_bins + 2) + 2), dtype=np.uint8)
    side = np.zeros((nthreads, 3 * n_channels + 2), dtype=np.int64)
    spills = np.zeros((nthreads - 1, n_channels * n_bins), dtype=np.int32)
    for t in prange(nthreads):
        a = min(n, t * step)
        b = min(n, a + step)
        if t == 0:
            _stage_range(channel[a:b], value[a:b], n_channels, n_bins, lo, hi, stage[0], flat, side[0], 256)
        else:
            _stage_range(channel[a:b], value[a:b], n_channels, n_bins, lo, hi, stage[t], spills[t - 1], side[t], 1)
    cstep = (n_channels + nthreads - 1) // nthreads
    outside = np.zeros((nthreads, 3), dtype=np.int64)
    for t in prange(nthreads):
        c0 = min(n_channels, t * cstep)
        c1 = min(n_channels, c0 + cstep)
        _merge_stages(stage, spills, side, c0, c1, n_bins, flat, occ, outside[t], count)
    stats[2] += outside[:, 2].sum()
    _stage_dumps(stage, side, n_channels, stats)


def _fill_channel(channel, value, n_channels, n_bins, lo, hi, nthreads, flat, occ, stats, count):
    """Dispatch a per-channel fill: the plain loop for sparse fills, else uint8 staging (in
    parallel when there are enough hits for several threads)."""
    n = channel.shape[0]
    if n == 0:
        return
    lo, hi = float(lo), float(hi)
    if n < STAGE_MIN_FILL * n_channels * n_bins:
        _plain_fill(channel, value, n_channels, n_bins, lo, hi, flat, _NO_LOW, occ, stats, count, False)
        return
    nthreads = effective_threads(nthreads, n)
    if nthreads == 1:  # no thread pool at all
        _fill_staged_serial(channel, value, n_channels, n_bins, lo, hi, flat, occ, stats, count)
    else:
        _fill_staged_parallel(channel, value, n_channels, n_bins, lo, hi, nthreads, flat, occ, stats, count)


_COUNT_DTYPES = (np.int64, np.uint64, np.int32, np.uint32)


def _check_fill_args(name, channel, value, n_channels, n_bins, out):
    if channel.shape != value.shape:
        msg = f"{name}: channel and value lengths differ ({channel.shape[0]} vs {value.shape[0]})"
        raise ValueError(msg)
    if n_channels * (n_bins + 2) + 2 >= 2**31:
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
    times in ns). Counts are staged in uint8 slots (see the module's description); with
    ``nthreads`` threads, each stages a block of hits and then adds a range of channels of
    every stage to the output. The result does not
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
    occ = np.zeros(0, dtype=np.int64)
    stats = np.zeros(3, dtype=np.int64)
    _fill_channel(channel, value, n_channels, n_bins, lo, hi, nthreads, out.reshape(-1), occ, stats, False)
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
    stats = np.zeros(3, dtype=np.int64)
    _fill_channel(channel, value, n_channels, n_bins, lo, hi, nthreads, hist.reshape(-1), occ, stats, True)
    return stats


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


def _check_split(name, n_channels, n_bins, occ, low, high):
    size = n_channels * n_bins
    if low.shape != (size,) or low.dtype != np.uint8 or not low.flags.c_contiguous:
        msg = f"{name}: low must be a contiguous uint8[{size}], got {low.shape} {low.dtype}"
        raise ValueError(msg)
    if high.shape != (size,) or high.dtype.type not in _COUNT_DTYPES or not high.flags.c_contiguous:
        msg = f"{name}: high must be a contiguous [{size}] array of int64, uint64, int32 or uint32, got {high.shape} {high.dtype}"
        raise ValueError(msg)
    if occ.shape != (n_channels,) or occ.dtype != np.int64 or not occ.flags.c_contiguous:
        msg = f"{name}: occ must be a contiguous int64[{n_channels}], got {occ.shape} {occ.dtype}"
        raise ValueError(msg)


def fill_channel_occupancy_split(channel, value, n_channels, n_bins, lo, hi, occ, low, high, nthreads=1):
    """:func:`fill_channel_occupancy_hist` into a histogram held in two flat parts, ``low +
    high``: ``low`` uint8 (counts modulo 256), ``high`` int32/int64 (the rest). Returns
    int64[4]: (bad channel, NaN value, outside ``[lo, hi)``, entries added to ``high``).

    A sparse chunk (fewer than :data:`STAGE_MIN_FILL` entries per bin, e.g. one run's hits
    in a detector-wide histogram) is counted into ``low``, a quarter of the memory of int32
    counts (fewer cache misses), each 256th hit of a bin moving 256 to ``high``; a dense chunk
    is filled into ``high`` by :func:`fill_channel_occupancy_hist` (staged, ``nthreads``).
    While the last figure stays 0, ``high`` is untouched (:func:`sparse_from_split` skips
    it). The sum ``low + high`` does not depend on the path or on ``nthreads``.
    """
    channel = np.ascontiguousarray(channel)
    value = np.ascontiguousarray(value)
    if channel.shape != value.shape:
        msg = f"fill_channel_occupancy_split: channel and value lengths differ ({channel.shape[0]} vs {value.shape[0]})"
        raise ValueError(msg)
    _check_split("fill_channel_occupancy_split", n_channels, n_bins, occ, low, high)
    stats = np.zeros(4, dtype=np.int64)
    n = channel.shape[0]
    if n == 0:
        return stats
    if n < STAGE_MIN_FILL * n_channels * n_bins:
        _plain_fill(channel, value, n_channels, n_bins, float(lo), float(hi), high, low, occ, stats, True, True)
        return stats
    before = np.zeros(3, dtype=np.int64)
    _check_fill_args("fill_channel_occupancy_split", channel, value, n_channels, n_bins, high.reshape(n_channels, n_bins))
    _fill_channel(channel, value, n_channels, n_bins, lo, hi, nthreads, high, occ, before, True)
    stats[:3] = before
    stats[3] = n - before.sum()
    return stats


def fill_channel_occupancy_split_numpy(channel, value, n_channels, n_bins, lo, hi, occ, low, high, nthreads=1):
    """Plain-numpy twin of :func:`fill_channel_occupancy_split` (its sparse path: ``low``
    keeps the counts modulo 256, ``high`` gets the multiples of 256)."""
    h = np.zeros((n_channels, n_bins), dtype=np.int64)
    st = fill_channel_occupancy_hist_numpy(channel, value, n_channels, n_bins, lo, hi, occ, h)
    total = low.astype(np.int64) + h.reshape(-1)
    moved = total // 256 * 256
    low[:] = (total - moved).astype(np.uint8)
    high += moved.astype(high.dtype)
    return np.array([st[0], st[1], st[2], moved.sum()], dtype=np.int64)


#: bins per block in :func:`sparse_from_dense` and :func:`sparse_from_split`: an all-zero
#: block is skipped after one (vectorized) OR over it
NONZERO_BLOCK = 16


@njit
def _compact(low, high, a, e, bins, counts, k, cap, use_high):
    # Branch-free compaction of bins [a, e) of low (+ high): every bin is written at slot k,
    # and k advances only past a nonzero bin (a branch per bin would be mispredicted at
    # ~10 % fill).
    for i in range(a, e):
        c = np.int64(low[i])
        if use_high:
            c += high[i]
        j = min(k, cap)
        bins[j] = i
        counts[j] = c
        k += c != 0
    return k


@njit
def _nonzero(low, high, bins, counts, use_high):
    # The nonzero bins of low (+ high) into bins/counts (one spare slot); returns how many.
    # Blocks of NONZERO_BLOCK bins: an OR over the block (vectorized) skips empty ones; the
    # others are compacted.
    k = 0
    cap = bins.shape[0] - 1
    n = low.shape[0]
    nfull = n - n % NONZERO_BLOCK
    for a in range(0, nfull, NONZERO_BLOCK):
        acc = np.int64(low[a])
        for i in range(a + 1, a + NONZERO_BLOCK):
            acc |= low[i]
        if use_high:
            for i in range(a, a + NONZERO_BLOCK):
                acc |= high[i]
        if acc != 0:
            k = _compact(low, high, a, a + NONZERO_BLOCK, bins, counts, k, cap, use_high)
    return _compact(low, high, nfull, n, bins, counts, k, cap, use_high)


def _sparse(name, low, high, use_high, max_nonzero, dtype):
    if low.shape[0] >= 2**31:
        msg = f"{name}: {low.shape[0]} bins; flat bin index must fit in int32"
        raise ValueError(msg)
    size = low.shape[0] if max_nonzero is None else min(int(max_nonzero), low.shape[0])
    bins = np.empty(size + 1, dtype=np.int32)
    counts = np.empty(size + 1, dtype=dtype)
    k = _nonzero(low, high, bins, counts, bool(use_high))
    if k > size:  # (bins beyond max_nonzero were not kept: refuse rather than lose counts)
        msg = f"{name}: {k} nonzero bins, more than max_nonzero = {size}"
        raise ValueError(msg)
    return bins[:k].copy(), counts[:k].copy()


def sparse_from_split(low, high, high_used=True, max_nonzero=None, reset=False):
    """:func:`sparse_from_dense` of ``low + high`` (see :func:`fill_channel_occupancy_split`):
    ``(flat bin int32[k] ascending, counts[k] of high's dtype)``. ``high_used=False`` (nothing
    was added to ``high``) reads ``low`` only: a quarter of the memory traffic of int32
    counts. ``reset`` zeroes both (``high`` only when used) for reuse."""
    if low.shape != high.shape:
        msg = f"sparse_from_split: low {low.shape} and high {high.shape} differ"
        raise ValueError(msg)
    out = _sparse("sparse_from_split", low, high, high_used, max_nonzero, high.dtype)
    if reset:
        low[:] = 0
        if high_used:
            high[:] = 0
    return out


def sparse_from_dense(hist, max_nonzero=None, reset=False, count_dtype=None):
    """The nonzero bins of ``hist`` (any shape, C-contiguous): ``(flat bin int32[k] ascending,
    counts[k])``; counts keep ``hist``'s dtype unless ``count_dtype``. ``max_nonzero`` bounds
    the number of nonzero bins (e.g. the number of entries filled) to size the outputs;
    ``reset=True`` sets ``hist`` to zero afterwards (a scratch histogram ready for reuse)."""
    flat = hist.reshape(-1)
    bins, counts = _sparse("sparse_from_dense", flat, flat, False, max_nonzero, flat.dtype)
    if reset:
        flat[:] = 0
    return bins, counts.astype(count_dtype or flat.dtype, copy=False)


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
