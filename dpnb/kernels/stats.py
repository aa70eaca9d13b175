"""Per-channel statistics (numba) and their plain-numpy twins.

Two kinds of input:

* ``(channel, value)`` pairs (flat arrays, e.g. hit channel and hit time in ns):
  :func:`channel_mean_median` gives count, mean and median per channel. Out-of-range
  channels and NaN values are ignored.
* per-channel histograms ``hist[n_channels, n_bins]`` over a regular range ``[lo, hi)``:
  :func:`hist_mode` (the bin with most entries in a sliding window),
  :func:`hist_window_moments` (count, mean, rms of bin centres inside a window, a truncated
  mean) and :func:`fit_gauss_flat` (binned Poisson maximum-likelihood fit of a Gaussian
  peak on a flat background, all channels at once).

``nthreads`` is always an argument; results do not depend on it.
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import njit, prange
from .hist import effective_threads

__all__ = [
    "channel_mean_median",
    "channel_mean_median_numpy",
    "hist_mode",
    "hist_mode_numpy",
    "hist_window_moments",
    "hist_window_moments_numpy",
    "fit_gauss_flat",
    "fit_gauss_flat_numpy",
    "FIT_PARAMS",
    "FIT_OK", "FIT_MAX_ITER", "FIT_INVALID",
]

#: columns of the parameter arrays returned by the peak fits
FIT_PARAMS = ("signal", "mu", "sigma", "background_per_bin")
#: fit status codes
FIT_OK, FIT_MAX_ITER, FIT_INVALID = 0, 1, 2


# --- (channel, value) pairs ----------------------------------------------------------
@njit
def _select_inplace(a, k):
    """The k-th smallest value of ``a`` (no NaN), reordering ``a`` in place so that
    ``a[:k] <= a[k] <= a[k+1:]`` (Hoare quickselect, median-of-three pivot). Faster than
    numpy's median in numba, which copies the array first."""
    lo = 0
    hi = a.shape[0] - 1
    while hi > lo:
        mid = (lo + hi) >> 1
        x, y, z = a[lo], a[mid], a[hi]
        if x > y:
            x, y = y, x
        if y > z:
            y = z
        if x > y:
            y = x
        pivot = y
        i = lo
        j = hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return a[k]


@njit
def _segment_mean_median(seg):
    # mean and median (numpy's definition, the two middle values averaged in float64) of a
    # non-empty segment; the segment is reordered in place
    m = seg.shape[0]
    acc = 0.0
    for i in range(m):
        acc += seg[i]
    k = m // 2
    hi = np.float64(_select_inplace(seg, k))
    if m % 2 == 1:
        return acc / m, hi
    lo = np.float64(seg[0])  # the lower middle value: the largest of seg[:k]
    for i in range(1, k):
        if seg[i] > lo:
            lo = np.float64(seg[i])
    return acc / m, 0.5 * (lo + hi)


@njit
def _mm_count(channel, value, n_channels, start, stop, counts):
    for i in range(start, stop):
        ch = channel[i]
        if ch >= 0 and ch < n_channels and not np.isnan(value[i]):
            counts[ch] += 1


@njit
def _mm_scatter(channel, value, n_channels, start, stop, pos, buf):
    for i in range(start, stop):
        ch = channel[i]
        x = value[i]
        if ch >= 0 and ch < n_channels and not np.isnan(x):
            buf[pos[ch]] = x
            pos[ch] += 1


@njit
def _mm_segments(buf, offsets, first, stop, mean, median):
    for ch in range(first, stop):
        a = offsets[ch]
        b = offsets[ch + 1]
        if b > a:
            mean[ch], median[ch] = _segment_mean_median(buf[a:b])


@njit
def _mm_layout(part, n_channels):
    # offsets of each channel's segment and the start of each thread's entries inside it
    nthreads = part.shape[0]
    count = np.zeros(n_channels, dtype=np.int64)
    offsets = np.zeros(n_channels + 1, dtype=np.int64)
    pos = np.empty((nthreads, n_channels), dtype=np.int64)
    for ch in range(n_channels):
        p = offsets[ch]
        for c in range(nthreads):
            pos[c, ch] = p
            p += part[c, ch]
        count[ch] = p - offsets[ch]
        offsets[ch + 1] = p
    return count, offsets, pos


