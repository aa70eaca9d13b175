"""Histogram kernels agree with their numpy twins (and with numpy.histogram) for any thread count."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpnb.kernels.hist import (
    count_invalid, count_invalid_numpy, fill_channel_counts, fill_channel_counts_numpy, fill_channel_hist,
    fill_channel_hist_numpy, fill_hist1d, fill_hist1d_numpy,
)


@pytest.fixture(autouse=True)
def _parallel_even_for_small_inputs(monkeypatch):
    # the wrappers run small inputs serially; the tests must exercise the parallel kernels
    import dpnb.kernels.hist

    monkeypatch.setattr(dpnb.kernels.hist, "MIN_ENTRIES_PER_THREAD", 1)


def _hits(n, n_channels, seed=0):
    rng = np.random.default_rng(seed)
    ch = rng.integers(-3, n_channels + 3, n).astype(np.int32)  # a few out of range on purpose
    t = rng.uniform(-20.0, 420.0, n).astype(np.float32)
    t[rng.random(n) < 0.01] = np.nan
    t[:3] = [0.0, 400.0, np.nextafter(np.float32(400.0), np.float32(0))]  # edges
    return ch, t


@pytest.mark.parametrize("nthreads", [1, 2, 3])
def test_channel_hist_matches_numpy_twin(nthreads):
    ch, t = _hits(50_000, 97)
    h = fill_channel_hist(ch, t, 97, 200, 0.0, 400.0, nthreads)
    ref = fill_channel_hist_numpy(ch, t, 97, 200, 0.0, 400.0)
    np.testing.assert_array_equal(h, ref)
    # independent check: numpy.histogram of one channel
    sel = (ch == 5) & np.isfinite(t)
    np.testing.assert_array_equal(h[5], np.histogram(t[sel].astype(np.float64), bins=200, range=(0.0, 400.0))[0])
    # in-place accumulation over two halves equals one fill
    acc = np.zeros((97, 200), dtype=np.int64)
    fill_channel_hist(ch[:20_000], t[:20_000], 97, 200, 0.0, 400.0, nthreads, out=acc)
    fill_channel_hist(ch[20_000:], t[20_000:], 97, 200, 0.0, 400.0, nthreads, out=acc)
    np.testing.assert_array_equal(acc, ref)


def test_channel_counts_and_invalid_counts():
    ch, t = _hits(30_000, 50, seed=2)
    np.testing.assert_array_equal(fill_channel_counts(ch, 50, 2), fill_channel_counts_numpy(ch, 50))
    inv = count_invalid(ch, t, 50, 2)
    np.testing.assert_array_equal(inv, count_invalid_numpy(ch, t, 50))
    assert inv[0] == np.count_nonzero((ch < 0) | (ch >= 50)) and inv[2] == -3 and inv[3] == 52


@pytest.mark.parametrize("nthreads", [1, 2])
def test_hist1d_matches_numpy_histogram(nthreads):
    rng = np.random.default_rng(3)
    x = rng.normal(0.0, 1.0, 100_001)
    h = fill_hist1d(x, 1000, -3.0, 3.0, nthreads)
    np.testing.assert_array_equal(h, fill_hist1d_numpy(x, 1000, -3.0, 3.0))
    ref, _ = np.histogram(x, bins=1000, range=(-3.0, 3.0))
    # numpy.histogram closes the last bin; values equal to 3.0 exactly are absent here
    np.testing.assert_array_equal(h, ref)


def test_empty_input():
    e32, ef = np.zeros(0, np.int32), np.zeros(0, np.float32)
    assert fill_channel_hist(e32, ef, 4, 10, 0.0, 1.0, 2).sum() == 0
    assert fill_hist1d(ef, 10, 0.0, 1.0, 2).sum() == 0
    assert fill_channel_counts(e32, 4, 2).sum() == 0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(-2, 12), st.one_of(st.floats(-5, 105, width=32), st.just(float("nan")))), max_size=200),
       st.integers(1, 4))
def test_channel_hist_property(pairs, nthreads):
    ch = np.array([p[0] for p in pairs], dtype=np.int64)
    t = np.array([p[1] for p in pairs], dtype=np.float32)
    h = fill_channel_hist(ch, t, 10, 20, 0.0, 100.0, nthreads)
    np.testing.assert_array_equal(h, fill_channel_hist_numpy(ch, t, 10, 20, 0.0, 100.0))
    inside = (ch >= 0) & (ch < 10) & (t >= 0) & (t < 100)
    assert h.sum() == inside.sum()



def test_effective_threads():
    from dpnb.kernels import hist

    assert hist.effective_threads(4, 10) == 4  # the fixture allows one entry per thread
    hist.MIN_ENTRIES_PER_THREAD = 1000
    assert hist.effective_threads(4, 2500) == 2 and hist.effective_threads(4, 10) == 1
    assert hist.effective_threads(4, 10**6, max_threads=3) == 3 and hist.effective_threads(0, 10**6) == 1


@pytest.mark.parametrize("nthreads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.int64, np.uint32, np.int32])
@pytest.mark.parametrize("stage_min_fill", [0.0, 1e9])
def test_channel_hist_staged_and_direct(monkeypatch, nthreads, dtype, stage_min_fill):
    # both paths (uint8 staging, plain increments), several slot blocks per thread
    from dpnb.kernels import hist

    monkeypatch.setattr(hist, "STAGE_MIN_FILL", stage_min_fill)
    n_ch = 1000
    ch, t = _hits(5 * hist.SLOT_BLOCK + 777, n_ch, seed=9)
    ref = fill_channel_hist_numpy(ch, t, n_ch, 200, 0.0, 400.0)
    h = fill_channel_hist(ch, t, n_ch, 200, 0.0, 400.0, nthreads, dtype=dtype)
    assert h.dtype == dtype
    np.testing.assert_array_equal(h, ref)
    np.testing.assert_array_equal(fill_channel_hist_numpy(ch, t, n_ch, 200, 0.0, 400.0, dtype=dtype), ref)
    # counts accumulate in place in the given dtype
    fill_channel_hist(ch, t, n_ch, 200, 0.0, 400.0, nthreads, out=h)
    np.testing.assert_array_equal(h, 2 * ref)


@pytest.mark.parametrize("nthreads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.int64, np.uint32])
def test_staged_counts_wrap_exactly(monkeypatch, nthreads, dtype):
    # few slots, many hits: every uint8 slot (bins, under/overflow, bad channel, NaN) wraps
    # hundreds of times; the wide counts must take every 256 exactly once
    from dpnb.kernels import hist

    monkeypatch.setattr(hist, "STAGE_MIN_FILL", 0.0)
    rng = np.random.default_rng(12)
    n, n_ch = 400_000, 6
    ch = rng.integers(-2, n_ch + 2, n).astype(np.int64)
    t = rng.choice(np.array([-1.0, 5.0, 37.5, 99.99, 100.0, 1e30, np.nan], np.float32), n)
    occ, h = np.zeros(n_ch, np.int64), np.zeros((n_ch, 4), dtype)
    stats = hist.fill_channel_occupancy_hist(ch, t, n_ch, 4, 0.0, 100.0, occ, h, nthreads)
    valid = (ch >= 0) & (ch < n_ch)
    fin = valid & ~np.isnan(t)
    inside = fin & (t >= 0) & (t < 100)
    assert stats.tolist() == [np.count_nonzero(~valid), np.count_nonzero(valid & np.isnan(t)),
                              np.count_nonzero(fin & ~inside)]
    np.testing.assert_array_equal(occ, np.bincount(ch[fin], minlength=n_ch))
    for c in range(n_ch):
        np.testing.assert_array_equal(h[c], np.histogram(t[inside & (ch == c)], bins=4, range=(0.0, 100.0))[0])
    assert h.max() > 10 * 256  # the test did make slots wrap


def test_channel_hist_refuses_bad_out_and_overflowing_counts():
    ch, t = np.zeros(4, np.int32), np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="out must be a C-contiguous"):
        fill_channel_hist(ch, t, 4, 10, 0.0, 1.0, out=np.zeros((4, 10), np.float64))
    with pytest.raises(ValueError, match="out must be a C-contiguous"):
        fill_channel_hist(ch, t, 4, 10, 0.0, 1.0, out=np.zeros((10, 4), np.int64).T)
    with pytest.raises(ValueError, match="lengths differ"):
        fill_channel_hist(ch, t[:3], 4, 10, 0.0, 1.0)
