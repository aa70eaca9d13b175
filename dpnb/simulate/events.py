"""Events of the toy experiment: processes -> tracks, clusters, HLT bits and hits.

A chunk of events is generated from its own random generator, so chunks (and runs) are
independent and reproducible. Kinematics (a symmetric collider, no boost):

* hadronic (uubar, ddbar, ssbar, ccbar, mixed, charged): an even number of pion tracks
  (mean multiplicity 7-10), |p| ~ Gamma(2, 0.25-0.35 GeV), isotropic in |cos theta| < 0.9;
  photon clusters ~ Gamma(1.5, 0.2 GeV).
* mumu: two back-to-back muons with |p| = E_pair / 2, E_pair = E_cm except for a 15 %
  ISR tail; |p| smeared by ``P_RESOLUTION``; two MIP clusters (~0.2 GeV).
* ee (Bhabha): two back-to-back electrons, forward peaked, and two clusters of E_cm / 2.
* gammagamma: two back-to-back clusters of E_cm / 2, no tracks.
* taupair: 1- or 3-prong decays of each tau (pions), |p| ~ U(0.3, 4.5) GeV.
* cosmic: one muon crossing the whole chamber, stored as two legs (tracks) with
  d0 ~ U(-30, 30) cm, magnet off (straight), no HLT bit.

Track parameters: the production vertex is drawn from the run's beam spot;
``d0 = vx sin(phi) - vy cos(phi) + N(0, sigma_d0)``, ``z0 = vz + N(0, sigma_z0)``,
``dedx = gain * expected_dedx(p, m) * (1 + DEDX_RESOLUTION N(0,1))``, the module is the
azimuthal sector of the track, residuals ``(1 - ALIGN_FIT_WEIGHT) * shift + N(0, 25 µm)``.
HLT bits are computed from the reconstructed content (track count, momenta, cluster energies).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import detector as det
from .kernels import make_hits

__all__ = ["Conditions", "generate_chunk", "hlt_bits", "P_RESOLUTION", "D0_SIGMA_CM", "Z0_SIGMA_CM"]

P_RESOLUTION = 0.004
D0_SIGMA_CM = 0.0020
Z0_SIGMA_CM = 0.0030
HADRON_MULT = {"uubar": 7.0, "ddbar": 7.0, "ssbar": 7.5, "ccbar": 8.0, "mixed": 10.0, "charged": 10.0}
HADRON_PSCALE = {"uubar": 0.35, "ddbar": 0.35, "ssbar": 0.35, "ccbar": 0.3, "mixed": 0.25, "charged": 0.25}
CURV_AT_1GEV = 0.225  # turning angle (rad) at the outer radius for pT = 1 GeV (1.5 T, 1 m)
COS_MAX = 0.9


@dataclass
class Conditions:
    """Constants applied while generating one run (or an MC sample)."""

    ecm_gev: float
    beam_spot: dict  # x_cm, y_cm, z_cm, size_x_cm, size_y_cm, size_z_cm
    gain: float
    dx_um: np.ndarray
    dy_um: np.ndarray
    t0_ns: np.ndarray
    dead: np.ndarray
    hot_channels: np.ndarray  # indices
    n_layers: int
    n_wires: int
    magnet_on: bool = True
    hot_factor: float = 40.0
    noise_fraction: float = 0.03
    hit_efficiency: float = 0.95
    pt_full_reach_gev: float = 0.25


class _Parts:
    """Accumulates tracks and clusters of several event groups (event indices within the chunk)."""

    def __init__(self):
        self.trk = {k: [] for k in ("ev", "p", "cth", "phi", "q", "m")}
        self.clus = {k: [] for k in ("ev", "e", "th", "phi")}

    def tracks(self, ev, p, cth, phi, q, m):
        for k, v in zip(self.trk, (ev, p, cth, phi, q, np.broadcast_to(m, np.shape(ev)))):
            self.trk[k].append(np.asarray(v, dtype=np.float64 if k not in ("ev", "q") else np.int64))

    def clusters(self, ev, e, th, phi):
        for k, v in zip(self.clus, (ev, e, th, phi)):
            self.clus[k].append(np.asarray(v, dtype=np.float64 if k != "ev" else np.int64))

    def arrays(self):
        def cat(d):
            out = {k: (np.concatenate(v) if v else np.zeros(0, np.int64 if k in ("ev", "q") else np.float64)) for k, v in d.items()}
            order = np.argsort(out["ev"], kind="stable")
            return {k: v[order] for k, v in out.items()}

        return cat(self.trk), cat(self.clus)


def _cos_1pc2(rng, n):
    """cos(theta) from 1 + cos^2 in |cos| < COS_MAX (accept-reject)."""
    out = np.empty(0)
    while len(out) < n:
        c = rng.uniform(-COS_MAX, COS_MAX, 2 * n + 16)
        keep = rng.uniform(0.0, 1.0 + COS_MAX**2, len(c)) < 1.0 + c * c
        out = np.concatenate([out, c[keep]])
    return out[:n]


def _cos_forward(rng, n):
    """cos(theta) from 1/(1-cos)^2 in |cos| < COS_MAX (inverse CDF)."""
    a, b = 1.0 / (1.0 + COS_MAX), 1.0 / (1.0 - COS_MAX)
    return 1.0 - 1.0 / (a + rng.uniform(0, 1, n) * (b - a))


def _back_to_back(parts, rng, ev, p, m, cth, charges=(1, -1)):
    phi = rng.uniform(-np.pi, np.pi, len(ev))
    p1 = p * (1.0 + P_RESOLUTION * rng.standard_normal(len(ev)))
    p2 = p * (1.0 + P_RESOLUTION * rng.standard_normal(len(ev)))
    parts.tracks(ev, p1, cth, phi, np.full(len(ev), charges[0]), m)
    parts.tracks(ev, p2, -cth, np.where(phi > 0, phi - np.pi, phi + np.pi), np.full(len(ev), charges[1]), m)
    return phi


def _add_process(parts: _Parts, rng, proc: str, ev: np.ndarray, ecm: float):
    n = len(ev)
    if n == 0:
        return
    if proc in HADRON_MULT:
        npairs = 1 + rng.poisson((HADRON_MULT[proc] - 2.0) / 2.0, n)
        ntrk = 2 * npairs
        tev = np.repeat(ev, ntrk)
        q = np.tile([1, -1], len(tev) // 2)
        parts.tracks(tev, rng.gamma(2.0, HADRON_PSCALE[proc], len(tev)), rng.uniform(-COS_MAX, COS_MAX, len(tev)),
                     rng.uniform(-np.pi, np.pi, len(tev)), q, det.PION_MASS_GEV)
        ncl = rng.poisson(0.8 * ntrk)
        cev = np.repeat(ev, ncl)
        parts.clusters(cev, rng.gamma(1.5, 0.2, len(cev)), np.arccos(rng.uniform(-COS_MAX, COS_MAX, len(cev))),
                       rng.uniform(-np.pi, np.pi, len(cev)))
    elif proc == "mumu":
        epair = np.full(n, ecm)
        isr = rng.uniform(0, 1, n) < 0.15
        epair[isr] *= 1.0 - np.minimum(rng.exponential(0.02, isr.sum()), 0.5)
        p = np.sqrt((epair / 2.0) ** 2 - det.MUON_MASS_GEV**2)
        cth = _cos_1pc2(rng, n)
        phi = _back_to_back(parts, rng, ev, p, det.MUON_MASS_GEV, cth)
        th = np.arccos(cth)
        phi2 = np.where(phi > 0, phi - np.pi, phi + np.pi)
        parts.clusters(ev, rng.normal(0.2, 0.03, n).clip(0.05), th, phi)
        parts.clusters(ev, rng.normal(0.2, 0.03, n).clip(0.05), np.pi - th, phi2)
    elif proc == "ee":
        p = np.full(n, np.sqrt((ecm / 2.0) ** 2 - det.ELECTRON_MASS_GEV**2))
        cth = _cos_forward(rng, n)
        phi = _back_to_back(parts, rng, ev, p, det.ELECTRON_MASS_GEV, cth)
        th = np.arccos(cth)
        phi2 = np.where(phi > 0, phi - np.pi, phi + np.pi)
        parts.clusters(ev, ecm / 2.0 * (1 + 0.02 * rng.standard_normal(n)), th, phi)
        parts.clusters(ev, ecm / 2.0 * (1 + 0.02 * rng.standard_normal(n)), np.pi - th, phi2)
    elif proc == "gammagamma":
        cth = _cos_1pc2(rng, n)
        phi = rng.uniform(-np.pi, np.pi, n)
        th = np.arccos(cth)
        parts.clusters(ev, ecm / 2.0 * (1 + 0.02 * rng.standard_normal(n)), th, phi)
        parts.clusters(ev, ecm / 2.0 * (1 + 0.02 * rng.standard_normal(n)), np.pi - th,
                       np.where(phi > 0, phi - np.pi, phi + np.pi))
    elif proc == "taupair":
        prongs = np.where(rng.uniform(0, 1, (n, 2)) < 0.85, 1, 3)
        ntrk = prongs.sum(axis=1)
        tev = np.repeat(ev, ntrk)
        # charges: first tau -1 (1 prong: -1; 3 prong: -1,-1,+1), second tau +1
        q = np.concatenate([np.concatenate([[-1] if a == 1 else [-1, -1, 1], [1] if b == 1 else [1, 1, -1]])
                            for a, b in prongs]) if n else np.zeros(0, np.int64)
        parts.tracks(tev, rng.uniform(0.3, 4.5, len(tev)), rng.uniform(-COS_MAX, COS_MAX, len(tev)),
                     rng.uniform(-np.pi, np.pi, len(tev)), q, det.PION_MASS_GEV)
        ncl = rng.poisson(1.5, n)
        cev = np.repeat(ev, ncl)
        parts.clusters(cev, rng.gamma(1.5, 0.3, len(cev)), np.arccos(rng.uniform(-COS_MAX, COS_MAX, len(cev))),
                       rng.uniform(-np.pi, np.pi, len(cev)))
    elif proc == "cosmic":
        p = 1.0 + rng.exponential(5.0, n)
        phi = rng.uniform(-np.pi, 0.0, n)  # going down
        cth = rng.uniform(-0.5, 0.5, n)
        q = rng.choice(np.array([-1, 1]), n)
        parts.tracks(ev, p, cth, phi + np.pi, q, det.MUON_MASS_GEV)  # upper leg, pointing up
        parts.tracks(ev, p, cth, phi, q, det.MUON_MASS_GEV)
        th = np.arccos(cth)
        parts.clusters(ev, rng.normal(0.2, 0.03, n).clip(0.05), th, phi + np.pi)
        parts.clusters(ev, rng.normal(0.2, 0.03, n).clip(0.05), th, phi)
    else:  # pragma: no cover - guarded by callers
        msg = f"unknown process {proc!r}"
        raise ValueError(msg)


def hlt_bits(ntrk, trk_p, trk_offsets, clus_e, clus_offsets, ecm):
    """HLT bit mask per event from reconstructed content (see ``dpnb.detector.HLT_BITS``)."""
    n_ev = len(ntrk)
    bits = np.zeros(n_ev, dtype=np.uint32)
    trk_ev = np.repeat(np.arange(n_ev), np.diff(trk_offsets))
    clus_ev = np.repeat(np.arange(n_ev), np.diff(clus_offsets))
    n_fast = np.bincount(trk_ev[trk_p > 0.3 * ecm], minlength=n_ev)
    e_sum = np.bincount(clus_ev, weights=clus_e, minlength=n_ev)
    n_high = np.bincount(clus_ev[clus_e > 0.3 * ecm], minlength=n_ev)
    hb = det.HLT_BITS
    bits |= np.where(ntrk >= 3, 1 << hb["hlt_hadron"], 0).astype(np.uint32)
    bits |= np.where((ntrk == 2) & (n_fast == 2) & (e_sum < 1.0), 1 << hb["hlt_mumu_2trk"], 0).astype(np.uint32)
    bits |= np.where((ntrk >= 2) & (n_high >= 2), 1 << hb["hlt_bhabha"], 0).astype(np.uint32)
    bits |= np.where((ntrk == 0) & (n_high >= 2), 1 << hb["hlt_gamma_gamma"], 0).astype(np.uint32)
    return bits


def generate_chunk(rng: np.random.Generator, processes: np.ndarray, cond: Conditions, cosmic: bool = False) -> dict:
    """Generate events with true_process ids ``processes`` (already in event order).

    Returns flat arrays: event-level ``true_process``, ``hlt_bits``; jagged groups as
    ``{name}_offsets`` plus values (``hit_*``, ``trk_*``, ``clus_*``), dtypes as in the schema.
    """
    n_ev = len(processes)
    parts = _Parts()
    for pid in np.unique(processes):
        _add_process(parts, rng, det.PROCESSES[int(pid)], np.flatnonzero(processes == pid), cond.ecm_gev)
    trk, clus = parts.arrays()
    n_trk = len(trk["ev"])
    trk_offsets = np.zeros(n_ev + 1, np.int64)
    np.cumsum(np.bincount(trk["ev"], minlength=n_ev), out=trk_offsets[1:])
    clus_offsets = np.zeros(n_ev + 1, np.int64)
    np.cumsum(np.bincount(clus["ev"], minlength=n_ev), out=clus_offsets[1:])

    p, cth, phi, q = trk["p"], trk["cth"], trk["phi"], trk["q"]
    sth = np.sqrt(1.0 - cth * cth)
    pt = p * sth
    # production vertex per event (beam spot) or, for cosmics, a random line
    bs = cond.beam_spot
    vx = rng.normal(bs["x_cm"], bs["size_x_cm"], n_ev)[trk["ev"]]
    vy = rng.normal(bs["y_cm"], bs["size_y_cm"], n_ev)[trk["ev"]]
    vz = rng.normal(bs["z_cm"], bs["size_z_cm"], n_ev)[trk["ev"]]
    d0 = vx * np.sin(phi) - vy * np.cos(phi)
    z0 = vz.copy()
    if cosmic:
        leg_d0 = rng.uniform(-30.0, 30.0, n_ev)[trk["ev"]]
        up = (np.arange(n_trk) - trk_offsets[trk["ev"]]) == 0
        d0 = np.where(up, leg_d0, -leg_d0)  # the two legs of one line have opposite d0 sign
        z0 = rng.uniform(-40.0, 40.0, n_ev)[trk["ev"]]
    sig_d0 = np.sqrt(D0_SIGMA_CM**2 + (0.002 / np.maximum(p, 0.05)) ** 2)
    d0 = d0 + sig_d0 * rng.standard_normal(n_trk)
    z0 = z0 + Z0_SIGMA_CM * rng.standard_normal(n_trk)
    m = trk["m"]
    dedx = cond.gain * det.expected_dedx(p, m) * (1.0 + det.DEDX_RESOLUTION * rng.standard_normal(n_trk))
    phi_pos = np.mod(phi, 2.0 * np.pi)
    module = np.minimum((phi_pos / (2.0 * np.pi) * len(cond.dx_um)).astype(np.int64), len(cond.dx_um) - 1)
    w = det.ALIGN_FIT_WEIGHT
    res_x = (1.0 - w) * cond.dx_um[module] + det.RESIDUAL_SIGMA_UM * rng.standard_normal(n_trk)
    res_y = (1.0 - w) * cond.dy_um[module] + det.RESIDUAL_SIGMA_UM * rng.standard_normal(n_trk)

    # hits: slots = the layers each track crosses
    nl, nw = cond.n_layers, cond.n_wires
    if cond.magnet_on:
        reach = np.clip(np.ceil(nl * pt / cond.pt_full_reach_gev), 1, nl).astype(np.int64)
        curv = np.clip(-q * CURV_AT_1GEV / np.maximum(pt, 1e-3), -np.pi / 2, np.pi / 2)
    else:
        reach = np.full(n_trk, nl, np.int64)
        curv = np.zeros(n_trk)
    slot_offsets = np.zeros(n_trk + 1, np.int64)
    np.cumsum(reach, out=slot_offsets[1:])
    ns = int(slot_offsets[-1])
    u_eff, u_core, u_tail = rng.uniform(0, 1, ns), rng.uniform(0, 1, ns), rng.uniform(0, 1, ns)
    z_drift, z_adc = rng.standard_normal(ns), rng.standard_normal(ns)
    adc_scale = 40.0 * dedx
    # noise (a fraction of the expected signal) and hot-channel hits, per event
    live = ~cond.dead
    exp_sig = cond.hit_efficiency * live.mean() * np.bincount(trk["ev"], weights=reach, minlength=n_ev)
    n_noise = rng.poisson(cond.noise_fraction * exp_sig)
    hot = np.asarray(cond.hot_channels, dtype=np.int64)
    n_hot = rng.poisson(len(hot) * cond.hot_factor * exp_sig / max(live.sum(), 1)) if len(hot) else np.zeros(n_ev, np.int64)
    live_idx = np.flatnonzero(live)
    # per event: noise hits first, then hot hits
    nz_ch = live_idx[rng.integers(0, len(live_idx), n_noise.sum())]
    hot_ch = hot[rng.integers(0, max(len(hot), 1), n_hot.sum())] if len(hot) else np.zeros(0, np.int64)
    per_ev = n_noise + n_hot
    noise_offsets = np.zeros(n_ev + 1, np.int64)
    np.cumsum(per_ev, out=noise_offsets[1:])
    kind = np.concatenate([np.zeros(n_noise.sum(), np.int8), np.ones(n_hot.sum(), np.int8)])
    evs = np.concatenate([np.repeat(np.arange(n_ev), n_noise), np.repeat(np.arange(n_ev), n_hot)])
    order = np.lexsort((kind, evs))
    noise_channel = np.concatenate([nz_ch, hot_ch]).astype(np.int32)[order]
    noise_time = rng.uniform(0.0, det.TDC_RANGE_NS, len(order))
    noise_adc = rng.integers(1, 21, len(order)).astype(np.int32)
    hit_offsets, hch, htime, hadc, trk_nhits = make_hits(
        trk_offsets, phi, curv, reach, adc_scale, slot_offsets,
        u_eff, u_core, z_drift, u_tail, z_adc,
        np.asarray(cond.t0_ns, np.float64), np.asarray(cond.dead, np.bool_),
        noise_offsets, noise_channel, noise_time, noise_adc,
        nl, nw, cond.hit_efficiency, det.DRIFT_PEAK_NS, det.DRIFT_SIGMA_NS, det.DRIFT_CORE_FRACTION,
        det.DRIFT_TAIL_NS[0], det.DRIFT_TAIL_NS[1],
    )  # fmt: skip
    ntrk = np.diff(trk_offsets).astype(np.int32)
    bits = np.zeros(n_ev, np.uint32) if cosmic else hlt_bits(ntrk, p, trk_offsets, clus["e"], clus_offsets, cond.ecm_gev)
    return {
        "true_process": np.asarray(processes, np.int32),
        "hlt_bits": bits,
        "hit_offsets": hit_offsets,
        "hit_channel": hch,
        "hit_time": htime,
        "hit_adc": hadc,
        "trk_offsets": trk_offsets,
        "trk_px": (pt * np.cos(phi)).astype(np.float32),
        "trk_py": (pt * np.sin(phi)).astype(np.float32),
        "trk_pz": (p * cth).astype(np.float32),
        "trk_charge": q.astype(np.int32),
        "trk_d0": d0.astype(np.float32),
        "trk_z0": z0.astype(np.float32),
        "trk_nhits": trk_nhits,
        "trk_dedx": dedx.astype(np.float32),
        "trk_module": module.astype(np.int32),
        "trk_res_x": res_x.astype(np.float32),
        "trk_res_y": res_y.astype(np.float32),
        "clus_offsets": clus_offsets,
        "clus_energy": clus["e"].astype(np.float32),
        "clus_theta": clus["th"].astype(np.float32),
        "clus_phi": clus["phi"].astype(np.float32),
    }
