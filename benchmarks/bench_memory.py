"""Peak memory of the calibration accumulation: a bucket vs a 10x larger bucket.

Both buckets are run ranges of one dataset (``demo``; ``tiny`` when ``quick``): the large
bucket is every physics run, the small one the longest leading run range holding <= 1/10
of its events (runs 1-3 of demo: 11x fewer events, ``size_factor_hits`` ~ 10). Each
accumulation runs in a fresh subprocess, so the import of numpy, numba, uproot and awkward
and the loading of the cached kernels cost the same in both; the peak is the child's
peak resident set size (``VmHWM`` of ``/proc/self/status``; ``ru_maxrss`` is not used on
Linux because it inherits the high-water mark of the parent process across fork + exec)
and ``rss_floor_mb`` its RSS after imports and kernel loading, before reading any event.

Two ways of accumulating a bucket are measured:

* ``streaming``: what the calibration notebooks do —
  :func:`~dpnb.calibration.accumulate.accumulate_bucket` (local executor, no partial
  cache): runs in batches, each batch's compact partials merged into one dense total and
  dropped, so memory should not grow with the number of runs —
  ``peak_ratio_streaming`` is the goal figure (<= 1.5);
* ``all_partials``: :func:`~dpnb.calibration.accumulate.accumulate_run` for every run, all
  the (compact) partials held, then :func:`~dpnb.calibration.accumulate.merge`: memory
  grows with the number of runs (by the size of a compact partial, ~3 MB per demo run,
  where the dense per-run partials of earlier versions took 23 MB).

    .venv/bin/python benchmarks/bench_memory.py [--quick] [--scale demo]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _datasets import bucket, prefix_with_fraction  # noqa: E402

_CHILD = r"""
import json, resource, sys
import numpy as np
import psutil
import awkward, uproot  # noqa: F401  (imported by the reader anyway; counted in the floor)
from dpnb.calibration.accumulate import accumulate_bucket, accumulate_run, merge
from dpnb.kernels.hist import add_sparse, count_invalid, fill_channel_occupancy_hist, sparse_from_dense
from dpnb.runs import RunId

job = json.loads(sys.argv[1])
n_channels, mode = job["n_channels"], job["mode"]
# load the compiled kernels (from the numba cache) before the floor is taken
ch, t = np.zeros(4, np.int32), np.zeros(4, np.float32)
count_invalid(ch, t, n_channels, 1)
h32 = np.zeros((8, 200), np.int32)
fill_channel_occupancy_hist(ch % 8, t, 8, 200, 0.0, 400.0, np.zeros(8, np.int64), h32, 1)
bins, counts = sparse_from_dense(h32, reset=True)
add_sparse(np.zeros((8, 200), np.int64), bins, counts)
del h32, bins, counts
floor = psutil.Process().memory_info().rss
if mode == "streaming":
    files = {RunId(*run): path for path, run in zip(job["files"], job["runs"])}
    total = accumulate_bucket(files, n_channels).total
elif mode == "all_partials":
    partials = [accumulate_run(path, n_channels, run=tuple(run)) for path, run in zip(job["files"], job["runs"])]
    total = merge(partials)
else:
    raise SystemExit(f"unknown mode {mode!r}")
# VmHWM: peak RSS of this process image. Not ru_maxrss: Linux carries the parent's high-water
# mark across fork + exec into it, so a child of a big process would report the parent's peak.
try:
    with open("/proc/self/status") as fh:
        peak = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
print(json.dumps({"floor": floor, "peak": peak, "n_events": total.n_events, "n_hits": total.n_hits}))
"""


def measure(b, mode: str) -> dict:
    """Peak RSS (bytes) of accumulating bucket ``b`` in a fresh subprocess."""
    job = {"n_channels": b.n_channels, "mode": mode, "files": list(b.files), "runs": [list(r) for r in b.runs]}
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(job)], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        msg = (f"memory child ({mode}, {len(b.files)} runs) failed with exit code {out.returncode}:\n"
               f"{out.stderr[-3000:]}")
        raise RuntimeError(msg)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False, scale: str | None = None) -> dict:
    """Peak memory of a bucket and of a ~10x larger one (``demo``; ``tiny`` when ``quick``)."""
    scale = scale or ("tiny" if quick else "demo")
    big = bucket(scale, physics_only=True)
    small = prefix_with_fraction(big, 0.1)
    measure(small.subset(small.runs[:1]), "streaming")  # untimed: fills the numba cache if empty
    mb = 1.0 / 2**20
    figures = {
        "scale": scale,
        "small_runs": len(small.runs),
        "big_runs": len(big.runs),
        "small_events": small.n_events,
        "big_events": big.n_events,
    }
    for mode in ("streaming", "all_partials"):
        s = measure(small, mode)
        g = measure(big, mode)
        if mode == "streaming":
            figures["size_factor_hits"] = g["n_hits"] / s["n_hits"]
            figures["rss_floor_mb"] = min(s["floor"], g["floor"]) * mb
        figures[f"peak_small_{mode}_mb"] = s["peak"] * mb
        figures[f"peak_big_{mode}_mb"] = g["peak"] * mb
        figures[f"peak_ratio_{mode}"] = g["peak"] / s["peak"]
        figures[f"above_floor_ratio_{mode}"] = (g["peak"] - g["floor"]) / max(s["peak"] - s["floor"], 1)
    return figures


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny scale (a smoke run)")
    ap.add_argument("--scale", default=None, help="tiny, demo or large (default demo)")
    ns = ap.parse_args()
    for key, value in run(quick=ns.quick, scale=ns.scale).items():
        print(f"{key:>34}: {value:,.4g}" if isinstance(value, float) else f"{key:>34}: {value}")
