"""The injected constants of one toy dataset (what calibration must recover).

Drawn from the dataset seed only (never from the run seeds), so the truth does not
depend on how the events are generated. Written to ``truth.json``; calibration code must
never read that file. Run-keyed values use ``"exp:run"`` keys, e.g. ``{"1:5": ...}``.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..detector import NOMINAL_ECM_GEV
from ..errors import InputError
from .config import CROSS_SECTIONS_NB, NOMINAL_ECM_BY_TYPE, PRESCALES, SimConfig

__all__ = ["Truth", "draw_truth", "read_t0_table", "cross_sections_at", "rng_for"]

T0_SIGMA_NS = 3.0
SHIFT_SIGMA_UM = 60.0
BB_THRESHOLD_GEV = 10.5588
UPSILON4S_GEV = 10.5794
UPSILON4S_HALF_WIDTH_GEV = 0.0103


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """An independent, reproducible generator for ``(seed, *keys)`` (e.g. exp, run, chunk)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), *(int(k) for k in keys)]))


def read_t0_table(path, n_channels: int) -> np.ndarray:
    """Per-channel T0 (ns) from a CSV with columns ``channel,t0_ns`` (every channel once).

    Raises :class:`InputError` naming the file and line for a missing column, a
    non-numeric or non-finite value, a channel out of range or repeated, or a wrong count.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"T0 table {path}: no such file"
        raise InputError(msg)
    t0 = np.full(n_channels, np.nan)
    seen = np.zeros(n_channels, dtype=bool)
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        cols = [c.strip() for c in (reader.fieldnames or [])]
        if "channel" not in cols or "t0_ns" not in cols:
            msg = f"T0 table {path}, line 1: header {cols!r} lacks 'channel' and/or 't0_ns'; expected columns channel,t0_ns"
            raise InputError(msg)
        reader.fieldnames = cols
        n_rows = 0
        for lineno, row in enumerate(reader, start=2):
            n_rows += 1
            try:
                ch = int(str(row["channel"]).strip())
                val = float(str(row["t0_ns"]).strip())
            except (TypeError, ValueError):
                msg = (
                    f"T0 table {path}, line {lineno}: channel={row.get('channel')!r}, t0_ns={row.get('t0_ns')!r}; "
                    "expected an integer channel and a number of ns"
                )
                raise InputError(msg) from None
            if not math.isfinite(val):
                msg = f"T0 table {path}, line {lineno}: t0_ns={val!r} is not finite"
                raise InputError(msg)
            if not 0 <= ch < n_channels:
                msg = f"T0 table {path}, line {lineno}: channel {ch} out of range; expected 0..{n_channels - 1}"
                raise InputError(msg)
            if seen[ch]:
                msg = f"T0 table {path}, line {lineno}: channel {ch} appears twice"
                raise InputError(msg)
            seen[ch] = True
            t0[ch] = val
    if n_rows != n_channels or not seen.all():
        missing = np.flatnonzero(~seen)[:5].tolist()
        msg = (
            f"T0 table {path}: {n_rows} rows for {int(seen.sum())} channels; expected exactly {n_channels} "
            f"channels (0..{n_channels - 1}), first missing {missing}"
        )
        raise InputError(msg)
    return t0


def bb_factor(ecm_gev: float) -> float:
    """B-pair cross section relative to the Upsilon(4S) peak (a toy resonance shape, 0 below threshold)."""
    if ecm_gev < BB_THRESHOLD_GEV:
        return 0.0
    x = (ecm_gev - UPSILON4S_GEV) / UPSILON4S_HALF_WIDTH_GEV
    return 1.0 / (1.0 + x * x)


def cross_sections_at(ecm_gev: float) -> dict[str, float]:
    """Cross sections (nb) at ``ecm_gev``: point-like ones scale as 1/s, BB by :func:`bb_factor`."""
    s_scale = (NOMINAL_ECM_GEV / ecm_gev) ** 2
    bb = bb_factor(ecm_gev) / bb_factor(NOMINAL_ECM_GEV)
    out = {}
    for proc, sigma in CROSS_SECTIONS_NB.items():
        out[proc] = sigma * (bb if proc in ("mixed", "charged") else s_scale)
    return out


@dataclass
class Truth:
    """Injected constants; arrays are per channel / module, dicts are keyed by run number."""

    t0_ns: np.ndarray
    hot: np.ndarray  # bool per channel
    dead: np.ndarray  # bool per channel
    dx_um: np.ndarray
    dy_um: np.ndarray
    beam_spot: dict  # run -> dict(x_cm, y_cm, z_cm, size_x_cm, size_y_cm, size_z_cm)
    gain: dict  # run -> dedx gain
    ecm_gev: dict  # run -> E_cm
    ecm_step_run: int

    def to_json(self, cfg: SimConfig, seed: int, runs: list[tuple[int, str]], t0_source: str) -> dict:
        key = lambda r: f"{cfg.exp}:{r}"  # noqa: E731
        physics = [r for r, t in runs if t != "cosmic"]
        xs = {key(r): cross_sections_at(self.ecm_gev[r]) for r in physics}
        return {
            "scale": cfg.name,
            "seed": int(seed),
            "exp": cfg.exp,
            "n_channels": cfg.n_channels,
            "n_modules": cfg.n_modules,
            "t0_ns": [float(v) for v in self.t0_ns],
            "t0_source": t0_source,
            "hot_channels": np.flatnonzero(self.hot).tolist(),
            "dead_channels": np.flatnonzero(self.dead).tolist(),
            "hot_factor": cfg.hot_factor,
            "noise_fraction": cfg.noise_fraction,
            "hit_efficiency": cfg.hit_efficiency,
            "module_shifts": {"dx_um": self.dx_um.tolist(), "dy_um": self.dy_um.tolist()},
            "beam_spot": {key(r): v for r, v in self.beam_spot.items()},
            "dedx_gain": {key(r): v for r, v in self.gain.items()},
            "ecm_gev": {key(r): v for r, v in self.ecm_gev.items()},
            "ecm_offset_mev": {key(r): 1000.0 * (v - _nominal(cfg, r, runs)) for r, v in self.ecm_gev.items()},
            "ecm_step_run": f"{cfg.exp}:{self.ecm_step_run}",
            "cross_sections_nb": dict(CROSS_SECTIONS_NB),
            "cross_sections_nb_per_run": xs,
            "prescales": {p: PRESCALES.get(p, 1.0) for p in CROSS_SECTIONS_NB},
            "notes": (
                "Stored events per run and process = Poisson(sigma_nb[run] * prescale * 1000 * lumi_pb). "
                "MC samples use nominal constants: zero T0, no module shifts, gain 1, beam spot at 0, "
                "E_cm 10.58 GeV, no hot/dead channels."
            ),
        }


def _nominal(cfg: SimConfig, run: int, runs: list[tuple[int, str]]) -> float:
    rtype = dict(runs)[run]
    if rtype == "scan":
        scans = [r for r, t in runs if t == "scan"]
        return cfg.scan_ecm_gev[scans.index(run) % len(cfg.scan_ecm_gev)]
    return NOMINAL_ECM_BY_TYPE.get(rtype, NOMINAL_ECM_GEV)


def draw_truth(cfg: SimConfig, seed: int, runs: list[tuple[int, str]], t0_table: np.ndarray | None = None) -> Truth:
    """Draw the constants of a dataset; ``runs`` is [(run, run_type), ...]; ``t0_table`` replaces random T0s."""
    rng = rng_for(seed, 0xC0FFEE)
    nch = cfg.n_channels
    t0 = rng.normal(0.0, T0_SIGMA_NS, nch)
    if t0_table is not None:
        t0 = np.asarray(t0_table, dtype=np.float64).copy()
    perm = rng.permutation(nch)
    n_hot = max(1, int(round(cfg.hot_fraction * nch))) if cfg.hot_fraction > 0 else 0
    n_dead = max(1, int(round(cfg.dead_fraction * nch))) if cfg.dead_fraction > 0 else 0
    hot = np.zeros(nch, dtype=bool)
    dead = np.zeros(nch, dtype=bool)
    hot[perm[:n_hot]] = True
    dead[perm[n_hot : n_hot + n_dead]] = True
    dx = rng.normal(0.0, SHIFT_SIGMA_UM, cfg.n_modules)
    dy = rng.normal(0.0, SHIFT_SIGMA_UM, cfg.n_modules)

    physics = [r for r, t in runs if t != "cosmic"]
    step = cfg.ecm_step_run if cfg.ecm_step_run is not None else physics[len(physics) // 2]
    off_before, off_after = rng.uniform(-3.0, 3.0), 0.0
    while abs(off_after - off_before) < 3.0:  # a step of a few MeV
        off_after = rng.uniform(-6.0, 6.0)
    # beam spot: slow random walk around a fixed position (cm); sizes fixed per dataset
    x0, y0, z0 = rng.normal(0.04, 0.01), rng.normal(-0.02, 0.01), rng.normal(0.1, 0.05)
    sizes = {"size_x_cm": 0.0015, "size_y_cm": 0.0008, "size_z_cm": 0.035}
    beam_spot, gain, ecm = {}, {}, {}
    bx, by, bz = x0, y0, z0
    g = rng.uniform(0.9, 1.1)
    for run, rtype in runs:
        bx += rng.normal(0.0, 0.0004)
        by += rng.normal(0.0, 0.0003)
        bz += rng.normal(0.0, 0.01)
        g *= 1.0 + rng.normal(0.0, 0.01)
        beam_spot[run] = {"x_cm": float(bx), "y_cm": float(by), "z_cm": float(bz), **sizes}
        gain[run] = float(g)
        if rtype != "cosmic":
            off = off_before if run < step else off_after
            ecm[run] = float(_nominal(cfg, run, runs) + off / 1000.0)
    return Truth(t0, hot, dead, dx, dy, beam_spot, gain, ecm, int(step))
