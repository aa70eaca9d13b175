"""Selection kernels agree with their numpy twins and with plain-Python loops."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpnb.kernels import select as ks


def _jagged(rng, n_events, mean=6.0, dtype=np.float32):
    counts = rng.poisson(mean, n_events)
    offsets = np.zeros(n_events + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    n = int(offsets[-1])
    cols = {
        "px": rng.normal(0, 0.6, n).astype(dtype),
        "py": rng.normal(0, 0.6, n).astype(dtype),
        "pz": rng.normal(0, 0.8, n).astype(dtype),
        "d0": rng.normal(0, 1.5, n).astype(dtype),
        "z0": rng.normal(0, 3.0, n).astype(dtype),
    }
    return cols, offsets


def _python_good_counts(c, offsets, pt_min, d0_max, z0_max):
    out = []
    for i in range(len(offsets) - 1):
        k = 0
        for j in range(offsets[i], offsets[i + 1]):
            pt = np.hypot(float(c["px"][j]), float(c["py"][j]))
            if pt > pt_min and abs(float(c["d0"][j])) < d0_max and abs(float(c["z0"][j])) < z0_max:
                k += 1
        out.append(k)
    return np.array(out)


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_count_good_tracks_matches_python_loop(n_threads):
    rng = np.random.default_rng(7)
    c, off = _jagged(rng, 3000)
    expect = _python_good_counts(c, off, 0.2, 2.0, 4.0)
    got = ks.count_good_tracks(c["px"], c["py"], c["d0"], c["z0"], off, 0.2, 2.0, 4.0, n_threads)
    twin = ks.count_good_tracks_numpy(c["px"], c["py"], c["d0"], c["z0"], off, 0.2, 2.0, 4.0)
    np.testing.assert_array_equal(got, expect)
    np.testing.assert_array_equal(twin, expect)
    assert expect.sum() > 1000  # the cuts keep a good share but not everything
    assert expect.sum() < off[-1]
    mask = ks.good_track_event_mask(c["px"], c["py"], c["d0"], c["z0"], off, 0.2, 2.0, 4.0, 3, n_threads)
    np.testing.assert_array_equal(mask, expect >= 3)
    np.testing.assert_array_equal(
        ks.good_track_event_mask_numpy(c["px"], c["py"], c["d0"], c["z0"], off, 0.2, 2.0, 4.0, 3), expect >= 3
    )


jagged_cases = st.lists(
    st.lists(st.floats(-5, 5, allow_nan=False, width=32), min_size=0, max_size=7), min_size=0, max_size=40
)


def _from_lists(lists):
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in lists], out=offsets[1:])
    values = np.array([v for x in lists for v in x], dtype=np.float32)
    return values, offsets


@settings(max_examples=60, deadline=None)
@given(jagged_cases, st.floats(-3, 3, allow_nan=False), st.integers(1, 4))
def test_segment_reductions_match_python(lists, cut, n_threads):
    values, offsets = _from_lists(lists)
    mask = values > cut
    expect_count = [sum(1 for v in x if np.float32(v) > cut) for x in lists]
    np.testing.assert_array_equal(ks.count_per_event(mask, offsets, n_threads), expect_count)
    np.testing.assert_array_equal(ks.count_per_event_numpy(mask, offsets), expect_count)
    expect_max = [max(np.float32(v) for v in x) if x else -99.0 for x in lists]
    expect_min = [min(np.float32(v) for v in x) if x else 99.0 for x in lists]
    np.testing.assert_array_equal(ks.max_per_event(values, offsets, -99.0, n_threads), expect_max)
    np.testing.assert_array_equal(ks.max_per_event_numpy(values, offsets, -99.0), expect_max)
    np.testing.assert_array_equal(ks.min_per_event(values, offsets, 99.0, n_threads), expect_min)
    np.testing.assert_array_equal(ks.min_per_event_numpy(values, offsets, 99.0), expect_min)
    expect_sum = [float(np.sum(np.asarray(x, dtype=np.float32), dtype=np.float64)) for x in lists]
    np.testing.assert_allclose(ks.sum_per_event(values, offsets, n_threads), expect_sum, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ks.sum_per_event_numpy(values, offsets), expect_sum, rtol=1e-12, atol=1e-12)


def test_leading_pair_mass_back_to_back_and_twin():
    # two back-to-back muons of |p| = 5.29 GeV: M = 2 * sqrt(p^2 + m^2); a third soft track is ignored
    m_mu = 0.1056584
    px = np.array([5.29, -5.29, 0.1, 1.0], dtype=np.float64)
    py = np.zeros(4)
    pz = np.zeros(4)
    off = np.array([0, 3, 4], dtype=np.int64)
    got = ks.leading_pair_mass(px, py, pz, off, m_mu, 1)
    assert got[0] == pytest.approx(2 * np.sqrt(5.29**2 + m_mu**2), rel=1e-12)
    assert np.isnan(got[1])
    rng = np.random.default_rng(3)
    c, off = _jagged(rng, 2000)
    a = ks.leading_pair_mass(c["px"], c["py"], c["pz"], off, 0.13957, 2)
    b = ks.leading_pair_mass_numpy(c["px"], c["py"], c["pz"], off, 0.13957)
    np.testing.assert_allclose(a, b, rtol=1e-12, equal_nan=True)
    assert np.isfinite(a).sum() == int((np.diff(off) >= 2).sum())


def test_hemisphere_counts():
    # event 0: lead along +x, one track along +x, two along -x; event 1: empty
    px = np.array([3.0, 0.5, -1.0, -0.2], dtype=np.float32)
    py = np.array([0.0, 0.1, 0.0, 0.1], dtype=np.float32)
    pz = np.zeros(4, dtype=np.float32)
    off = np.array([0, 4, 4], dtype=np.int64)
    same, opp = ks.hemisphere_counts(px, py, pz, off, 1)
    np.testing.assert_array_equal(same, [2, 0])
    np.testing.assert_array_equal(opp, [2, 0])
    rng = np.random.default_rng(11)
    c, off = _jagged(rng, 1500)
    s1, o1 = ks.hemisphere_counts(c["px"], c["py"], c["pz"], off, 2)
    s2, o2 = ks.hemisphere_counts_numpy(c["px"], c["py"], c["pz"], off)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(s1 + o1, np.diff(off))
