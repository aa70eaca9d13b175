"""JIT cost: cold start (empty numba cache) vs warm start (cache filled by the cold start).

Each start is a fresh subprocess with ``NUMBA_CACHE_DIR`` pointing at a directory of its
own: the child imports :mod:`dpnb.kernels.hist` and runs, once, on small arrays, the three
kernels the calibration accumulation calls (``fill_channel_occupancy_hist``,
``sparse_from_dense``, ``add_sparse``). The cold child finds the directory empty
and compiles; the warm child runs with the directory the cold one filled and loads the
compiled code. Reported: the child's own import and first-call times and the wall time of
the whole subprocess (interpreter start included); ``ratio_cold_vs_warm`` is the ratio of
import + first call (wall), ``ratio_cold_vs_warm_cpu`` the same in CPU time of the child
(less sensitive to other load on a shared machine). Best of N, a new empty directory for each cold start. The children
also report how many compilations numba loaded from the disk cache and how many it had
to compile (``*_cache_loads_misses``: a warm start should show only loads; misses there
mean the kernel source changed in between, which invalidates numba's cache; such a pair
is run again, at most twice).

Caching check (reported, not asserted): every numba dispatcher in each
``dpnb/kernels/*.py`` module is listed with whether its cache is enabled
(``cache=True``), and the cold start's cache directory is inspected for the index
(``.nbi``) and data (``.nbc``) files it wrote, per kernel module.

Notebook cold start: the notebooks ``calibration/01_channel_masking`` (hit accumulation,
per-channel statistics) and ``skim_validation`` (selection kernels) are executed by
papermill, with their default parameters, on the ``tiny`` benchmark dataset (a bucket file
given through ``DPNB_BUCKET_FILE``, as in JupyterLab). Each execution gets a fresh kernel
process, a fresh conditions database, a fresh per-run partial cache and a fresh reports
directory, so every execution does the same work; only ``NUMBA_CACHE_DIR`` differs: empty
(cold) or the one the cold execution filled (warm). Reported per notebook: wall time of
``papermill.execute_notebook`` cold and warm, best of N pairs, and their ratio.

    .venv/bin/python benchmarks/bench_jit.py [--quick]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

_CHILD = r"""
import json, time
t0, c0 = time.perf_counter(), time.process_time()
import numpy as np
from dpnb.kernels import _jit
from dpnb.kernels.hist import add_sparse, fill_channel_occupancy_hist, sparse_from_dense
t1 = time.perf_counter()
rng = np.random.default_rng(0)
n_channels = 512
ch = rng.integers(0, n_channels, 10_000).astype(np.int32)
t = rng.uniform(0.0, 400.0, 10_000).astype(np.float32)
occ = np.zeros(n_channels, dtype=np.int64)
h = np.zeros((n_channels, 200), dtype=np.int32)
bad = fill_channel_occupancy_hist(ch, t, n_channels, 200, 0.0, 400.0, occ, h, 1)
bins, counts = sparse_from_dense(h, max_nonzero=10_000, reset=True)
add_sparse(h, bins, counts)
t2, c2 = time.perf_counter(), time.process_time()
assert occ.sum() == h.sum() == 10_000 and bad.sum() == 0
# compilations loaded from / missing in the on-disk cache, over every dispatcher of the module
from dpnb.kernels import hist
stats = [v.stats for v in vars(hist).values() if hasattr(v, "stats") and hasattr(v, "py_func")]
hits = sum(sum(s.cache_hits.values()) for s in stats)
misses = sum(sum(s.cache_misses.values()) for s in stats)
print(json.dumps({"import_s": t1 - t0, "first_call_s": t2 - t1, "cpu_s": c2 - c0, "cache_dir": _jit.cache_dir,
                  "cache_hits": hits, "cache_misses": misses}))
