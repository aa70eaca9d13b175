"""Benchmark of the luminosity code: integration kernels vs memory bandwidth, text parser vs
``numpy.loadtxt`` and ``pandas.read_csv``.

* Integration: ``integrate_total`` over 1e8 samples (``quick``: 2e6) reads four float64
  arrays (duration, stab, l, dl); its read rate (bytes/s) is divided by the machine's memory
  read bandwidth measured in the same run: the faster of ``common.memory_read_bandwidth`` (a
  parallel streaming sum), the same sum vectorized (``integrate.streaming_sum``) over an
  800 MB array, and that sum over the very four arrays the kernel reads; all timed
  interleaved with the kernels (best of 5 rounds). Goal: ratio >= 0.5. ``integrate_windows`` (1000 run windows tiling the
  samples) is timed on the same arrays, the plain-numpy twin on the first 1e7 samples
  (scaled per sample; its temporaries would double the memory).
* Parsing: a Massi lumi file of 5e5 lines (``quick``: 2e4) read by
  ``dpnb.io.lumi_files.read_massi_lumi``, ``numpy.loadtxt`` and ``pandas.read_csv``; MB/s each
  and the ratios.

    .venv/bin/python benchmarks/bench_lumi.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_time, memory_read_bandwidth  # noqa: E402


def _integration(n: int, n_threads: int, repeat: int, n_bw_bytes: int) -> dict:
    """Kernel read rates and the bandwidth reference, timed interleaved (best of ``repeat``
    rounds) so that load from other users of the machine hits both alike."""
    from dpnb.kernels import integrate as k

    duration = np.full(n, 60.0)
    stab = np.ones(n)
    lumi = np.linspace(1.0e4, 5.0e3, n)
    dlumi = 0.01 * lumi
    time_s = np.arange(n, dtype=np.float64) * 60.0
    edges = np.linspace(0.0, n * 60.0, 1001)
    big = np.ones(n_bw_bytes // 8)
    # compile / load from cache
    k.integrate_total(duration[:1000], stab[:1000], lumi[:1000], dlumi[:1000], n_threads)
    k.integrate_windows(time_s[:1000], duration[:1000], stab[:1000], lumi[:1000], dlumi[:1000], edges[:2], edges[1:3])
    k.streaming_sum(big[:1000], n_threads)
    memory_read_bandwidth(n_bytes=8_000_000, repeat=1)
    def stream_same_arrays():
        # the same 4 arrays the kernel reads, summed one after the other
        return sum(k.streaming_sum(a, n_threads) for a in (duration, stab, lumi, dlumi))

    t = {"total": np.inf, "windows": np.inf, "bw_vec": np.inf, "bw_same": np.inf, "bw_common": 0.0}
    for _ in range(repeat):
        t["bw_same"] = min(t["bw_same"], best_time(stream_same_arrays, repeat=1))
        t["bw_common"] = max(t["bw_common"], memory_read_bandwidth(n_bytes=n_bw_bytes, repeat=1))
        t["bw_vec"] = min(t["bw_vec"], best_time(k.streaming_sum, big, n_threads, repeat=1))
        t["total"] = min(t["total"], best_time(k.integrate_total, duration, stab, lumi, dlumi, n_threads, repeat=1))
        t["windows"] = min(t["windows"], best_time(k.integrate_windows, time_s, duration, stab, lumi, dlumi,
                                                   edges[:-1], edges[1:], repeat=1))
    # the numpy twin makes full-size temporaries: time it on at most 1e7 samples, per sample
    m = min(n, 10_000_000)
    t_numpy = best_time(k.integrate_total_numpy, duration[:m], stab[:m], lumi[:m], dlumi[:m], repeat=1) * (n / m)
    bw_vec = big.nbytes / t["bw_vec"]
    bw_same = 4 * n * 8 / t["bw_same"]
    # the fastest reference: a slow (e.g. add-latency-bound) one would flatter the kernels
    bw = max(t["bw_common"], bw_vec, bw_same)
    rate_total = 4 * n * 8 / t["total"]
    rate_windows = 5 * n * 8 / t["windows"]
    return {
        "memory_read_GBps": bw / 1e9,
        "memory_read_common_GBps": t["bw_common"] / 1e9,
        "memory_read_vectorized_GBps": bw_vec / 1e9,
        "memory_read_same_arrays_GBps": bw_same / 1e9,
        "integrate_total_s": t["total"],
        "integrate_total_GBps": rate_total / 1e9,
        "integrate_total_fraction_of_bandwidth": rate_total / bw,
        "integrate_total_speedup_vs_numpy": t_numpy / t["total"],
        "integrate_windows_GBps": rate_windows / 1e9,
        "integrate_windows_fraction_of_bandwidth": rate_windows / bw,
    }


def _parsing(n_lines: int, repeat: int) -> dict:
    import pandas as pd

    from dpnb.io import lumi_files as lf

    rng = np.random.default_rng(1)
    t = 1.7e9 + 60.0 * np.arange(n_lines)
    lumi = rng.uniform(0, 2e4, n_lines)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "1_lumi_TOY.txt"
        lf.write_massi_lumi(path, t, np.ones(n_lines), lumi, 0.01 * lumi, lumi / 1e3, lumi / 1e5)
        mb = path.stat().st_size / 1e6
        t_ours = best_time(lf.read_massi_lumi, path, repeat=repeat)
        t_loadtxt = best_time(np.loadtxt, path, repeat=1)
        t_pandas = best_time(pd.read_csv, path, sep=" ", header=None, comment="#", repeat=repeat)
        # same numbers from all three
        ours = lf.read_massi_lumi(path)
        ref = pd.read_csv(path, sep=" ", header=None, comment="#").to_numpy()
        assert np.array_equal(ours.lumi, ref[:, 2]) and np.array_equal(ours.time_s, ref[:, 0])
    return {
        "parse_file_MB": mb,
        "parse_ours_MBps": mb / t_ours,
        "parse_loadtxt_MBps": mb / t_loadtxt,
        "parse_pandas_MBps": mb / t_pandas,
        "parse_ratio_vs_loadtxt": t_loadtxt / t_ours,
        "parse_ratio_vs_pandas": t_pandas / t_ours,
    }


def run(quick: bool = False) -> dict:
    """Figures of the luminosity benchmark (ratios measured in the same run)."""
    n = 2_000_000 if quick else 100_000_000
    n_threads = os.cpu_count() or 1
    t0 = time.perf_counter()
    out = {"n_samples": n, "n_threads": n_threads}
    out.update(_integration(n, n_threads, repeat=3 if quick else 5,
                            n_bw_bytes=160_000_000 if quick else 800_000_000))
    out.update(_parsing(20_000 if quick else 500_000, repeat=2 if quick else 3))
    out["wall_s"] = time.perf_counter() - t0
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args()
    res = run(quick=args.quick)
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        width = max(map(len, res))
        for key, val in res.items():
            print(f"{key:<{width}}  {val:.4g}" if isinstance(val, float) else f"{key:<{width}}  {val}")
