"""Write a whole toy dataset atomically (see the layout in docs/architecture.md).

The dataset is built in a temporary sibling directory and renamed into place at the end,
so a reader never sees a half-written dataset. An existing dataset is replaced only with
``overwrite=True``: it is first renamed aside, the new one renamed in, then the old one
removed. ``truth.json`` (written last) also records the generator configuration; a
dataset with the same configuration, seed and T0 table is returned untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from .. import detector as det
from ..errors import InputError
from .config import PRESCALES, SimConfig, get_scale
from .events import Conditions, generate_chunk
from .lumi import RunPlan, plan_runs, write_lumi_files
from .mc import write_mc
from .truth import Truth, cross_sections_at, draw_truth, read_t0_table, rng_for
from .writer import write_events

__all__ = ["make_dataset", "generate_run", "run_event_counts"]

#: runs flagged dq_flag = "bad" per scale (still written, with events)
BAD_RUNS = {"demo": (13,), "large": (50, 110)}
FORMAT_VERSION = 1


def run_event_counts(rng: np.random.Generator, run: RunPlan, ecm_gev: float) -> dict[str, int]:
    """Poisson event counts per process for a physics run: sigma(E_cm) * prescale * L."""
    xs = cross_sections_at(ecm_gev)
    lumi_nb = run.lumi_pb * 1.0e3
    return {p: int(rng.poisson(sigma * PRESCALES.get(p, 1.0) * lumi_nb)) for p, sigma in xs.items()}


def _conditions(cfg: SimConfig, truth: Truth, run: RunPlan) -> Conditions:
    return Conditions(
        ecm_gev=truth.ecm_gev.get(run.run, det.NOMINAL_ECM_GEV),
        beam_spot=truth.beam_spot[run.run],
        gain=truth.gain[run.run],
        dx_um=truth.dx_um,
        dy_um=truth.dy_um,
        t0_ns=truth.t0_ns,
        dead=truth.dead,
        hot_channels=np.flatnonzero(truth.hot),
        n_layers=cfg.n_layers,
        n_wires=cfg.n_wires_per_layer,
        magnet_on=run.magnet_on,
        hot_factor=cfg.hot_factor,
        noise_fraction=cfg.noise_fraction,
        hit_efficiency=cfg.hit_efficiency,
        pt_full_reach_gev=cfg.pt_full_reach_gev,
    )


def generate_run(cfg: SimConfig, truth: Truth, run: RunPlan, seed: int):
    """Yield the event chunks of one run (deterministic in ``(seed, exp, run)``)."""
    rng = rng_for(seed, cfg.exp, run.run, 0)
    if run.run_type == "cosmic":
        procs = np.full(cfg.cosmic_events_per_run, det.PROCESS_IDS["cosmic"], np.int32)
        ts = np.sort(rng.uniform(run.start_time, run.stop_time, len(procs)))
    else:
        counts = run_event_counts(rng, run, truth.ecm_gev[run.run])
        procs = np.concatenate([np.full(n, det.PROCESS_IDS[p], np.int32) for p, n in counts.items()])
        procs = rng.permutation(procs)
        # timestamps follow the luminosity profile inside the run window
        ts = np.zeros(0)
        if len(procs):
            w = run.bin_lumi / run.bin_lumi.sum()
            b = rng.choice(len(w), size=len(procs), p=w)
            ts = np.sort(run.bin_times[b] + rng.uniform(0.0, run.bin_s, len(procs)))
    cond = _conditions(cfg, truth, run)
    n = len(procs)
    for ichunk, a in enumerate(range(0, max(n, 1), cfg.chunk_events)):
        sl = slice(a, min(a + cfg.chunk_events, n))
        crng = rng_for(seed, cfg.exp, run.run, ichunk + 1)
        chunk = generate_chunk(crng, procs[sl], cond, cosmic=run.run_type == "cosmic")
        k = len(procs[sl])
        chunk.update(
            exp=np.full(k, cfg.exp, np.int32),
            run=np.full(k, run.run, np.int32),
            event=np.arange(a + 1, a + 1 + k, dtype=np.int64),
            timestamp=ts[sl],
        )
        yield chunk


def _fingerprint(cfg: SimConfig, seed: int, t0_table) -> dict:
    t0_hash = None
    if t0_table is not None:
        t0_hash = hashlib.sha256(np.ascontiguousarray(t0_table, dtype=np.float64).tobytes()).hexdigest()
    doc = {"format": FORMAT_VERSION, "config": cfg.to_dict(), "seed": int(seed), "t0_table_sha256": t0_hash}
    return json.loads(json.dumps(doc))  # as it reads back from truth.json (tuples -> lists)


def _existing_fingerprint(out: Path):
    try:
        return json.loads((out / "truth.json").read_text()).get("generator", {}).get("fingerprint")
    except (OSError, ValueError):
        return None


def make_dataset(out_dir, scale="tiny", seed: int = 1, truth_table=None, overwrite: bool = False) -> Path:
    """Write the toy dataset of ``scale`` (a name in ``SCALES`` or a ``SimConfig``) to ``out_dir``.

    ``truth_table``: optional CSV (``channel,t0_ns``) of per-channel T0s (ns) used instead of
    random ones. Everything is validated before any file is written. Returns the dataset path.
    With ``overwrite=False`` an existing dataset of the same configuration and seed is
    returned untouched, and any other existing directory is an :class:`InputError`.
    """
    from ..errors import ParameterError

    cfg = get_scale(scale)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        msg = f"seed = {seed!r}: expected an integer >= 0"
        raise ParameterError(msg)
    t0_table = read_t0_table(truth_table, cfg.n_channels) if truth_table is not None else None
    out = Path(out_dir).expanduser().resolve()
    fp = _fingerprint(cfg, seed, t0_table)
    if out.exists():
        if not overwrite:
            if _existing_fingerprint(out) == fp:
                return out
            msg = (
                f"output directory {out} exists and is not a dataset of scale {cfg.name!r} seed {seed} "
                "(use overwrite=True, or --force on the command line, to replace it)"
            )
            raise InputError(msg)
        if not out.is_dir():
            msg = f"output path {out} exists and is not a directory"
            raise InputError(msg)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        _build(tmp, cfg, seed, t0_table, fp)
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _swap_in(tmp: Path, out: Path) -> None:
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}-{time.time_ns()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def _build(root: Path, cfg: SimConfig, seed: int, t0_table, fp: dict) -> dict:
    t_start = time.perf_counter()
    geom = det.Geometry(cfg.n_layers, cfg.n_wires_per_layer, cfg.n_modules)
    (root / "detector.json").write_text(json.dumps(geom.to_dict(), indent=2) + "\n")
    runs, fills = plan_runs(cfg, BAD_RUNS.get(cfg.name, ()))
    run_list = [(r.run, r.run_type) for r in runs]
    truth = draw_truth(cfg, seed, run_list, t0_table)
    write_lumi_files(root, cfg, runs, fills, geom.expt)

    raw = root / "raw" / f"e{cfg.exp:04d}"
    raw.mkdir(parents=True)
    n_events, n_hits = {}, 0
    counts_by_proc = {}
    for run in runs:
        hits = [0]
        procs = []

        def counted(chunks):
            for c in chunks:
                hits[0] += len(c["hit_channel"])
                procs.append(np.bincount(c["true_process"], minlength=len(det.PROCESSES)))
                yield c

        n_events[run.run] = write_events(raw / f"r{run.run:05d}.root", counted(generate_run(cfg, truth, run, seed)))
        n_hits += hits[0]
        tot = np.sum(procs, axis=0) if procs else np.zeros(len(det.PROCESSES), int)
        counts_by_proc[f"{cfg.exp}:{run.run}"] = {det.PROCESSES[i]: int(v) for i, v in enumerate(tot) if v}

    lines = ["exp,run,run_type,fill,start_time,stop_time,magnet_on,dq_flag,n_events"]
    for r in runs:
        lines.append(f"{cfg.exp},{r.run},{r.run_type},{r.fill},{r.start_time},{r.stop_time},"
                     f"{r.magnet_on},{r.dq_flag},{n_events[r.run]}")
    (root / "runs.csv").write_text("\n".join(lines) + "\n")

    sizes = {k: v for k, v in truth.beam_spot[runs[0].run].items() if k.startswith("size")}
    write_mc(root, cfg, seed, sizes)

    elapsed = time.perf_counter() - t_start
    stats = {"n_events": int(sum(n_events.values())), "n_hits": int(n_hits), "seconds": elapsed}
    doc = truth.to_json(cfg, seed, run_list, "table" if t0_table is not None else "random")
    doc["events_per_run_and_process"] = counts_by_proc
    doc["lumi_pb"] = {f"{cfg.exp}:{r.run}": r.lumi_pb for r in runs}
    doc["generator"] = {"fingerprint": fp, **stats}
    (root / "truth.json").write_text(json.dumps(doc, indent=1) + "\n")
    return stats