"""

KERNEL_DIR = Path(__file__).resolve().parent.parent / "dpnb" / "kernels"


def _start(cache_dir: Path) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        msg = f"JIT child failed with exit code {out.returncode}:\n{out.stderr[-3000:]}"
        raise RuntimeError(msg)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if Path(res["cache_dir"]) != cache_dir:
        msg = f"the child compiled into {res['cache_dir']}, not the empty directory {cache_dir} it was given"
        raise RuntimeError(msg)
    res["wall_s"] = wall
    return res


def _cache_files(cache_dir: Path) -> dict:
    """{kernel module: {"nbi": n, "nbc": n}} of the files numba wrote (named <module>.<function>-<line>...)."""
    out: dict = {}
    for f in cache_dir.rglob("*"):
        if f.suffix in (".nbi", ".nbc"):
            module = f.name.split(".", 1)[0]
            out.setdefault(module, Counter())[f.suffix[1:]] += 1
    return {m: dict(c) for m, c in sorted(out.items())}


def caching_report() -> dict:
    """{module: "k/n"}: of the n numba dispatchers defined in each kernel module, k cache to disk."""
    from dpnb.kernels._jit import HAVE_NUMBA

    if not HAVE_NUMBA:
        return {"numba": "absent (or DPNB_DISABLE_JIT=1): nothing is compiled"}
    from numba.core.dispatcher import Dispatcher

    report = {}
    for path in sorted(KERNEL_DIR.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        try:
            mod = importlib.import_module(f"dpnb.kernels.{path.stem}")
        except Exception as exc:  # a module being edited by someone else: say so, check the others
            report[path.stem] = f"not importable ({type(exc).__name__}: {exc})"
            continue
        dispatchers = [v for v in vars(mod).values() if isinstance(v, Dispatcher) and v.__module__ == mod.__name__]
        # numba's Dispatcher keeps a NullCache unless compiled with cache=True (enable_caching)
        cached = [d for d in dispatchers if type(d._cache).__name__ != "NullCache"]
        not_cached = sorted(d.py_func.__name__ for d in dispatchers if d not in cached)
        missing = f" (not cached: {', '.join(not_cached)})" if not_cached else ""
        report[path.stem] = f"{len(cached)}/{len(dispatchers)}{missing}"
    return report


REPO = KERNEL_DIR.parent.parent
NOTEBOOKS = {"masking": "calibration/01_channel_masking.ipynb", "skim_validation": "skim_validation.ipynb"}


def _execute(notebook: str, data_root: Path, numba_cache: Path, scratch: Path) -> float:
    """Wall seconds of one papermill execution of ``notebook`` with its default parameters on
    ``data_root``, everything it writes (conditions, partials, reports) under ``scratch``."""
    import logging

    import papermill as pm
    import yaml

    logging.getLogger("papermill").setLevel(logging.ERROR)
    scratch.mkdir(parents=True)
    bucket = {"label": "jit", "runs": ["1:1-7"], "data": {"root": str(data_root)},
              "conditions": {"db": str(scratch / "conditions.sqlite")}, "reports_dir": str(scratch / "reports"),
              "cache_dir": str(scratch / "cache")}
    bfile = scratch / "bucket.yaml"
    bfile.write_text(yaml.safe_dump(bucket))
    from dpnb.pipeline.execute import KERNEL_ARGS, KERNEL_ENV, _environ, _kernel_manager_class

    # the kernel settings of `dpnb run` (ipc kernel, in-memory history); kernels inherit the environment
    with _environ(dict(KERNEL_ENV, DPNB_BUCKET_FILE=str(bfile), NUMBA_CACHE_DIR=str(numba_cache))):
        t0 = time.perf_counter()
        pm.execute_notebook(str(REPO / "notebooks" / notebook), str(scratch / "out.ipynb"), kernel_name="python3",
                            cwd=str((REPO / "notebooks" / notebook).parent), progress_bar=False,
                            kernel_manager_class=_kernel_manager_class(), extra_arguments=KERNEL_ARGS)
        return time.perf_counter() - t0


def notebook_starts(repeat: int) -> dict:
    """Cold (empty numba cache) vs warm execution of each notebook in :data:`NOTEBOOKS`."""
    from _datasets import dataset

    data_root = dataset("tiny")
    figures = {}
    with tempfile.TemporaryDirectory(prefix="bench_jit_nb_") as tmp:
        tmp = Path(tmp)
        for key, notebook in NOTEBOOKS.items():
            # warm-up (own cache dir): interpreter, byte code and file caches, not numba's
            _execute(notebook, data_root, tmp / f"{key}-warmup-numba", tmp / f"{key}-warmup")
            cold = warm = float("inf")
            for i in range(repeat):
                cache = tmp / f"{key}-numba-{i}"
                cache.mkdir()
                cold = min(cold, _execute(notebook, data_root, cache, tmp / f"{key}-cold-{i}"))
                warm = min(warm, _execute(notebook, data_root, cache, tmp / f"{key}-warm-{i}"))
            figures[f"notebook_{key}_cold_s"] = cold
            figures[f"notebook_{key}_warm_s"] = warm
            figures[f"notebook_{key}_ratio_cold_vs_warm"] = cold / warm
    return figures


def run(quick: bool = False, repeat: int | None = None) -> dict:
    """Cold vs warm start of the accumulation kernels and of two notebooks, and which kernels
    cache to disk."""
    repeat = repeat or (1 if quick else 2)
    cold = warm = None
    files = {}
    valid = attempts = 0
    while valid < repeat and attempts < repeat + 2:
        attempts += 1
        tmp = Path(tempfile.mkdtemp(prefix="bench_jit_"))
        try:
            c = _start(tmp)  # empty directory: compiles and writes the cache
            files = _cache_files(tmp)
            w = _start(tmp)  # loads what the cold start wrote
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if w["cache_misses"] and (attempts < repeat + 2 or warm is not None):
            continue  # the kernel source changed between the two starts: not a warm start, redo
        valid += 1
        if cold is None or c["import_s"] + c["first_call_s"] < cold["import_s"] + cold["first_call_s"]:
            cold = c
        if warm is None or w["import_s"] + w["first_call_s"] < warm["import_s"] + warm["first_call_s"]:
            warm = w
    figures = {
        "cold_import_s": cold["import_s"],
        "cold_first_call_s": cold["first_call_s"],
        "cold_process_wall_s": cold["wall_s"],
        "warm_import_s": warm["import_s"],
        "warm_first_call_s": warm["first_call_s"],
        "warm_process_wall_s": warm["wall_s"],
        "ratio_cold_vs_warm": (cold["import_s"] + cold["first_call_s"]) / (warm["import_s"] + warm["first_call_s"]),
        "ratio_cold_vs_warm_first_call": cold["first_call_s"] / warm["first_call_s"],
        "cold_warm_pairs_run": attempts,
        "cold_cpu_s": cold["cpu_s"],
        "warm_cpu_s": warm["cpu_s"],
        "ratio_cold_vs_warm_cpu": cold["cpu_s"] / warm["cpu_s"],
        "cold_cache_loads_misses": f"{cold['cache_hits']}/{cold['cache_misses']}",
        "warm_cache_loads_misses": f"{warm['cache_hits']}/{warm['cache_misses']}",
        "cache_files_written_by_cold_start": files,
    }
    figures.update(notebook_starts(repeat))
    for module, value in caching_report().items():
        figures[f"cached_dispatchers_{module}"] = value
    return figures


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # _datasets
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one cold/warm pair instead of best of 2")
    ap.add_argument("--repeat", type=int, default=None)
    ns = ap.parse_args()
    for key, value in run(quick=ns.quick, repeat=ns.repeat).items():
        print(f"{key:>34}: {value:,.4g}" if isinstance(value, float) else f"{key:>34}: {value}")
