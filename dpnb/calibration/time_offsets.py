"""Per-channel time offsets (T0) from per-channel hit-time histograms.

Model (see :mod:`dpnb.detector`): a hit's time is ``T0[ch] + DRIFT_PEAK_NS + drift``, the
drift being Gaussian (width ``DRIFT_SIGMA_NS``) for a fraction ``DRIFT_CORE_FRACTION``
and otherwise uniform over ``DRIFT_TAIL_NS``; noise hits are uniform. Near the peak the
tail and the noise are both flat, so each channel's histogram is fitted in a window of
``± window_ns`` around its mode with a Gaussian plus a flat background (binned Poisson
likelihood, :func:`dpnb.kernels.stats.fit_gauss_flat`, all channels at once). Then
``T0 = mu - DRIFT_PEAK_NS`` and its uncertainty is the fit's (inverse expected
information), so pulls against the truth have unit width when the model holds.

Per channel ``status`` (``ChannelT0`` payload codes): ``T0_OK``, ``T0_MASKED`` (masked by
``ChannelMask``) or ``T0_NOT_ENOUGH_DATA`` (fewer than ``min_hits`` hits in the window).
When the fit fails (not converged, peak outside the window, absurd width) a robust
fallback is used: the truncated mean of the hits within ``± fallback_half_width_ns`` of
the mode, with error rms/sqrt(n) (``method == METHOD_FALLBACK``). Channels that are not
``T0_OK`` get ``t0_ns = 0`` (the nominal value) and ``t0_err_ns = NaN``.

:func:`fit_channel_iminuit` fits one channel with iminuit (the reference fit, used for
example plots and to validate the fast fit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..detector import DRIFT_PEAK_NS, DRIFT_SIGMA_NS
from ..kernels.stats import FIT_OK, fit_gauss_flat, hist_mode, hist_window_moments
from .payloads import T0_MASKED, T0_NOT_ENOUGH_DATA, T0_OK

__all__ = [
    "T0Result", "fit_time_offsets", "fit_channel_iminuit", "peak_window", "expected_counts",
    "pulls", "enough_data", "aligned_peak_shift", "runs_with_dependency", "mask_from_db",
    "METHOD_NONE", "METHOD_FIT", "METHOD_FALLBACK",
]

METHOD_NONE, METHOD_FIT, METHOD_FALLBACK = -1, 0, 1


@dataclass
class T0Result:
    """Per-channel outcome of :func:`fit_time_offsets` (all arrays of length n_channels)."""

    t0_ns: np.ndarray
    t0_err_ns: np.ndarray
    status: np.ndarray  # int8 payload status
    method: np.ndarray  # int8 METHOD_*
    fit_status: np.ndarray  # int8 kernel status (FIT_OK ...), -1 where no fit was tried
    params: np.ndarray  # f8[n, 4]: signal, mu_ns, sigma_ns, background per bin
    errors: np.ndarray  # f8[n, 4]
    n_window: np.ndarray  # hits in the fit window
    window_first_edge_ns: np.ndarray
    bin_width_ns: float
    window_bins: int

    @property
    def n_calibrated(self) -> int:
        return int(np.count_nonzero(self.status == T0_OK))

    @property
    def n_attempted(self) -> int:
        """Channels neither masked nor short of data (those a fit was tried on)."""
        return int(np.count_nonzero(self.fit_status >= 0))

    @property
    def fit_converged_fraction(self) -> float:
        """Fraction of attempted channels whose fast fit converged and passed the checks."""
        att = self.n_attempted
        return float(np.count_nonzero(self.method == METHOD_FIT)) / att if att else float("nan")

    def payload(self) -> dict:
        """Data of a ``ChannelT0`` payload."""
        return {"t0_ns": self.t0_ns.astype(np.float64), "t0_err_ns": self.t0_err_ns.astype(np.float64),
                "status": self.status.astype(np.int8)}


def peak_window(hist, lo: float, hi: float, window_ns: float):
    """Mode bin and the fit window of each channel: (mode int64[n], first bin int64[n],
    number of window bins). The window holds ``2 * window_ns`` around the mode, shifted to
    stay inside the histogram."""
    n_ch, n_bins = hist.shape
    bw = (hi - lo) / n_bins
    # the mode of a 3-sigma-wide running sum is robust against single-bin spikes
    half = max(1, int(round(DRIFT_SIGMA_NS / bw)))
    mode = hist_mode(np.ascontiguousarray(hist), half)
    w = min(n_bins, max(4, int(round(2 * window_ns / bw))))
    first = np.clip(np.where(mode >= 0, mode, 0) - w // 2, 0, n_bins - w)
    return mode, first.astype(np.int64), w


def fit_time_offsets(hist, lo: float, hi: float, *, masked=None, min_hits: int = 30, window_ns: float = 24.0,
                     fallback_half_width_ns: float = 10.0, max_iter: int = 60, tol: float = 1e-4,
                     sigma_range=(0.25, 3.0)) -> T0Result:
    """Fit the T0 of every channel of ``hist`` (int[n_channels, n_bins], hit time in ns over
    ``[lo, hi)``). ``masked`` (bool[n]) marks channels not to calibrate; ``sigma_range``
    bounds the fitted width in units of ``DRIFT_SIGMA_NS`` for a fit to be accepted."""
    hist = np.asarray(hist)
    n_ch, n_bins = hist.shape
    bw = (hi - lo) / n_bins
    masked = np.zeros(n_ch, dtype=bool) if masked is None else np.asarray(masked, dtype=bool)
    mode, first, w = peak_window(hist, lo, hi, window_ns)
    idx = first[:, None] + np.arange(w)[None, :]
    y = np.take_along_axis(hist, idx, axis=1).astype(np.float64)
    n_window = y.sum(axis=1)
    x0 = lo + first * bw
    status = np.full(n_ch, T0_OK, dtype=np.int8)
    status[n_window < min_hits] = T0_NOT_ENOUGH_DATA
    status[masked] = T0_MASKED
    todo = np.flatnonzero(status == T0_OK)

    params = np.full((n_ch, 4), np.nan)
    errors = np.full((n_ch, 4), np.nan)
    fit_status = np.full(n_ch, -1, dtype=np.int8)
    method = np.full(n_ch, METHOD_NONE, dtype=np.int8)
    t0 = np.zeros(n_ch)
    t0_err = np.full(n_ch, np.nan)
    if todo.size:
        mu0 = lo + (mode[todo] + 0.5) * bw
        p, e, st = fit_gauss_flat(np.ascontiguousarray(y[todo]), np.ascontiguousarray(x0[todo]), bw,
                                  np.ascontiguousarray(mu0), float(DRIFT_SIGMA_NS), int(max_iter), float(tol))
        params[todo], errors[todo], fit_status[todo] = p, e, st
        win_lo, win_hi = x0[todo], x0[todo] + w * bw
        good = ((st == FIT_OK) & np.isfinite(e[:, 1]) & (p[:, 1] > win_lo) & (p[:, 1] < win_hi)
                & (p[:, 2] > sigma_range[0] * DRIFT_SIGMA_NS) & (p[:, 2] < sigma_range[1] * DRIFT_SIGMA_NS))
        ok = todo[good]
        method[ok] = METHOD_FIT
        t0[ok] = p[good, 1] - DRIFT_PEAK_NS
        t0_err[ok] = e[good, 1]
        bad = todo[~good]
        if bad.size:
            centre = lo + (mode[bad] + 0.5) * bw
            cnt, mean, rms = hist_window_moments(np.ascontiguousarray(hist[bad]), float(lo), float(hi),
                                                 np.ascontiguousarray(centre), float(fallback_half_width_ns))
            usable = (cnt >= min_hits) & np.isfinite(mean) & (rms > 0)
            fb = bad[usable]
            method[fb] = METHOD_FALLBACK
            t0[fb] = mean[usable] - DRIFT_PEAK_NS
            t0_err[fb] = rms[usable] / np.sqrt(cnt[usable])
            status[bad[~usable]] = T0_NOT_ENOUGH_DATA
    t0[status != T0_OK] = 0.0
    t0_err[status != T0_OK] = np.nan
    return T0Result(t0, t0_err, status, method, fit_status, params, errors, n_window, x0, float(bw), int(w))


def expected_counts(params_row, first_edge_ns: float, bin_width_ns: float, n_bins: int) -> np.ndarray:
    """Expected counts per bin of the fitted model (signal, mu, sigma, background per bin)."""
    from scipy.special import ndtr

    s, mu, sig, b = params_row
    e = first_edge_ns + bin_width_ns * np.arange(n_bins + 1)
    return s * np.diff(ndtr((e - mu) / sig)) + b


def fit_channel_iminuit(counts, first_edge_ns: float, bin_width_ns: float, mu0: float | None = None,
                        sigma0: float = DRIFT_SIGMA_NS):
    """Reference fit of one window of counts with iminuit (extended binned likelihood).

    Returns ``(values, errors, minuit)``: values and errors as f8[4] in the order
    (signal, mu_ns, sigma_ns, background per bin), and the :class:`iminuit.Minuit` object
    (``minuit.valid`` says whether the minimum is valid).
    """
    from iminuit import Minuit
    from iminuit.cost import ExtendedBinnedNLL
    from scipy.special import ndtr

    counts = np.asarray(counts, dtype=np.float64)
    w = counts.size
    edges = first_edge_ns + bin_width_ns * np.arange(w + 1)
    x0 = edges[0]

    def scaled_cdf(x, s, mu, sigma, b):
        # integral of the model from the window's lower edge: Gaussian part + flat part
        return s * ndtr((x - mu) / sigma) + b * (x - x0) / bin_width_ns

    k = min(3, w // 2)
    b0 = max((counts[:k].sum() + counts[-k:].sum()) / (2 * k), 1e-3)
    if mu0 is None:
        mu0 = float(edges[np.argmax(counts)] + 0.5 * bin_width_ns)
    cost = ExtendedBinnedNLL(counts, edges, scaled_cdf)
    m = Minuit(cost, s=max(counts.sum() - b0 * w, 1.0), mu=mu0, sigma=sigma0, b=b0)
    m.limits["s"] = (0, None)
    m.limits["sigma"] = (0.05 * bin_width_ns, None)
    m.limits["b"] = (0, None)
    m.migrad()
    m.hesse()
    values = np.array([m.values[k] for k in ("s", "mu", "sigma", "b")])
    errors = np.array([m.errors[k] for k in ("s", "mu", "sigma", "b")])
    return values, errors, m


def pulls(result: T0Result, true_t0_ns) -> np.ndarray:
    """(recovered - true) / sigma over the calibrated channels (status ``T0_OK``)."""
    ok = result.status == T0_OK
    true_t0_ns = np.asarray(true_t0_ns, dtype=np.float64)
    return (result.t0_ns[ok] - true_t0_ns[ok]) / result.t0_err_ns[ok]


def enough_data(hist, masked=None, *, min_hits: int = 30, min_fraction: float = 0.95,
                lo: float = 0.0, hi: float = 400.0, window_ns: float = 24.0) -> bool:
    """True if at least ``min_fraction`` of the unmasked channels of ``hist`` have
    ``min_hits`` hits in their peak window (the criterion of the run-by-run IOV strategy)."""
    hist = np.asarray(hist)
    masked = np.zeros(hist.shape[0], dtype=bool) if masked is None else np.asarray(masked, dtype=bool)
    _, first, w = peak_window(hist, lo, hi, window_ns)
    idx = first[:, None] + np.arange(w)[None, :]
    n_window = np.take_along_axis(hist, idx, axis=1).sum(axis=1)
    live = ~masked
    if not live.any():
        return False
    return float(np.mean(n_window[live] >= min_hits)) >= min_fraction


def aligned_peak_shift(hist, t0_ns, use, lo: float, hi: float, window_ns: float = 24.0):
    """Residual time shift (ns) of one run after the per-channel correction, and its error.

    Each used channel's histogram is moved by ``-round(t0_ns / bin width)`` bins, the rows
    are summed and the common peak is fitted: ``mu - DRIFT_PEAK_NS`` should be ~0 for a run
    whose T0s did not drift. Returns ``(shift_ns, error_ns, hits)``; NaN without hits.
    """
    hist = np.asarray(hist)
    n_ch, n_bins = hist.shape
    bw = (hi - lo) / n_bins
    use = np.asarray(use, dtype=bool)
    shift = np.rint(np.asarray(t0_ns, dtype=np.float64)[use] / bw).astype(np.int64)
    cols = np.arange(n_bins)[None, :] - shift[:, None]  # bin after subtracting the channel's T0
    inside = (cols >= 0) & (cols < n_bins)
    total = np.bincount(cols[inside], weights=hist[use][inside], minlength=n_bins)[None, :]
    res = fit_time_offsets(np.rint(total).astype(np.int64), lo, hi, min_hits=30, window_ns=window_ns)
    hits = float(res.n_window[0])
    if res.status[0] != T0_OK:
        return float("nan"), float("nan"), hits
    return float(res.t0_ns[0]), float(res.t0_err_ns[0]), hits


def runs_with_dependency(db, payload: str, runs, tags, policy: str = "fail"):
    """Split ``runs`` by whether payload ``payload`` exists for them in the tag chain ``tags``.

    ``policy="fail"``: a missing payload raises :class:`~dpnb.errors.ConditionsError` naming
    the payload, the runs and the tags; ``"skip"``: returns ``(runs with it, {run: reason})``.
    """
    from ..errors import ConditionsError, ParameterError

    if policy not in ("fail", "skip"):
        msg = f"on_missing_dependency must be 'fail' or 'skip', got {policy!r}"
        raise ParameterError(msg)
    runs = sorted(runs)
    missing = db.runs_missing(payload, runs, tags)
    if missing and policy == "fail":
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        msg = (f"payload {payload!r} is missing for {len(missing)} of {len(runs)} run(s) in global tags {list(tags)}: "
               f"{shown}; run its step first, or set on_missing_dependency: skip to calibrate without those runs")
        raise ConditionsError(msg)
    gone = set(missing)
    return [r for r in runs if r not in gone], {r: f"no {payload} payload in {list(tags)}" for r in missing}


def mask_from_db(db, runs, tags, n_channels: int):
    """Channels masked (hot or dead) for any of ``runs`` by the ``ChannelMask`` payloads of
    the tag chain: ``(masked bool[n_channels], {revision: IOV string})``."""
    from ..errors import InputError

    masked = np.zeros(n_channels, dtype=bool)
    seen = {}
    for r in sorted(runs):
        p = db.get("ChannelMask", r, tags)
        if p.revision in seen:
            continue
        status = np.asarray(p.data["status"])
        if status.shape != (n_channels,):
            msg = (f"ChannelMask revision {p.revision[:12]} (IOV {p.iov}) has {status.size} channels; "
                   f"expected {n_channels} (detector.json of the dataset)")
            raise InputError(msg)
        masked |= status != 0
        seen[p.revision] = str(p.iov)
    return masked, seen
