"""Benchmark of the toy experiment: events/s and hits/s of ``make_dataset``.

``run(quick=False)`` generates the ``demo`` scale (``quick=True``: ``tiny``) into a
temporary directory and returns a dict of figures. The hit kernel is also timed against
its plain-numpy twin on the same inputs (a ratio measured in the same run, so it does not
depend on the machine).

    .venv/bin/python benchmarks/bench_simulate.py [--quick] [--scale large]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path


def _dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def _kernel_ratio(repeats: int = 3) -> dict:
    """Time make_hits (numba) vs make_hits_numpy on one demo-like chunk of hadronic events."""
    import numpy as np

    from dpnb import detector as det
    from dpnb.simulate import events as ev
    from dpnb.simulate import kernels as k

    captured = {}
    real = ev.make_hits

    def spy(*args):
        captured["args"] = args
        return real(*args)

    ev.make_hits = spy
    try:
        nch = det.N_CHANNELS
        cond = ev.Conditions(
            ecm_gev=10.58, beam_spot={"x_cm": 0, "y_cm": 0, "z_cm": 0, "size_x_cm": 1e-3, "size_y_cm": 1e-3, "size_z_cm": 0.03},
            gain=1.0, dx_um=np.zeros(16), dy_um=np.zeros(16), t0_ns=np.zeros(nch), dead=np.zeros(nch, bool),
            hot_channels=np.arange(40), n_layers=det.N_LAYERS, n_wires=det.N_WIRES_PER_LAYER,
        )  # fmt: skip
        procs = np.full(5000, det.PROCESS_IDS["mixed"], np.int32)
        ev.generate_chunk(np.random.default_rng(0), procs, cond)
    finally:
        ev.make_hits = real
    args = captured["args"]
    k.make_hits(*args)  # compiled / loaded from cache
    t_numba = min(_timeit(k.make_hits, args) for _ in range(repeats))
    t_numpy = min(_timeit(k.make_hits_numpy, args) for _ in range(repeats))
    n_hits = int(k.make_hits(*args)[0][-1])
    return {
        "kernel_hits": n_hits,
        "kernel_numba_s": t_numba,
        "kernel_numpy_s": t_numpy,
        "kernel_speedup_vs_numpy": t_numpy / t_numba,
        "kernel_hits_per_s": n_hits / t_numba,
    }


def _timeit(fn, args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def run(quick: bool = False, scale: str | None = None) -> dict:
    """Generate a dataset (demo, or tiny when ``quick``) and return speed figures."""
    from dpnb.simulate import make_dataset

    scale = scale or ("tiny" if quick else "demo")
    tmp = Path(tempfile.mkdtemp(prefix="bench_simulate_"))
    try:
        make_dataset(tmp / "warm", "tiny", seed=99)  # loads the compiled kernels once
        t = time.perf_counter()
        out = make_dataset(tmp / scale, scale, seed=1)
        wall = time.perf_counter() - t
        gen = json.loads((out / "truth.json").read_text())["generator"]
        figures = {
            "scale": scale,
            "wall_s": wall,
            "n_events": gen["n_events"],
            "n_hits": gen["n_hits"],
            "events_per_s": gen["n_events"] / wall,
            "hits_per_s": gen["n_hits"] / wall,
            "disk_mb": _dir_mb(out),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    figures.update(_kernel_ratio())
    return figures


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny scale instead of demo")
    ap.add_argument("--scale", default=None, help="tiny, demo or large (large: >= 1e8 hits, minutes)")
    ns = ap.parse_args()
    for key, value in run(quick=ns.quick, scale=ns.scale).items():
        print(f"{key:>26}: {value:,.4g}" if isinstance(value, float) else f"{key:>26}: {value}")