@njit
def _channel_mean_median_serial(channel, value, n_channels):
    n = channel.shape[0]
    part = np.zeros((1, n_channels), dtype=np.int64)
    _mm_count(channel, value, n_channels, 0, n, part[0])
    count, offsets, pos = _mm_layout(part, n_channels)
    # the values keep their dtype: a float32 buffer halves the memory traffic of the scatter
    buf = np.empty(offsets[n_channels], dtype=value.dtype)
    _mm_scatter(channel, value, n_channels, 0, n, pos[0], buf)
    mean = np.full(n_channels, np.nan)
    median = np.full(n_channels, np.nan)
    _mm_segments(buf, offsets, 0, n_channels, mean, median)
    return count, mean, median


@njit(parallel=True)
def _channel_mean_median_parallel(channel, value, n_channels, nthreads):
    n = channel.shape[0]
    step = (n + nthreads - 1) // nthreads
    part = np.zeros((nthreads, n_channels), dtype=np.int64)
    for c in prange(nthreads):
        _mm_count(channel, value, n_channels, c * step, min(n, c * step + step), part[c])
    count, offsets, pos = _mm_layout(part, n_channels)
    buf = np.empty(offsets[n_channels], dtype=value.dtype)
    for c in prange(nthreads):
        _mm_scatter(channel, value, n_channels, c * step, min(n, c * step + step), pos[c], buf)
    mean = np.full(n_channels, np.nan)
    median = np.full(n_channels, np.nan)
    cstep = (n_channels + nthreads - 1) // nthreads
    for c in prange(nthreads):
        _mm_segments(buf, offsets, c * cstep, min(n_channels, c * cstep + cstep), mean, median)
    return count, mean, median


def channel_mean_median(channel, value, n_channels, nthreads=1):
    """(count int64[n], mean f8[n], median f8[n]) of ``value`` per channel.

    A counting sort groups the values by channel (each of ``nthreads`` threads scatters its
    own block of entries), then each channel's mean and median are taken on its contiguous
    segment (median as numpy's: the two middle values averaged). Out-of-range channels and
    NaN values are ignored; channels without entries get NaN mean and median.
    """
    channel = np.ascontiguousarray(channel)
    value = np.ascontiguousarray(value)
    if channel.shape != value.shape:
        msg = f"channel_mean_median: channel and value lengths differ ({channel.shape[0]} vs {value.shape[0]})"
        raise ValueError(msg)
    nthreads = effective_threads(nthreads, channel.shape[0])
    if nthreads == 1:  # no thread pool at all
        return _channel_mean_median_serial(channel, value, n_channels)
    return _channel_mean_median_parallel(channel, value, n_channels, nthreads)


def channel_mean_median_numpy(channel, value, n_channels, nthreads=1):
    """Plain-numpy twin of :func:`channel_mean_median` (``nthreads`` is ignored)."""
    channel = np.asarray(channel, dtype=np.int64)
    value = np.asarray(value, dtype=np.float64)
    ok = (channel >= 0) & (channel < n_channels) & ~np.isnan(value)
    ch, v = channel[ok], value[ok]
    order = np.argsort(ch, kind="stable")
    ch, v = ch[order], v[order]
    count = np.bincount(ch, minlength=n_channels).astype(np.int64)
    sums = np.bincount(ch, weights=v, minlength=n_channels)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, sums / count, np.nan)
    median = np.full(n_channels, np.nan)
    bounds = np.concatenate([[0], np.cumsum(count)])
    for c in np.flatnonzero(count):
        median[c] = np.median(v[bounds[c]:bounds[c + 1]])
    return count, mean, median


# --- per-channel histograms ----------------------------------------------------------
@njit(parallel=True)
def hist_mode(hist, half_window):
    """Per channel, the bin whose sum over ``[b - half_window, b + half_window]`` is
    largest (first such bin; int64[n_channels]; -1 for an empty channel)."""
    n_ch, n_bins = hist.shape
    out = np.full(n_ch, -1, dtype=np.int64)
    for ch in prange(n_ch):
        best = 0
        s = 0
        for j in range(0, min(half_window + 1, n_bins)):
            s += hist[ch, j]
        for b in range(n_bins):
            if s > best:
                best = s
                out[ch] = b
            # slide the window by one bin
            add = b + half_window + 1
            rem = b - half_window
            if add < n_bins:
                s += hist[ch, add]
            if rem >= 0:
                s -= hist[ch, rem]
    return out


def hist_mode_numpy(hist, half_window):
    """Plain-numpy twin of :func:`hist_mode`."""
    hist = np.asarray(hist, dtype=np.int64)
    n_ch, n_bins = hist.shape
    c = np.concatenate([np.zeros((n_ch, 1), np.int64), np.cumsum(hist, axis=1)], axis=1)
    b = np.arange(n_bins)
    hi = np.minimum(b + half_window + 1, n_bins)
    lo = np.maximum(b - half_window, 0)
    sums = c[:, hi] - c[:, lo]
    mode = np.argmax(sums, axis=1).astype(np.int64)
    mode[sums.max(axis=1) <= 0] = -1
    return mode


