"""Shared benchmark helpers: timing with repeats and the machine's memory read bandwidth."""

from __future__ import annotations

import time

import numpy as np


def best_time(func, *args, repeat: int = 3, **kwargs) -> float:
    """Best wall time in seconds of ``repeat`` calls (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        func(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return best


def memory_read_bandwidth(n_bytes: int = 800_000_000, repeat: int = 3) -> float:
    """Memory read bandwidth in bytes/s: a numba streaming reduction over a large float64 array.

    The array is ~8x a typical last-level cache, so the sum is bound by reading memory.
    Uses as many threads as the machine has (the bandwidth a parallel kernel can reach).
    """
    from dpnb.kernels._jit import njit, prange

    @njit(parallel=True, cache=False, fastmath={"reassoc"})  # reassoc lets the sum vectorise
    def _sum(a):
        s = 0.0
        for i in prange(a.shape[0]):
            s += a[i]
        return s

    a = np.ones(n_bytes // 8)
    _sum(a[:1000])
    t = best_time(_sum, a, repeat=repeat)
    return a.nbytes / t
