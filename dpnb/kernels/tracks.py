"""Per-track and per-event kernels (numba) for the track-based calibrations, with numpy twins.

Tracks are jagged: flat per-track arrays plus ``offsets`` (int64, ``n_events + 1``).
Every kernel returns sums that add up over chunks and runs, so a calibration streams over
its input and merges runs (IOV strategies) by adding their sums. ``n_chunks`` is the
number of independent partial sums computed in parallel (pass the thread count); the
partial sums are added in a fixed order, so a given ``n_chunks`` gives identical bits on
every rerun.

Kernels
-------
* :func:`dimuon_candidates` - two opposite-charge, energetic, back-to-back tracks per
  event and their invariant mass (GeV) under the muon hypothesis.
* :func:`module_residual_sums` - per silicon module: count, sum and sum of squares of
  the x and y track residuals (µm).
* :func:`beam_spot_moments` - per-event moments of the ``d0 = x sin(phi) - y cos(phi)``
  regression and of ``z0`` (see :data:`BS_MOMENT_FIELDS`); enough for the least-squares
  beam-spot position, its event-clustered (sandwich) covariance and the z size.
* :func:`beam_spot_pair_sums` - track-pair products of d0 residuals about a reference
  position, for the transverse beam-spot size.
"""

from __future__ import annotations

import numpy as np

from ._jit import njit, prange

__all__ = [
    "RESIDUAL_FIELDS",
    "BS_N_EVENTS", "BS_N_TRACKS", "BS_V", "BS_VV", "BS_Z", "BS_ZZ", "BS_NN", "BS_NZ", "BS_ZE2", "BS_N_MOMENTS",
    "PAIR_FIELDS",
    "dimuon_candidates", "dimuon_candidates_numpy",
    "module_residual_sums", "module_residual_sums_numpy",
    "beam_spot_moments", "beam_spot_moments_numpy",
    "beam_spot_pair_sums", "beam_spot_pair_sums_numpy",
]

#: columns of :func:`module_residual_sums` (residuals in µm)
RESIDUAL_FIELDS = ("n", "sum_x", "sum_x2", "sum_y", "sum_y2")

# Layout of the beam-spot moment vector. Per event e with used tracks i (|d0| < cut),
# s = sin(phi), c = cos(phi), regressor a = (s, -c), v_e = (b0, b1, A00, A01, A11) with
# b = sum a*d0 and A = sum a a^T. The vector holds: number of events, number of tracks,
# sum_e v_e (5), sum_e v_e v_e^T (5x5, row-major), sum z0, sum z0^2 (per track),
# sum_e n_e^2, sum_e n_e*Z_e, sum_e Z_e^2 (Z_e = sum of z0 in event e).
BS_N_EVENTS = 0
BS_N_TRACKS = 1
BS_V = slice(2, 7)
BS_VV = slice(7, 32)
BS_Z = 32
BS_ZZ = 33
BS_NN = 34
BS_NZ = 35
BS_ZE2 = 36
BS_N_MOMENTS = 37

#: entries of :func:`beam_spot_pair_sums`; u = (s_i s_j, c_i c_j), p = r_i r_j
PAIR_FIELDS = ("n_pairs", "u0u0", "u0u1", "u1u1", "u0p", "u1p", "pp")


@njit
def _chunk_bounds(n, n_chunks):
    n_chunks = max(1, min(n_chunks, n)) if n > 0 else 1
    step = (n + n_chunks - 1) // n_chunks if n > 0 else 0
    return n_chunks, step


# --- dimuon pairs ------------------------------------------------------------------------


