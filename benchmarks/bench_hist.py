"""Benchmark of the histogram and per-channel statistics kernels against boost-histogram and pandas.

``run(quick=False) -> dict`` measures, in one process and on the same arrays:

* per-channel hit-time histogram (Integer channel axis x 200 Regular bins over [0, 400) ns):
  :func:`dpnb.kernels.hist.fill_channel_hist` with 2 and 1 threads vs boost-histogram
  ``Histogram(Integer, Regular, storage=Int64).fill(..., threads=2)`` and ``threads=1``;
  target: dpnb(2 threads) >= 2x faster than boost-histogram threads=2;
* 1D fill, 1000 bins: :func:`dpnb.kernels.hist.fill_hist1d` vs boost-histogram (same
  thread counts); target >= 1.2x;
* per-channel mean and median: :func:`dpnb.kernels.stats.channel_mean_median` vs
  ``pandas.DataFrame.groupby(channel)[value].agg(["mean", "median"])``; target <= 0.3x the
  pandas time.

Each time is the best of ``repeats`` runs after a warm-up (numba compilation excluded);
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


def _best(fn, repeats):
    best = float("inf")
    out = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
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
    fill_hist1d(t[:1000], 1000, *T_RANGE, 2)
    channel_mean_median(ch[:1000], t[:1000], N_CHANNELS, 2)

    times: dict[str, float] = {}
    # --- 2D per-channel histogram
    def bh2d(threads):
        h = bh.Histogram(bh.axis.Integer(0, N_CHANNELS), bh.axis.Regular(N_BINS, *T_RANGE), storage=bh.storage.Int64())
        h.fill(ch, t, threads=threads)
        return h

    times["fill2d_dpnb_2threads"], ours = _best(lambda: fill_channel_hist(ch, t, N_CHANNELS, N_BINS, *T_RANGE, 2), repeats)
    times["fill2d_dpnb_1thread"], _ = _best(lambda: fill_channel_hist(ch, t, N_CHANNELS, N_BINS, *T_RANGE, 1), repeats)
    times["fill2d_bh_threads2"], ref = _best(lambda: bh2d(2), repeats)
    times["fill2d_bh_threads1"], _ = _best(lambda: bh2d(1), repeats)
    _check_agreement("fill_channel_hist", ours, ref.view(), n_fill)
    del ours, ref

    # --- 1D histogram, 1000 bins
    def bh1d(threads):
        h = bh.Histogram(bh.axis.Regular(1000, *T_RANGE), storage=bh.storage.Int64())
        h.fill(t, threads=threads)
        return h

    times["fill1d_dpnb_2threads"], o1 = _best(lambda: fill_hist1d(t, 1000, *T_RANGE, 2), repeats)
    times["fill1d_dpnb_1thread"], _ = _best(lambda: fill_hist1d(t, 1000, *T_RANGE, 1), repeats)
    times["fill1d_bh_threads2"], r1 = _best(lambda: bh1d(2), repeats)
    times["fill1d_bh_threads1"], _ = _best(lambda: bh1d(1), repeats)
    _check_agreement("fill_hist1d", o1, r1.view(), n_fill)

    # --- per-channel mean and median
    cs, ts = ch[:n_stats], t[:n_stats]
    df = pd.DataFrame({"channel": cs, "time": ts})
    times["mean_median_dpnb_2threads"], (cnt, mean, med) = _best(
        lambda: channel_mean_median(cs, ts, N_CHANNELS, 2), repeats)
    times["mean_median_pandas"], agg = _best(lambda: df.groupby("channel")["time"].agg(["mean", "median"]), repeats)
    idx = agg.index.to_numpy()
    if not (np.allclose(mean[idx], agg["mean"], rtol=1e-5) and np.allclose(med[idx], agg["median"], rtol=1e-6)):
        msg = "channel_mean_median and pandas disagree"
        raise AssertionError(msg)

    ratios = {
        "fill2d_speedup_vs_bh_threads2": times["fill2d_bh_threads2"] / times["fill2d_dpnb_2threads"],
        "fill2d_speedup_vs_bh_threads1": times["fill2d_bh_threads1"] / times["fill2d_dpnb_2threads"],
        "fill2d_1thread_speedup_vs_bh_threads1": times["fill2d_bh_threads1"] / times["fill2d_dpnb_1thread"],
        "fill1d_speedup_vs_bh_threads2": times["fill1d_bh_threads2"] / times["fill1d_dpnb_2threads"],
        "fill1d_1thread_speedup_vs_bh_threads1": times["fill1d_bh_threads1"] / times["fill1d_dpnb_1thread"],
        "mean_median_time_fraction_of_pandas": times["mean_median_dpnb_2threads"] / times["mean_median_pandas"],
    }
    targets = {
        "fill2d_speedup_vs_bh_threads2": (">=", 2.0),
        "fill1d_speedup_vs_bh_threads2": (">=", 1.2),
        "mean_median_time_fraction_of_pandas": ("<=", 0.3),
    }
    met = {k: (ratios[k] >= v if op == ">=" else ratios[k] <= v) for k, (op, v) in targets.items()}
    return {"quick": quick, "n_fill": n_fill, "n_stats": n_stats, "n_channels": N_CHANNELS, "n_bins": N_BINS,
            "repeats": repeats, "times_s": times, "ratios": ratios, "targets": targets, "target_met": met,
            "fill2d_hits_per_s_dpnb_2threads": n_fill / times["fill2d_dpnb_2threads"]}


def print_table(res: dict) -> None:
    print(f"hits: {res['n_fill']:.0e} (fills), {res['n_stats']:.0e} (mean/median); {res['n_channels']} channels x "
          f"{res['n_bins']} bins; best of {res['repeats']}")
    print(f"{'measurement':40s} {'time [s]':>10s}")
    for k, v in res["times_s"].items():
        print(f"{k:40s} {v:10.4f}")
    print(f"\n{'ratio':42s} {'value':>8s}  target")
    for k, v in res["ratios"].items():
        tgt = res["targets"].get(k)
        extra = f"{tgt[0]} {tgt[1]}  {'met' if res['target_met'][k] else 'NOT MET'}" if tgt else ""
        print(f"{k:42s} {v:8.2f}  {extra}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1e6 hits instead of 1e8")
    args = ap.parse_args()
    print_table(run(quick=args.quick))