@njit(parallel=True)
def hist_window_moments(hist, lo, hi, centre, half_width):
    """Count, mean and rms (f8[n_channels] each) of the bin centres of ``hist`` (regular
    bins over ``[lo, hi)``) whose centre lies in ``[centre - half_width, centre + half_width]``
    (``centre`` per channel, same unit as ``lo``). NaN mean/rms where the window is empty."""
    n_ch, n_bins = hist.shape
    w = (hi - lo) / n_bins
    cnt = np.zeros(n_ch)
    mean = np.full(n_ch, np.nan)
    rms = np.full(n_ch, np.nan)
    for ch in prange(n_ch):
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        for b in range(n_bins):
            x = lo + (b + 0.5) * w
            if abs(x - centre[ch]) <= half_width:
                y = hist[ch, b]
                s0 += y
                s1 += y * x
                s2 += y * x * x
        cnt[ch] = s0
        if s0 > 0:
            m = s1 / s0
            mean[ch] = m
            rms[ch] = math.sqrt(max(s2 / s0 - m * m, 0.0))
    return cnt, mean, rms


def hist_window_moments_numpy(hist, lo, hi, centre, half_width):
    """Plain-numpy twin of :func:`hist_window_moments`."""
    hist = np.asarray(hist, dtype=np.float64)
    n_ch, n_bins = hist.shape
    x = lo + (np.arange(n_bins) + 0.5) * ((hi - lo) / n_bins)
    inside = np.abs(x[None, :] - np.asarray(centre, dtype=np.float64)[:, None]) <= half_width
    y = np.where(inside, hist, 0.0)
    s0 = y.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(s0 > 0, (y * x).sum(axis=1) / s0, np.nan)
        var = np.where(s0 > 0, (y * x * x).sum(axis=1) / s0 - mean**2, np.nan)
    return s0, mean, np.sqrt(np.maximum(var, 0.0))


# --- binned Gaussian + flat fit ------------------------------------------------------
_SQRT2 = math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)
_MIN_BKG = 1e-9  # per bin; keeps every expectation positive
_LOG_MIN_BKG = math.log(_MIN_BKG)
_START_BKG = 0.05  # start value of the background per bin when the window edges are empty


@njit
def _model(y, x0, bw, th, lam, jac):
    """Expected counts per bin and their derivatives w.r.t. (s, mu, sigma, log b); returns NLL.

    The background enters as log b: Fisher scoring then converges quickly also when the
    best background is close to zero (a window without tail or noise hits)."""
    s, mu, sig, bkg = th[0], th[1], th[2], math.exp(th[3])
    nll = 0.0
    ze = (x0 - mu) / sig
    cdf_prev = 0.5 * math.erfc(-ze / _SQRT2)
    pdf_prev = _INV_SQRT2PI * math.exp(-0.5 * ze * ze)
    zprev = ze
    for i in range(y.shape[0]):
        ze = (x0 + (i + 1) * bw - mu) / sig
        cdf = 0.5 * math.erfc(-ze / _SQRT2)
        pdf = _INV_SQRT2PI * math.exp(-0.5 * ze * ze)
        p = cdf - cdf_prev
        lam[i] = s * p + bkg
        jac[i, 0] = p
        jac[i, 1] = s * (pdf_prev - pdf) / sig
        jac[i, 2] = s * (pdf_prev * zprev - pdf * ze) / sig
        jac[i, 3] = bkg
        if y[i] > 0:
            nll += lam[i] - y[i] * math.log(lam[i])
        else:
            nll += lam[i]
        cdf_prev, pdf_prev, zprev = cdf, pdf, ze
    return nll


@njit
def _fisher(y, lam, jac, grad, info):
    for a in range(4):
        grad[a] = 0.0
        for b in range(4):
            info[a, b] = 0.0
    for i in range(y.shape[0]):
        r = 1.0 - y[i] / lam[i]
        for a in range(4):
            grad[a] += r * jac[i, a]
            f = jac[i, a] / lam[i]
            for b in range(4):
                info[a, b] += f * jac[i, b]