@njit(parallel=True)
def dimuon_candidates(px, py, pz, charge, offsets, p_min_gev, max_acol_rad, mass_gev):
    """Dimuon candidates: events with exactly two tracks of opposite charge, each with
    momentum above ``p_min_gev`` (GeV), whose acollinearity (pi minus the opening angle,
    rad) is below ``max_acol_rad``. Returns ``(mass_gev, first)`` per event: the pair's
    invariant mass (GeV) for tracks of mass ``mass_gev``, NaN when the event is not a
    candidate, and the index of the event's first track (-1 when not a candidate)."""
    n_ev = offsets.shape[0] - 1
    mass = np.full(n_ev, np.nan)
    first = np.full(n_ev, -1, dtype=np.int64)
    m2 = mass_gev * mass_gev
    for e in prange(n_ev):
        lo = offsets[e]
        if offsets[e + 1] - lo != 2:
            continue
        i = lo
        j = lo + 1
        if charge[i] * charge[j] >= 0:
            continue
        # float64 arithmetic whatever the stored dtype (float32 in files)
        xi, yi, zi = np.float64(px[i]), np.float64(py[i]), np.float64(pz[i])
        xj, yj, zj = np.float64(px[j]), np.float64(py[j]), np.float64(pz[j])
        pi2 = xi * xi + yi * yi + zi * zi
        pj2 = xj * xj + yj * yj + zj * zj
        pi = np.sqrt(pi2)
        pj = np.sqrt(pj2)
        if pi < p_min_gev or pj < p_min_gev:
            continue
        cos_open = (xi * xj + yi * yj + zi * zj) / (pi * pj)
        cos_open = min(1.0, max(-1.0, cos_open))
        if np.pi - np.arccos(cos_open) > max_acol_rad:
            continue
        ei = np.sqrt(pi2 + m2)
        ej = np.sqrt(pj2 + m2)
        sx = xi + xj
        sy = yi + yj
        sz = zi + zj
        es = ei + ej
        mass[e] = np.sqrt(max(0.0, es * es - sx * sx - sy * sy - sz * sz))
        first[e] = i
    return mass, first


def dimuon_candidates_numpy(px, py, pz, charge, offsets, p_min_gev, max_acol_rad, mass_gev):
    """Plain-numpy twin of :func:`dimuon_candidates`."""
    offsets = np.asarray(offsets, dtype=np.int64)
    n_ev = offsets.size - 1
    mass = np.full(n_ev, np.nan)
    first = np.full(n_ev, -1, dtype=np.int64)
    two = np.flatnonzero(np.diff(offsets) == 2)
    i, j = offsets[two], offsets[two] + 1
    p = np.stack([np.asarray(px, np.float64), np.asarray(py, np.float64), np.asarray(pz, np.float64)], axis=1)
    pi, pj = np.linalg.norm(p[i], axis=1), np.linalg.norm(p[j], axis=1)
    q = np.asarray(charge)
    ok = (q[i] * q[j] < 0) & (pi >= p_min_gev) & (pj >= p_min_gev)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos_open = np.clip(np.sum(p[i] * p[j], axis=1) / (pi * pj), -1.0, 1.0)
    ok &= (np.pi - np.arccos(cos_open)) <= max_acol_rad
    e = np.sqrt(pi**2 + mass_gev**2) + np.sqrt(pj**2 + mass_gev**2)
    s = p[i] + p[j]
    m = np.sqrt(np.maximum(0.0, e**2 - np.sum(s * s, axis=1)))
    mass[two[ok]] = m[ok]
    first[two[ok]] = i[ok]
    return mass, first


# --- alignment residuals -----------------------------------------------------------------


@njit(parallel=True)
def module_residual_sums(module, res_x, res_y, n_modules, max_abs_res_um, n_chunks):
    """Per module: count, sum and sum of squares of the x and y residuals (µm), see
    :data:`RESIDUAL_FIELDS`; tracks with ``|res| > max_abs_res_um`` in x or y, or with a
    module id outside ``[0, n_modules)``, are not counted (the caller checks ids first)."""
    n = module.shape[0]
    n_chunks, step = _chunk_bounds(n, n_chunks)
    part = np.zeros((n_chunks, n_modules, 5), dtype=np.float64)
    for c in prange(n_chunks):
        for t in range(c * step, min(n, c * step + step)):
            m = module[t]
            if m < 0 or m >= n_modules:
                continue
            x = np.float64(res_x[t])
            y = np.float64(res_y[t])
            if not (abs(x) <= max_abs_res_um and abs(y) <= max_abs_res_um):
                continue
            part[c, m, 0] += 1.0
            part[c, m, 1] += x
            part[c, m, 2] += x * x
            part[c, m, 3] += y
            part[c, m, 4] += y * y
    out = np.zeros((n_modules, 5), dtype=np.float64)
    for c in range(n_chunks):
        out += part[c]
    return out


