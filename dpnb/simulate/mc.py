"""MC samples of the toy experiment (``mc/<sample>.root`` and ``mc/samples.csv``).

MC uses the same detector model with *nominal* constants: T0 = 0 for every channel, no
module shifts, dE/dx gain 1, beam spot at the origin (same sizes as data), E_cm = 10.58 GeV,
no hot or dead channels (noise hits are kept). Events carry ``exp`` = the dataset's
experiment and ``run`` = 0 (run-independent MC); ``samples.csv`` states the run range the
sample is valid for. Each sample is generated in ``N_JOBS`` jobs; the ``runs`` tree has one
entry per job. ``taupair_nlo`` has NLO-like weights: |w| ~ 1 +- 5 %, 10 % of them negative.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import detector as det
from .config import SimConfig
from .events import Conditions, generate_chunk
from .truth import rng_for
from .writer import write_events

__all__ = ["MC_SAMPLES", "write_mc"]

#: sample name -> process
MC_SAMPLES = {p: p for p in ("mixed", "charged", "uubar", "ddbar", "ssbar", "ccbar", "taupair", "mumu", "ee", "gammagamma")}
MC_SAMPLES["taupair_nlo"] = "taupair"
N_JOBS = 2
NEGATIVE_WEIGHT_FRACTION = 0.10


def nominal_conditions(cfg: SimConfig, beam_sizes: dict) -> Conditions:
    nch = cfg.n_channels
    return Conditions(
        ecm_gev=det.NOMINAL_ECM_GEV,
        beam_spot={"x_cm": 0.0, "y_cm": 0.0, "z_cm": 0.0, **beam_sizes},
        gain=1.0,
        dx_um=np.zeros(cfg.n_modules),
        dy_um=np.zeros(cfg.n_modules),
        t0_ns=np.zeros(nch),
        dead=np.zeros(nch, dtype=bool),
        hot_channels=np.zeros(0, np.int64),
        n_layers=cfg.n_layers,
        n_wires=cfg.n_wires_per_layer,
        magnet_on=True,
        hot_factor=cfg.hot_factor,
        noise_fraction=cfg.noise_fraction,
        hit_efficiency=cfg.hit_efficiency,
        pt_full_reach_gev=cfg.pt_full_reach_gev,
    )


def write_mc(root: Path, cfg: SimConfig, seed: int, beam_sizes: dict) -> list[dict]:
    """Write every MC sample under ``root/mc``; returns the rows of ``samples.csv``."""
    mc_dir = Path(root) / "mc"
    mc_dir.mkdir(parents=True, exist_ok=True)
    cond = nominal_conditions(cfg, beam_sizes)
    rows = []
    for isample, (sample, proc) in enumerate(MC_SAMPLES.items()):
        pid = det.PROCESS_IDS[proc]
        sizes = [cfg.mc_events // N_JOBS + (1 if j < cfg.mc_events % N_JOBS else 0) for j in range(N_JOBS)]
        chunks, n_gen, sum_w, sum_w2 = [], [], [], []
        first = 0
        for job, n in enumerate(sizes):
            rng = rng_for(seed, 0x4D43, isample, job)
            chunk = generate_chunk(rng, np.full(n, pid, np.int32), cond)
            if sample.endswith("_nlo"):
                w = rng.normal(1.0, 0.05, n) * np.where(rng.uniform(0, 1, n) < NEGATIVE_WEIGHT_FRACTION, -1.0, 1.0)
            else:
                w = np.ones(n)
            chunk.update(
                exp=np.full(n, cfg.exp, np.int32),
                run=np.zeros(n, np.int32),
                event=np.arange(first, first + n, dtype=np.int64),
                timestamp=np.zeros(n),
                weight=w,
            )
            first += n
            chunks.append(chunk)
            n_gen.append(n)
            sum_w.append(float(w.sum()))
            sum_w2.append(float((w * w).sum()))
        runs = {"n_generated": np.asarray(n_gen, np.int64), "sum_w": np.asarray(sum_w), "sum_w2": np.asarray(sum_w2)}
        write_events(mc_dir / f"{sample}.root", chunks, extra={"runs": runs})
        rows.append({"sample": sample, "process": proc, "exp": cfg.exp, "run_first": 1,
                     "run_last": cfg.n_physics_runs, "n_generated": int(sum(n_gen))})
    lines = ["sample,process,exp,run_first,run_last,n_generated"]
    lines += [",".join(str(r[k]) for k in ("sample", "process", "exp", "run_first", "run_last", "n_generated")) for r in rows]
    (mc_dir / "samples.csv").write_text("\n".join(lines) + "\n")
    return rows
