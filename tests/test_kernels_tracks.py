"""The track kernels agree with their numpy twins (and with brute-force loops where cheap)."""

from __future__ import annotations

import numpy as np
import pytest

from dpnb.detector import MUON_MASS_GEV
from dpnb.kernels import tracks as K


def _jagged(rng, n_events, max_tracks=6):
    counts = rng.integers(0, max_tracks + 1, n_events)
    offsets = np.zeros(n_events + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    n = int(offsets[-1])
    return offsets, n


def test_dimuon_candidates_match_twin():
    rng = np.random.default_rng(3)
    n_ev = 400
    counts = rng.choice([1, 2, 2, 2, 3], n_ev)
    offsets = np.zeros(n_ev + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    n = int(offsets[-1])
    # mostly back-to-back 5.29 GeV pairs with some random junk
    phi = rng.uniform(-np.pi, np.pi, n)
    first = offsets[:-1][counts == 2]
    phi[first + 1] = phi[first] + np.pi + rng.normal(0, 0.05, first.size)
    p = np.where(rng.uniform(size=n) < 0.8, 5.29 * (1 + 0.004 * rng.standard_normal(n)), rng.uniform(0.2, 6, n))
    cth = rng.uniform(-0.8, 0.8, n)
    cth[first + 1] = -cth[first]
    pt = p * np.sqrt(1 - cth**2)
    px, py, pz = (pt * np.cos(phi)).astype(np.float32), (pt * np.sin(phi)).astype(np.float32), (p * cth).astype(np.float32)
    q = rng.choice([-1, 1], n).astype(np.int32)
    m1, f1 = K.dimuon_candidates(px, py, pz, q, offsets, 4.0, 0.1, MUON_MASS_GEV)
    m2, f2 = K.dimuon_candidates_numpy(px, py, pz, q, offsets, 4.0, 0.1, MUON_MASS_GEV)
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_allclose(m1, m2, rtol=1e-12, equal_nan=True)
    sel = f1 >= 0
    assert 50 < sel.sum() < n_ev  # the cuts select some but not all events
    assert np.all(counts[sel] == 2) and np.all(q[f1[sel]] * q[f1[sel] + 1] < 0)
    # a back-to-back pair of 5.29 GeV muons has the mass ~ 10.58 GeV
    assert abs(np.median(m1[sel]) - 10.58) < 0.05


def test_module_residual_sums_match_twin_and_ignore_bad_rows():
    rng = np.random.default_rng(5)
    n, n_mod = 5000, 7
    module = rng.integers(-1, n_mod + 1, n).astype(np.int32)  # some out of range: skipped
    x = rng.normal(10, 30, n).astype(np.float32)
    y = rng.normal(-5, 30, n).astype(np.float32)
    x[::97] = 5000.0  # beyond max_abs_res_um
    for chunks in (1, 3):
        a = K.module_residual_sums(module, x, y, n_mod, 1000.0, chunks)
        b = K.module_residual_sums_numpy(module, x, y, n_mod, 1000.0)
        np.testing.assert_allclose(a, b, rtol=1e-12)
    ok = (module >= 0) & (module < n_mod) & (np.abs(x) <= 1000)
    assert a[:, 0].sum() == ok.sum()
    m3 = ok & (module == 3)
    assert a[3, 1] == pytest.approx(x[m3].astype(np.float64).sum(), rel=1e-12)


def _beam_spot_events(rng, n_ev):
    offsets, n = _jagged(rng, n_ev)
    ev = np.repeat(np.arange(n_ev), np.diff(offsets))
    phi = rng.uniform(-np.pi, np.pi, n)
    vx = rng.normal(0.04, 0.0015, n_ev)[ev]
    vy = rng.normal(-0.02, 0.0008, n_ev)[ev]
    d0 = vx * np.sin(phi) - vy * np.cos(phi) + rng.normal(0, 0.002, n)
    d0[::53] = 3.0  # outliers beyond the cut
    z0 = rng.normal(0.1, 0.035, n_ev)[ev] + rng.normal(0, 0.003, n)
    pt = rng.uniform(0.1, 3.0, n)
    return (pt * np.cos(phi)).astype(np.float32), (pt * np.sin(phi)).astype(np.float32), d0.astype(np.float32), \
        z0.astype(np.float32), offsets


def test_beam_spot_moments_match_twin():
    rng = np.random.default_rng(11)
    px, py, d0, z0, off = _beam_spot_events(rng, 700)
    a = K.beam_spot_moments(px, py, d0, z0, off, 1.0, 2)
    b = K.beam_spot_moments_numpy(px, py, d0, z0, off, 1.0)
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert a.shape == (K.BS_N_MOMENTS,)
    assert a[K.BS_N_TRACKS] == np.sum(np.abs(d0) <= 1.0)
    assert a[K.BS_N_EVENTS] < 700  # events without used tracks are not counted


def test_beam_spot_pair_sums_match_twin_and_brute_force():
    rng = np.random.default_rng(12)
    px, py, d0, z0, off = _beam_spot_events(rng, 300)
    a = K.beam_spot_pair_sums(px, py, d0, off, 0.039, -0.021, 1.0, 3)
    b = K.beam_spot_pair_sums_numpy(px, py, d0, off, 0.039, -0.021, 1.0)
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-15)
    # brute force over the pairs of each event
    phi = np.arctan2(py.astype(np.float64), px.astype(np.float64))
    r = d0 - (0.039 * np.sin(phi) + 0.021 * np.cos(phi))
    n_pairs, s = 0, 0.0
    for e in range(off.size - 1):
        idx = [t for t in range(off[e], off[e + 1]) if abs(d0[t]) <= 1.0]
        for i in range(len(idx)):
            for j in range(i + 1, len(idx)):
                n_pairs += 1
                s += np.sin(phi[idx[i]]) * np.sin(phi[idx[j]]) * r[idx[i]] * r[idx[j]]
    assert a[0] == n_pairs
    assert a[4] == pytest.approx(s, rel=1e-9)


def test_kernels_handle_empty_input():
    off = np.zeros(1, np.int64)
    e = np.zeros(0, np.float32)
    assert K.beam_spot_moments(e, e, e, e, off, 1.0, 2).sum() == 0.0
    assert K.beam_spot_pair_sums(e, e, e, off, 0.0, 0.0, 1.0, 2).sum() == 0.0
    assert K.module_residual_sums(np.zeros(0, np.int32), e, e, 4, 100.0, 2).sum() == 0.0
    m, f = K.dimuon_candidates(e, e, e, np.zeros(0, np.int32), off, 4.0, 0.1, MUON_MASS_GEV)
    assert m.size == 0 and f.size == 0
