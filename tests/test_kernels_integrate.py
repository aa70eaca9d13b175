"""Integration kernels: numba vs numpy twin vs a plain Python loop."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpnb.kernels import integrate as k


def _series(n, seed=3, gaps=True):
    rng = np.random.default_rng(seed)
    step = rng.uniform(55.0, 65.0, n)
    if gaps and n > 10:
        step[rng.integers(0, n - 1, 3)] = 3000.0
    t = 1.5e9 + np.cumsum(step)
    stab = np.where(rng.random(n) < 0.2, rng.random(n), 1.0)
    stab[rng.random(n) < 0.1] = 0.0
    lumi = rng.uniform(0.0, 2e4, n)
    dlumi = rng.uniform(0.0, 50.0, n)
    return t, stab, lumi, dlumi


def _loop_durations(t, nominal, factor):
    out = []
    for i in range(len(t)):
        if i + 1 < len(t) and t[i + 1] - t[i] <= factor * nominal:
            out.append(t[i + 1] - t[i])
        else:
            out.append(nominal)
    return np.array(out)


def _loop_windows(t, d, stab, lumi, dlumi, a, b):
    rows = []
    for lo_w, hi_w in zip(a, b):
        s = v = st_ = cov = peak = 0.0
        for i in range(len(t)):
            ov = min(t[i] + d[i], hi_w) - max(t[i], lo_w)
            if ov > 0:
                s += ov * stab[i] * lumi[i]
                v += (ov * stab[i] * dlumi[i]) ** 2
                st_ += ov * stab[i]
                cov += ov
                if stab[i] > 0:
                    peak = max(peak, lumi[i])
        rows.append((s, v, st_, cov, peak))
    return np.array(rows)


def test_bin_durations_kernel_twin_and_loop():
    t, *_ = _series(500)
    got = k.bin_durations(t, 60.0, 3.0)
    np.testing.assert_array_equal(got, k.bin_durations_numpy(t, 60.0, 3.0))
    np.testing.assert_array_equal(got, _loop_durations(t, 60.0, 3.0))
    # the three 3000 s gaps were not bridged
    assert np.count_nonzero(got == 60.0) >= 4


@pytest.mark.parametrize("n_chunks", [1, 2, 7])
def test_integrate_total_matches_twin_and_loop(n_chunks):
    t, stab, lumi, dlumi = _series(2001)
    d = k.bin_durations(t, 60.0, 3.0)
    got = k.integrate_total(d, stab, lumi, dlumi, n_chunks)
    twin = k.integrate_total_numpy(d, stab, lumi, dlumi)
    loop = [math.fsum(d[i] * stab[i] * lumi[i] for i in range(len(t))),
            math.fsum((d[i] * stab[i] * dlumi[i]) ** 2 for i in range(len(t))),
            math.fsum(d[i] * stab[i] for i in range(len(t))), math.fsum(d), max(lumi[stab > 0])]
    np.testing.assert_allclose(got, twin, rtol=1e-12)
    np.testing.assert_allclose(got, loop, rtol=1e-12)


def test_integrate_total_empty():
    e = np.empty(0)
    np.testing.assert_array_equal(k.integrate_total(e, e, e, e, 2), np.zeros(5))


def test_integrate_windows_matches_twin_and_loop():
    t, stab, lumi, dlumi = _series(300)
    d = k.bin_durations(t, 60.0, 3.0)
    # windows starting and ending mid-bin, one in a gap, one before all data
    a = np.array([t[0] - 100, t[10] + 17.5, t[100] - 5.0, t[-1] + 1e4])
    b = np.array([t[0] + 1.0, t[60] + 3.25, t[250], t[-1] + 2e4])
    got = k.integrate_windows(t, d, stab, lumi, dlumi, a, b)
    np.testing.assert_allclose(got, k.integrate_windows_numpy(t, d, stab, lumi, dlumi, a, b), rtol=1e-12)
    np.testing.assert_allclose(got, _loop_windows(t, d, stab, lumi, dlumi, a, b), rtol=1e-12)
    assert got[3, 0] == 0.0 and got[1, 0] > 0


@settings(max_examples=30, deadline=None)
@given(st.integers(5, 200), st.lists(st.floats(0.01, 0.99), min_size=1, max_size=6), st.integers(0, 10_000))
def test_adjacent_windows_never_double_count(n, cuts, seed):
    """Windows that tile the fill add up to the whole-fill integral, whatever the cut points."""
    t, stab, lumi, dlumi = _series(n, seed=seed, gaps=False)
    d = k.bin_durations(t, 60.0, 3.0)
    lo, hi = t[0], t[-1] + d[-1]
    edges = np.concatenate(([lo], lo + np.sort(cuts) * (hi - lo), [hi]))
    w = k.integrate_windows(t, d, stab, lumi, dlumi, edges[:-1], edges[1:])
    tot = k.integrate_total(d, stab, lumi, dlumi, 2)
    assert w[:, 0].sum() == pytest.approx(tot[0], rel=1e-11)
    assert w[:, 2].sum() == pytest.approx(tot[2], rel=1e-11)
    assert w[:, 3].sum() == pytest.approx(tot[3], rel=1e-11)


def test_streaming_sum():
    x = np.random.default_rng(1).random(10_001)
    assert k.streaming_sum(x, 3) == pytest.approx(math.fsum(x), rel=1e-12)
