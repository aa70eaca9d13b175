"""Benchmark of the histogram and per-channel statistics kernels against boost-histogram and pandas.

``run(quick=False) -> dict`` measures, in one process and on the same arrays:

* per-channel hit-time histogram (Integer channel axis x 200 Regular bins over [0, 400) ns):
  :func:`dpnb.kernels.hist.fill_channel_hist` with 2 and 1 threads vs boost-histogram
  ``Histogram(Integer, Regular, storage=Int64).fill(..., threads=2)`` and ``threads=1``;
  target: dpnb(2 threads) >= 2x faster than boost-histogram threads=2; also with uint32
  counts (``dtype=np.uint32``: half the memory traffic; boost-histogram has no 32-bit
  integer storage, so its Int64 storage is the baseline of both);
* 1D fill, 1000 bins: :func:`dpnb.kernels.hist.fill_hist1d` vs boost-histogram (same
  thread counts); target >= 1.2x;
* per-channel mean and median: :func:`dpnb.kernels.stats.channel_mean_median` vs
  ``pandas.DataFrame.groupby(channel)[value].agg(["mean", "median"])``; target <= 0.3x the
  pandas time.

Each time is the best of ``repeats`` rounds after a warm-up (numba compilation excluded), the
compared functions alternating within a round so that they see the same machine load;
results are checked to agree before timing. Speed is never asserted in tests; this prints a
table and returns the numbers. ``python benchmarks/bench_hist.py [--quick]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dpnb.kernels.hist import fill_channel_hist, fill_hist1d
from dpnb.kernels.stats import channel_mean_median

N_CHANNELS = 20_000
N_BINS = 200
T_RANGE = (0.0, 400.0)


def _interleaved(fns: dict, repeats: int):
    """Best time of each function over ``repeats`` rounds, the functions alternating within
    a round so that all of them see the same load of the shared machine. Returns
    ``({name: seconds}, {name: last result})``."""
    best = {k: float("inf") for k in fns}
    out = {}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            out[k] = fn()
            best[k] = min(best[k], time.perf_counter() - t)
    return best, out


def _check_agreement(name, ours, ref, n):
    """Same total; bins may differ only by the rare float32 times lying exactly on an inner
    bin edge, which boost-histogram (computing (x - lo) / width * n) can put one bin lower."""
    moved = int(np.abs(ours.astype(np.int64) - ref.astype(np.int64)).sum())
    if ours.sum() != ref.sum() or moved > max(10, 1e-5 * n):
        msg = f"{name} and boost-histogram disagree: totals {ours.sum()} vs {ref.sum()}, {moved} entries moved"
        raise AssertionError(msg)
    return moved


def _hits(n, seed=1):
    rng = np.random.default_rng(seed)
    ch = rng.integers(0, N_CHANNELS, n, dtype=np.int32)
    t = (100.0 + rng.normal(0.0, 6.0, n)).astype(np.float32)
    noise = rng.random(n) < 0.2
    t[noise] = rng.uniform(*T_RANGE, int(noise.sum())).astype(np.float32)
    return ch, t


def run(quick: bool = False, repeats: int | None = None) -> dict:
    """Run the benchmark; ``quick`` uses 1e6 hits instead of 1e8 (3e7 for the statistics)."""
    import boost_histogram as bh
    import pandas as pd

    n_fill = 1_000_000 if quick else 100_000_000
    n_stats = 1_000_000 if quick else 30_000_000
    repeats = repeats or (3 if quick else 2)
    ch, t = _hits(n_fill)

    # warm-up: compile the kernels outside the timing
    fill_channel_hist(ch[:1000], t[:1000], N_CHANNELS, N_BINS, *T_RANGE, 2)
    fill_channel_hist(ch[:1000], t[:1000], N_CHANNELS, N_BINS, *T_RANGE, 2, dtype=np.uint32)
    fill_hist1d(t[:1000], 1000, *T_RANGE, 2)
    channel_mean_median(ch[:1000], t[:1000], N_CHANNELS, 2)

    times: dict[str, float] = {}
    # --- 2D per-channel histogram
    def bh2d(threads):
        h = bh.Histogram(bh.axis.Integer(0, N_CHANNELS), bh.axis.Regular(N_BINS, *T_RANGE), storage=bh.storage.Int64())
        h.fill(ch, t, threads=threads)
        return h

    t2d, o2d = _interleaved({
        "fill2d_dpnb_2threads": lambda: fill_channel_hist(ch, t, N_CHANNELS, N_BINS, *T_RANGE, 2),
        "fill2d_bh_threads2": lambda: bh2d(2),
        "fill2d_dpnb_1thread": lambda: fill_channel_hist(ch, t, N_CHANNELS, N_BINS, *T_RANGE, 1),
        "fill2d_bh_threads1": lambda: bh2d(1),
        "fill2d_dpnb_u32_2threads": lambda: fill_channel_hist(ch, t, N_CHANNELS, N_BINS, *T_RANGE, 2, dtype=np.uint32),
        "fill2d_dpnb_u32_1thread": lambda: fill_channel_hist(ch, t, N_CHANNELS, N_BINS, *T_RANGE, 1, dtype=np.uint32),
    }, repeats)
    times.update(t2d)
    ours, ref = o2d["fill2d_dpnb_2threads"], o2d["fill2d_bh_threads2"]
    _check_agreement("fill_channel_hist", ours, ref.view(), n_fill)
    if not np.array_equal(o2d["fill2d_dpnb_u32_2threads"], ours):
        msg = "fill_channel_hist with uint32 counts differs from int64 counts"
        raise AssertionError(msg)
    del ours, ref, o2d

    # --- 1D histogram, 1000 bins
    def bh1d(threads):
        h = bh.Histogram(bh.axis.Regular(1000, *T_RANGE), storage=bh.storage.Int64())
        h.fill(t, threads=threads)
        return h

    t1d, o1d = _interleaved({
        "fill1d_dpnb_2threads": lambda: fill_hist1d(t, 1000, *T_RANGE, 2),
        "fill1d_bh_threads2": lambda: bh1d(2),
        "fill1d_dpnb_1thread": lambda: fill_hist1d(t, 1000, *T_RANGE, 1),
        "fill1d_bh_threads1": lambda: bh1d(1),
    }, repeats)
    times.update(t1d)
    o1, r1 = o1d["fill1d_dpnb_2threads"], o1d["fill1d_bh_threads2"]
    _check_agreement("fill_hist1d", o1, r1.view(), n_fill)

    # --- per-channel mean and median
    cs, ts = ch[:n_stats], t[:n_stats]
    df = pd.DataFrame({"channel": cs, "time": ts})
    tmm, omm = _interleaved({
        "mean_median_dpnb_2threads": lambda: channel_mean_median(cs, ts, N_CHANNELS, 2),
        "mean_median_pandas": lambda: df.groupby("channel")["time"].agg(["mean", "median"]),
    }, repeats)
    times.update(tmm)
    (cnt, mean, med), agg = omm["mean_median_dpnb_2threads"], omm["mean_median_pandas"]
    idx = agg.index.to_numpy()
    if not (np.allclose(mean[idx], agg["mean"], rtol=1e-5) and np.allclose(med[idx], agg["median"], rtol=1e-6)):
        msg = "channel_mean_median and pandas disagree"
        raise AssertionError(msg)

    ratios = {
        "fill2d_speedup_vs_bh_threads2": times["fill2d_bh_threads2"] / times["fill2d_dpnb_2threads"],
        "fill2d_speedup_vs_bh_threads1": times["fill2d_bh_threads1"] / times["fill2d_dpnb_2threads"],
        "fill2d_1thread_speedup_vs_bh_threads1": times["fill2d_bh_threads1"] / times["fill2d_dpnb_1thread"],
        "fill2d_u32_speedup_vs_bh_threads2": times["fill2d_bh_threads2"] / times["fill2d_dpnb_u32_2threads"],
        "fill2d_u32_1thread_speedup_vs_bh_threads1": times["fill2d_bh_threads1"] / times["fill2d_dpnb_u32_1thread"],
        "fill1d_speedup_vs_bh_threads2": times["fill1d_bh_threads2"] / times["fill1d_dpnb_2threads"],
        "fill1d_1thread_speedup_vs_bh_threads1": times["fill1d_bh_threads1"] / times["fill1d_dpnb_1thread"],
        "mean_median_time_fraction_of_pandas": times["mean_median_dpnb_2threads"] / times["mean_median_pandas"],
    }
    targets = {
        "fill2d_speedup_vs_bh_threads2": (">=", 2.0),
        "fill2d_u32_speedup_vs_bh_threads2": (">=", 2.0),
        "fill1d_speedup_vs_bh_threads2": (">=", 1.2),
        "mean_median_time_fraction_of_pandas": ("<=", 0.3),
    }
    met = {k: (ratios[k] >= v if op == ">=" else ratios[k] <= v) for k, (op, v) in targets.items()}
    # a flat mapping: benchmarks/run.py prints one row per key
    out = {"quick": quick, "n_fill": n_fill, "n_stats": n_stats, "n_channels": N_CHANNELS, "n_bins": N_BINS,
           "repeats": repeats, "fill2d_hits_per_s_dpnb_2threads": n_fill / times["fill2d_dpnb_2threads"]}
    out.update({f"time_s_{k}": v for k, v in times.items()})
    out.update(ratios)
    out.update({f"target_{k}": f"{op} {v}: {'met' if met[k] else 'NOT MET'}" for k, (op, v) in targets.items()})
    return out


def print_table(res: dict) -> None:
    """Print the times and ratios of :func:`run` as a table."""
    print(f"hits: {res['n_fill']:.0e} (fills), {res['n_stats']:.0e} (mean/median); {res['n_channels']} channels x "
          f"{res['n_bins']} bins; best of {res['repeats']} interleaved rounds")
    print(f"{'measurement':40s} {'time [s]':>10s}")
    for k, v in res.items():
        if k.startswith("time_s_"):
            print(f"{k[len('time_s_'):]:40s} {v:10.4f}")
    print(f"\n{'ratio':42s} {'value':>8s}  target")
    for k, v in res.items():
        if k.startswith(("fill2d_speedup", "fill2d_1thread", "fill2d_u32", "fill1d_", "mean_median_time")):
            print(f"{k:42s} {v:8.2f}  {res.get('target_' + k, '')}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1e6 hits instead of 1e8")
    args = ap.parse_args()
    print_table(run(quick=args.quick))
