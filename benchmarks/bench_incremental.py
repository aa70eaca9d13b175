"""Incremental buckets: accumulating a bucket from scratch vs after adding ~10 % more runs.

The bucket accumulation of the calibration notebooks
(:func:`dpnb.calibration.accumulate.accumulate_bucket`: per-run tasks through
:func:`dpnb.scale.map_runs`, local executor in-process, merged as they arrive) with a
:class:`dpnb.scale.PartialCache` in a temporary directory:

* ``full_bucket_s``: the base bucket (the first ~91 % of the physics runs of ``demo``;
  ``tiny`` when ``quick``) with an empty cache — every run computed and stored;
* ``add_runs_s``: the extended bucket (all physics runs: ~10 % more) with the cache of
  the first step — the old runs are loaded from the cache, only the new ones computed;
* ``new_runs_only_s``: the new runs alone without any cache (the least adding can cost);
  ``cache_reuse_s = add_runs_s - new_runs_only_s`` is the price of loading cached partials.

``ratio_add_vs_full`` = add_runs_s / full_bucket_s (1.0 would mean no reuse). Each pair is
repeated with a fresh cache directory; times are best-of-N.

    .venv/bin/python benchmarks/bench_incremental.py [--quick] [--scale demo]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _datasets import BENCH_DATA, bucket  # noqa: E402


def _bucket_total(b, runs, cache_dir):
    """accumulate_bucket over ``runs`` of ``b`` (with a PartialCache in ``cache_dir`` unless None)."""
    from dpnb.calibration.accumulate import accumulate_bucket
    from dpnb.runs import RunId
    from dpnb.scale import PartialCache

    files = dict(zip(b.runs, b.files))
    cache = PartialCache(cache_dir) if cache_dir is not None else None
    acc = accumulate_bucket({RunId(*r): files[r] for r in runs}, b.n_channels, cache=cache)
    return acc.total, acc


def _timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t, out


def run(quick: bool = False, scale: str | None = None, repeat: int | None = None) -> dict:
    """Times of a full bucket vs adding ~10 % runs with the per-run partial cache."""
    scale = scale or ("tiny" if quick else "demo")
    repeat = repeat or 2
    b = bucket(scale, physics_only=True)
    n_base = max(1, round(len(b.runs) / 1.1))
    base, extended, new = b.runs[:n_base], b.runs, b.runs[n_base:]
    _bucket_total(b, base[:1], None)  # untimed: load the kernels, warm the page cache
    best = {"full": float("inf"), "add": float("inf"), "new": float("inf")}
    stats = {}
    BENCH_DATA.mkdir(parents=True, exist_ok=True)
    for _ in range(repeat):
        tmp = Path(tempfile.mkdtemp(prefix="bench_incremental_", dir=BENCH_DATA))
        try:
            t_full, (total_base, c1) = _timed(_bucket_total, b, base, tmp / "cache")
            t_add, (total_ext, c2) = _timed(_bucket_total, b, extended, tmp / "cache")
            cache_mb = sum(p.stat().st_size for p in (tmp / "cache").rglob("*.pkl")) / 2**20
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        t_new, _ = _timed(_bucket_total, b, new, None)
        best["full"] = min(best["full"], t_full)
        best["add"] = min(best["add"], t_add)
        best["new"] = min(best["new"], t_new)
        stats = {"full_misses": c1.computed, "full_hits": c1.reused, "add_hits": c2.reused, "add_misses": c2.computed,
                 "cache_mb": cache_mb, "base_events": total_base.n_events, "extended_events": total_ext.n_events}
    return {
        "scale": scale,
        "base_runs": len(base),
        "added_runs": len(new),
        "added_fraction_events": stats["extended_events"] / stats["base_events"] - 1.0,
        "full_bucket_s": best["full"],
        "add_runs_s": best["add"],
        "new_runs_only_s": best["new"],
        "cache_reuse_s": best["add"] - best["new"],
        "ratio_add_vs_full": best["add"] / best["full"],
        "cache_hits_full": stats["full_hits"],
        "cache_misses_full": stats["full_misses"],
        "cache_hits_add": stats["add_hits"],
        "cache_misses_add": stats["add_misses"],
        "cache_size_mb": stats["cache_mb"],
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny scale (a smoke run)")
    ap.add_argument("--scale", default=None, help="tiny, demo or large (default demo)")
    ap.add_argument("--repeat", type=int, default=None, help="best of N (default 2)")
    ns = ap.parse_args()
    for key, value in run(quick=ns.quick, scale=ns.scale, repeat=ns.repeat).items():
        print(f"{key:>26}: {value:,.4g}" if isinstance(value, float) else f"{key:>26}: {value}")