@njit
def _cholesky_solve(a, rhs, out):
    """Solve a x = rhs for a 4x4 symmetric positive-definite ``a``; False if not SPD."""
    n = 4
    low = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1):
            s = a[i, j]
            for k in range(j):
                s -= low[i, k] * low[j, k]
            if i == j:
                if not s > 0.0:
                    return False
                low[i, i] = math.sqrt(s)
            else:
                low[i, j] = s / low[j, j]
    tmp = np.zeros(n)
    for i in range(n):
        s = rhs[i]
        for k in range(i):
            s -= low[i, k] * tmp[k]
        tmp[i] = s / low[i, i]
    for i in range(n - 1, -1, -1):
        s = tmp[i]
        for k in range(i + 1, n):
            s -= low[k, i] * out[k]
        out[i] = s / low[i, i]
    return True


@njit
def _fit_one(y, x0, bw, th, max_iter, tol, err):
    w = y.shape[0]
    lam = np.empty(w)
    jac = np.empty((w, 4))
    grad = np.empty(4)
    info = np.empty((4, 4))
    step = np.zeros(4)
    cand = np.empty(4)
    nll = _model(y, x0, bw, th, lam, jac)
    status = FIT_MAX_ITER
    for _ in range(max_iter):
        _fisher(y, lam, jac, grad, info)
        if not _cholesky_solve(info, grad, step):
            return FIT_INVALID
        t = 1.0
        new = nll
        accepted = False
        for _h in range(30):  # step halving until the likelihood does not get worse
            for a in range(4):
                cand[a] = th[a] - t * step[a]
            cand[3] = max(cand[3], _LOG_MIN_BKG)
            if cand[0] > 0.0 and cand[2] > 0.05 * bw:
                new = _model(y, x0, bw, cand, lam, jac)
                if new <= nll + 1e-10:
                    accepted = True
                    break
            t *= 0.5
        if not accepted:
            nll = _model(y, x0, bw, th, lam, jac)  # restore lam/jac at th
            status = FIT_OK if abs(step[1]) < tol * th[2] else FIT_INVALID
            break
        moved = abs(cand[1] - th[1])
        for a in range(4):
            th[a] = cand[a]
        dnll = nll - new
        nll = new
        if moved < tol * th[2] and dnll < 1e-7:
            status = FIT_OK
            break
    # uncertainties from the expected information at the optimum
    _fisher(y, lam, jac, grad, info)
    unit = np.zeros(4)
    col = np.zeros(4)
    for a in range(4):
        for b in range(4):
            unit[b] = 1.0 if a == b else 0.0
        if not _cholesky_solve(info, unit, col):
            return FIT_INVALID
        err[a] = math.sqrt(col[a]) if col[a] > 0 else np.nan
    return status


