"""Per-channel statistics kernels agree with their numpy twins and with pandas/numpy references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpnb.kernels.hist import fill_channel_hist
from dpnb.kernels.stats import (
    FIT_INVALID, FIT_OK, channel_mean_median, channel_mean_median_numpy, fit_gauss_flat, fit_gauss_flat_numpy, hist_mode,
    hist_mode_numpy, hist_window_moments, hist_window_moments_numpy,
)


@pytest.fixture(autouse=True)
def _parallel_even_for_small_inputs(monkeypatch):
    # the wrappers run small inputs serially; the tests must exercise the parallel kernels
    import dpnb.kernels.hist

    monkeypatch.setattr(dpnb.kernels.hist, "MIN_ENTRIES_PER_THREAD", 1)


@pytest.mark.parametrize("nthreads", [1, 2, 5])
def test_mean_median_match_pandas_and_twin(nthreads):
    rng = np.random.default_rng(7)
    n_ch = 40
    ch = rng.integers(-1, n_ch + 1, 20_000)
    v = rng.exponential(10.0, ch.size)
    v[rng.random(ch.size) < 0.02] = np.nan
    ch[ch == 17] = 18  # channel 17 empty
    cnt, mean, med = channel_mean_median(ch, v, n_ch, nthreads)
    c2, m2, d2 = channel_mean_median_numpy(ch, v, n_ch)
    np.testing.assert_array_equal(cnt, c2)
    np.testing.assert_allclose(mean, m2, rtol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(med, d2)
    ok = (ch >= 0) & (ch < n_ch) & ~np.isnan(v)
    ref = pd.DataFrame({"ch": ch[ok], "v": v[ok]}).groupby("ch")["v"].agg(["count", "mean", "median"])
    np.testing.assert_array_equal(cnt[ref.index], ref["count"])
    np.testing.assert_allclose(mean[ref.index], ref["mean"], rtol=1e-12)
    np.testing.assert_allclose(med[ref.index], ref["median"], rtol=1e-12)
    assert cnt[17] == 0 and np.isnan(mean[17]) and np.isnan(med[17])


def test_hist_mode_and_window_moments():
    rng = np.random.default_rng(1)
    n_ch = 30
    peak = rng.uniform(50, 350, n_ch)
    ch = np.repeat(np.arange(n_ch), 2000)
    t = np.where(rng.random(ch.size) < 0.7, rng.normal(peak[ch], 4.0), rng.uniform(0, 400, ch.size))
    h = fill_channel_hist(ch, t, n_ch, 200, 0.0, 400.0, 2)
    h[3] = 0  # an empty channel
    mode = hist_mode(h, 2)
    np.testing.assert_array_equal(mode, hist_mode_numpy(h, 2))
    ok = np.arange(n_ch) != 3
    assert mode[3] == -1
    assert np.all(np.abs((mode[ok] + 0.5) * 2.0 - peak[ok]) < 4.0)  # within a sigma of the truth
    centre = (mode + 0.5) * 2.0
    a = hist_window_moments(h, 0.0, 400.0, centre, 8.0)
    b = hist_window_moments_numpy(h, 0.0, 400.0, centre, 8.0)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-10, equal_nan=True)
    assert np.all(np.abs(a[1][ok] - peak[ok]) < 1.5)


def _peak_windows(n_rows, n_signal, bkg_per_bin, seed):
    rng = np.random.default_rng(seed)
    mu = rng.uniform(20.0, 28.0, n_rows)
    w, bw = 24, 2.0
    y = np.empty((n_rows, w))
    edges = np.arange(w + 1) * bw
    for r in range(n_rows):
        s = rng.poisson(n_signal)
        y[r] = np.histogram(rng.normal(mu[r], 4.0, s), edges)[0] + rng.poisson(bkg_per_bin, w)
    return y, np.zeros(n_rows), bw, mu


def test_fit_kernel_matches_numpy_twin_and_truth():
    y, x0, bw, mu = _peak_windows(400, 120, 1.5, seed=3)
    mu0 = mu + np.random.default_rng(0).normal(0, 2.0, mu.size)  # imperfect start values
    p, e, st = fit_gauss_flat(y, x0, bw, mu0, 4.0, 60, 1e-4)
    p2, e2, st2 = fit_gauss_flat_numpy(y, x0, bw, mu0, 4.0, 60, 1e-4)
    np.testing.assert_array_equal(st, st2)
    np.testing.assert_allclose(p, p2, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(e, e2, rtol=1e-6)
    assert np.mean(st == FIT_OK) >= 0.99
    pull = ((p[:, 1] - mu) / e[:, 1])[st == FIT_OK]
    assert abs(pull.mean()) < 0.15 and 0.88 < pull.std() < 1.12
    assert abs(np.median(p[:, 2]) - 4.0) < 0.2


def test_fit_kernel_reports_failure_on_empty_window():
    y = np.zeros((2, 24))
    y[1, 10:14] = 50
    p, e, st = fit_gauss_flat(y, np.zeros(2), 2.0, np.array([24.0, 24.0]), 4.0, 60, 1e-4)
    assert st[0] == FIT_INVALID and np.isnan(p[0]).all()
    p2, _, st2 = fit_gauss_flat_numpy(y, np.zeros(2), 2.0, np.array([24.0, 24.0]), 4.0, 60, 1e-4)
    np.testing.assert_array_equal(st, st2)
    np.testing.assert_allclose(p2[1], p[1], rtol=1e-7)
    assert np.isnan(p2[0]).all()
    assert st[1] == FIT_OK and 20.0 < p[1, 1] < 28.0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(-3, 3)), min_size=1, max_size=60), st.integers(1, 3))
def test_median_with_ties_matches_numpy(pairs, nthreads):
    # many equal values and even / odd counts: the cases a quickselect gets wrong
    ch = np.array([p[0] for p in pairs], dtype=np.int64)
    v = np.array([p[1] for p in pairs], dtype=np.float32)
    cnt, mean, med = channel_mean_median(ch, v, 5, nthreads)
    c2, m2, d2 = channel_mean_median_numpy(ch, v, 5)
    np.testing.assert_array_equal(cnt, c2)
    np.testing.assert_array_equal(med, d2)
    np.testing.assert_allclose(mean, m2, rtol=1e-12, equal_nan=True)