def module_residual_sums_numpy(module, res_x, res_y, n_modules, max_abs_res_um, n_chunks=1):
    """Plain-numpy twin of :func:`module_residual_sums` (``n_chunks`` is ignored)."""
    module = np.asarray(module, dtype=np.int64)
    x = np.asarray(res_x, dtype=np.float64)
    y = np.asarray(res_y, dtype=np.float64)
    ok = (module >= 0) & (module < n_modules) & (np.abs(x) <= max_abs_res_um) & (np.abs(y) <= max_abs_res_um)
    m, x, y = module[ok], x[ok], y[ok]
    cols = [np.ones_like(x), x, x * x, y, y * y]
    return np.stack([np.bincount(m, weights=w, minlength=n_modules) for w in cols], axis=1)


# --- beam spot ---------------------------------------------------------------------------


@njit(parallel=True)
def beam_spot_moments(px, py, d0, z0, offsets, max_abs_d0_cm, n_chunks):
    """Beam-spot moments over events (layout: the ``BS_*`` constants of this module).
    ``d0``, ``z0`` in cm; tracks with ``|d0| > max_abs_d0_cm`` are not used; events
    without a used track add nothing."""
    n_ev = offsets.shape[0] - 1
    n_chunks, step = _chunk_bounds(n_ev, n_chunks)
    part = np.zeros((n_chunks, BS_N_MOMENTS), dtype=np.float64)
    for c in prange(n_chunks):
        v = np.zeros(5, dtype=np.float64)
        for e in range(c * step, min(n_ev, c * step + step)):
            v[:] = 0.0
            ne = 0.0
            ze = 0.0
            zz = 0.0
            for t in range(offsets[e], offsets[e + 1]):
                d = np.float64(d0[t])
                if not abs(d) <= max_abs_d0_cm:
                    continue
                phi = np.arctan2(np.float64(py[t]), np.float64(px[t]))
                s = np.sin(phi)
                co = np.cos(phi)
                z = np.float64(z0[t])
                v[0] += s * d
                v[1] -= co * d
                v[2] += s * s
                v[3] -= s * co
                v[4] += co * co
                ne += 1.0
                ze += z
                zz += z * z
            if ne == 0.0:
                continue
            part[c, BS_N_EVENTS] += 1.0
            part[c, BS_N_TRACKS] += ne
            for k in range(5):
                part[c, 2 + k] += v[k]
                for m in range(5):
                    part[c, 7 + 5 * k + m] += v[k] * v[m]
            part[c, BS_Z] += ze
            part[c, BS_ZZ] += zz
            part[c, BS_NN] += ne * ne
            part[c, BS_NZ] += ne * ze
            part[c, BS_ZE2] += ze * ze
    out = np.zeros(BS_N_MOMENTS, dtype=np.float64)
    for c in range(n_chunks):
        out += part[c]
    return out


def _event_index(offsets):
    offsets = np.asarray(offsets, dtype=np.int64)
    return np.repeat(np.arange(offsets.size - 1), np.diff(offsets))


def beam_spot_moments_numpy(px, py, d0, z0, offsets, max_abs_d0_cm, n_chunks=1):
    """Plain-numpy twin of :func:`beam_spot_moments` (``n_chunks`` is ignored)."""
    ev = _event_index(offsets)
    n_ev = len(offsets) - 1
    d = np.asarray(d0, np.float64)
    ok = np.abs(d) <= max_abs_d0_cm
    phi = np.arctan2(np.asarray(py, np.float64), np.asarray(px, np.float64))
    s, c, z, d, ev = np.sin(phi)[ok], np.cos(phi)[ok], np.asarray(z0, np.float64)[ok], d[ok], ev[ok]

    def per_event(w):
        return np.bincount(ev, weights=w, minlength=n_ev)

    ne = per_event(np.ones_like(d))
    used = ne > 0
    v = np.stack([per_event(s * d), per_event(-c * d), per_event(s * s), per_event(-s * c), per_event(c * c)], axis=1)[used]
    ze = per_event(z)[used]
    ne = ne[used]
    out = np.zeros(BS_N_MOMENTS)
    out[BS_N_EVENTS] = used.sum()
    out[BS_N_TRACKS] = ne.sum()
    out[BS_V] = v.sum(axis=0)
    out[BS_VV] = (v.T @ v).ravel()
    out[BS_Z] = ze.sum()
    out[BS_ZZ] = np.sum(z * z)
    out[BS_NN] = np.sum(ne * ne)
    out[BS_NZ] = np.sum(ne * ze)
    out[BS_ZE2] = np.sum(ze * ze)
    return out