@njit(parallel=True)
def fit_gauss_flat(counts, first_edge, bin_width, mu0, sigma0, max_iter, tol):
    """Binned Poisson maximum-likelihood fit of ``s * Gauss(mu, sigma) + b`` per row.

    ``counts`` f8[n, W]: each row a window of W regular bins of width ``bin_width`` whose
    lower edge is ``first_edge[row]``; ``mu0[row]`` and ``sigma0`` start the fit. The model
    integrates the Gaussian over each bin (no bin-centre approximation); ``b`` is the
    background per bin. Fisher scoring with step halving; uncertainties are the square
    roots of the diagonal of the inverse expected information at the optimum.
    Returns (params f8[n, 4], errors f8[n, 4], status int8[n]) with columns
    :data:`FIT_PARAMS` and status :data:`FIT_OK`, :data:`FIT_MAX_ITER`, :data:`FIT_INVALID`.
    """
    n, w = counts.shape
    params = np.full((n, 4), np.nan)
    errors = np.full((n, 4), np.nan)
    status = np.full(n, FIT_INVALID, dtype=np.int8)
    for r in prange(n):
        y = counts[r]
        total = y.sum()
        if not total > 0:
            continue  # nothing to fit: FIT_INVALID
        edge = 0.0
        k = min(3, w // 2)
        for i in range(k):
            edge += y[i] + y[w - 1 - i]
        bkg = max(edge / (2 * k), _START_BKG) if k > 0 else _START_BKG
        th = np.empty(4)
        th[0] = max(total - bkg * w, 1.0)
        th[1] = mu0[r]
        th[2] = sigma0
        th[3] = math.log(bkg)
        err = np.full(4, np.nan)
        st = _fit_one(y, first_edge[r], bin_width, th, max_iter, tol, err)
        status[r] = st
        for a in range(3):
            params[r, a] = th[a]
            errors[r, a] = err[a]
        params[r, 3] = math.exp(th[3])
        errors[r, 3] = params[r, 3] * err[3]  # error of b from that of log b
    return params, errors, status


def _model_numpy(y, x0, bw, th):
    from scipy.special import ndtr

    s, mu, sig = (th[:, k][:, None] for k in range(3))
    bkg = np.exp(th[:, 3])[:, None]
    e = x0[:, None] + bw * np.arange(y.shape[1] + 1)[None, :]
    z = (e - mu) / sig
    cdf = ndtr(z)
    pdf = np.exp(-0.5 * z * z) * _INV_SQRT2PI
    p = np.diff(cdf, axis=1)
    lam = s * p + bkg
    jac = np.stack([
        p,
        s * (pdf[:, :-1] - pdf[:, 1:]) / sig,
        s * (pdf[:, :-1] * z[:, :-1] - pdf[:, 1:] * z[:, 1:]) / sig,
        np.broadcast_to(bkg, p.shape),
    ], axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        nll = (lam - np.where(y > 0, y * np.log(lam), 0.0)).sum(axis=1)
    return nll, lam, jac


def fit_gauss_flat_numpy(counts, first_edge, bin_width, mu0, sigma0, max_iter=50, tol=1e-4):
    """Plain-numpy twin of :func:`fit_gauss_flat`, vectorised over rows (same algorithm)."""
    y = np.asarray(counts, dtype=np.float64)
    x0 = np.asarray(first_edge, dtype=np.float64)
    n, w = y.shape
    k = min(3, w // 2)
    bkg = np.maximum((y[:, :k].sum(axis=1) + y[:, w - k:].sum(axis=1)) / (2 * k), _START_BKG)
    th = np.column_stack([np.maximum(y.sum(axis=1) - bkg * w, 1.0), np.asarray(mu0, float),
                          np.full(n, float(sigma0)), np.log(bkg)])
    status = np.full(n, FIT_MAX_ITER, dtype=np.int8)
    active = y.sum(axis=1) > 0
    status[~active] = FIT_INVALID
    nll, lam, jac = _model_numpy(y, x0, bin_width, th)
    for _ in range(max_iter):
        if not active.any():
            break
        idx = np.flatnonzero(active)
        ya, lama, jaca = y[idx], lam[idx], jac[idx]
        grad = np.einsum("ni,nia->na", 1.0 - ya / lama, jaca)
        info = np.einsum("nia,nib->nab", jaca / lama[:, :, None], jaca)
        try:
            step = np.linalg.solve(info, grad[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            step = np.stack([np.linalg.lstsq(m, g, rcond=None)[0] for m, g in zip(info, grad)])
        t = np.ones(idx.size)
        done = np.zeros(idx.size, dtype=bool)
        cand = th[idx].copy()
        new = np.full(idx.size, np.inf)
        for _h in range(30):
            c = th[idx] - t[:, None] * step
            c[:, 3] = np.maximum(c[:, 3], _LOG_MIN_BKG)
            ok = (c[:, 0] > 0) & (c[:, 2] > 0.05 * bin_width) & ~done
            if ok.any():
                sel = np.flatnonzero(ok)
                nl, _, _ = _model_numpy(ya[sel], x0[idx][sel], bin_width, c[sel])
                good = nl <= nll[idx][sel] + 1e-10
                acc = sel[good]
                cand[acc] = c[acc]
                new[acc] = nl[good]
                done[acc] = True
            if done.all():
                break
            t = np.where(done, t, 0.5 * t)
        # rows with no acceptable step stop here
        stuck = idx[~done]
        status[stuck] = np.where(np.abs(step[~done, 1]) < tol * th[stuck, 2], FIT_OK, FIT_INVALID)
        active[stuck] = False
        acc_rows = idx[done]
        moved = np.abs(cand[done, 1] - th[acc_rows, 1])
        dnll = nll[acc_rows] - new[done]
        th[acc_rows] = cand[done]
        nll[acc_rows] = new[done]
        conv = (moved < tol * th[acc_rows, 2]) & (dnll < 1e-7)
        status[acc_rows[conv]] = FIT_OK
        active[acc_rows[conv]] = False
        nll, lam, jac = _model_numpy(y, x0, bin_width, th)
    info = np.einsum("nia,nib->nab", jac / lam[:, :, None], jac)
    errors = np.full((n, 4), np.nan)
    for r in range(n):
        if status[r] == FIT_INVALID:
            th[r] = np.nan
            continue
        try:
            cov = np.linalg.inv(info[r])
        except np.linalg.LinAlgError:
            status[r] = FIT_INVALID
            continue
        d = np.diag(cov)
        errors[r] = np.where(d > 0, np.sqrt(np.abs(d)), np.nan)
    params = th.copy()
    params[:, 3] = np.exp(th[:, 3])
    errors[:, 3] *= params[:, 3]  # error of b from that of log b
    return params, errors, status