@njit(parallel=True)
def beam_spot_pair_sums(px, py, d0, offsets, x_ref_cm, y_ref_cm, max_abs_d0_cm, n_chunks):
    """Sums over track pairs (i < j) of one event, see :data:`PAIR_FIELDS`: with the d0
    residual ``r = d0 - (x_ref sin(phi) - y_ref cos(phi))`` (cm) and ``u = (s_i s_j,
    c_i c_j)``, the least-squares sums of ``r_i r_j = sx^2 u0 + sy^2 u1``."""
    n_ev = offsets.shape[0] - 1
    n_chunks, step = _chunk_bounds(n_ev, n_chunks)
    part = np.zeros((n_chunks, 7), dtype=np.float64)
    for c in prange(n_chunks):
        for e in range(c * step, min(n_ev, c * step + step)):
            lo = offsets[e]
            hi = offsets[e + 1]
            for i in range(lo, hi):
                di = np.float64(d0[i])
                if not abs(di) <= max_abs_d0_cm:
                    continue
                phi_i = np.arctan2(np.float64(py[i]), np.float64(px[i]))
                si = np.sin(phi_i)
                ci = np.cos(phi_i)
                ri = di - (x_ref_cm * si - y_ref_cm * ci)
                for j in range(i + 1, hi):
                    dj = np.float64(d0[j])
                    if not abs(dj) <= max_abs_d0_cm:
                        continue
                    phi_j = np.arctan2(np.float64(py[j]), np.float64(px[j]))
                    sj = np.sin(phi_j)
                    cj = np.cos(phi_j)
                    rj = dj - (x_ref_cm * sj - y_ref_cm * cj)
                    u0 = si * sj
                    u1 = ci * cj
                    p = ri * rj
                    part[c, 0] += 1.0
                    part[c, 1] += u0 * u0
                    part[c, 2] += u0 * u1
                    part[c, 3] += u1 * u1
                    part[c, 4] += u0 * p
                    part[c, 5] += u1 * p
                    part[c, 6] += p * p
    out = np.zeros(7, dtype=np.float64)
    for c in range(n_chunks):
        out += part[c]
    return out


def beam_spot_pair_sums_numpy(px, py, d0, offsets, x_ref_cm, y_ref_cm, max_abs_d0_cm, n_chunks=1):
    """Plain-numpy twin of :func:`beam_spot_pair_sums` (``n_chunks`` is ignored)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    ev = _event_index(offsets)
    d = np.asarray(d0, np.float64)
    ok = np.abs(d) <= max_abs_d0_cm
    phi = np.arctan2(np.asarray(py, np.float64), np.asarray(px, np.float64))
    s, c = np.sin(phi), np.cos(phi)
    r = d - (x_ref_cm * s - y_ref_cm * c)
    idx = np.flatnonzero(ok)
    # all ordered pairs of used tracks in the same event, keeping i < j
    ev_used = ev[idx]
    starts = np.searchsorted(ev_used, ev_used, side="left")
    stops = np.searchsorted(ev_used, ev_used, side="right")
    counts = stops - np.arange(idx.size) - 1
    ii = np.repeat(np.arange(idx.size), counts)
    jj = ii + 1 + (np.arange(ii.size) - np.repeat(np.cumsum(counts) - counts, counts))
    del starts
    i, j = idx[ii], idx[jj]
    u0, u1, p = s[i] * s[j], c[i] * c[j], r[i] * r[j]
    return np.array([i.size, u0 @ u0, u0 @ u1, u1 @ u1, u0 @ p, u1 @ p, p @ p], dtype=np.float64)
