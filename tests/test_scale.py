"""Per-run fan-out: local vs Dask give identical results, cache reuse, faults."""

from __future__ import annotations

import os
import sys
import time

import cloudpickle
import numpy as np
import pytest

from dpnb.errors import PipelineError
from dpnb.scale import ExecutorConfig, PartialCache, map_runs

# workers import nothing from tests/: ship this module's functions by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def partial_histogram(seed: int, n: int) -> np.ndarray:
    """A run's partial histogram: integer counts, so merging by summing is exact."""
    rng = np.random.default_rng(seed)
    return np.histogram(rng.normal(0.0, 1.0, n), bins=50, range=(-5, 5))[0].astype(np.int64)


def dies_once(seed: int, n: int, marker: str) -> np.ndarray:
    """Kill the worker process the first time it is called for seed 3 (a crash mid-run)."""
    if seed == 3 and not os.path.exists(marker):
        with open(marker, "w") as fh:
            fh.write(str(os.getpid()))
        os._exit(1)
    return partial_histogram(seed, n)


TASKS = {("run", s): (s, 20_000) for s in range(6)}


def _merged(results: dict) -> np.ndarray:
    return np.sum(list(results.values()), axis=0)


def test_local_sequential_and_processes_agree():
    a = map_runs(partial_histogram, TASKS)
    b = map_runs(partial_histogram, TASKS, executor=ExecutorConfig(jobs=2))
    assert list(a) == list(TASKS)
    for k in TASKS:
        np.testing.assert_array_equal(a[k], b[k])
    assert _merged(a).sum() == 6 * 20_000 - sum(
        int(np.sum(np.abs(np.random.default_rng(s).normal(0, 1, 20_000)) >= 5)) for s in range(6)
    )


def test_cache_reuses_old_runs_and_computes_new_ones(tmp_path):
    cache = PartialCache(tmp_path / "cache")
    first = map_runs(partial_histogram, TASKS, cache=cache)
    assert (cache.hits, cache.misses) == (0, 6)
    more = dict(TASKS)
    more[("run", 6)] = (6, 20_000)
    cache2 = PartialCache(tmp_path / "cache")
    second = map_runs(partial_histogram, more, cache=cache2)
    assert (cache2.hits, cache2.misses) == (6, 1)
    for k in TASKS:
        np.testing.assert_array_equal(first[k], second[k])
    np.testing.assert_array_equal(second[("run", 6)], partial_histogram(6, 20_000))


def test_cache_key_follows_input_file(tmp_path):
    f = tmp_path / "input.bin"
    f.write_bytes(b"a")
    k1 = PartialCache.key(partial_histogram, (1, 2), {}, [str(f)])
    time.sleep(0.01)
    f.write_bytes(b"ab")
    k2 = PartialCache.key(partial_histogram, (1, 2), {}, [str(f)])
    k3 = PartialCache.key(partial_histogram, (1, 3), {}, [str(f)])
    assert len({k1, k2, k3}) == 3


def test_unwritable_cache_falls_back_with_warning(tmp_path):
    # a directory below a regular file cannot be created, even by root
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.warns(UserWarning, match="not writable"):
        cache = PartialCache(blocker / "cache")
    assert cache.directory != blocker / "cache"
    cache.put("ab" * 32, {"x": 1})
    assert cache.get("ab" * 32) == (True, {"x": 1})


@pytest.mark.slow
def test_dask_local_cluster_identical_and_survives_a_killed_worker(tmp_path):
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster

    local = map_runs(partial_histogram, TASKS)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            on_dask = map_runs(partial_histogram, TASKS, executor=ExecutorConfig(kind="dask"), client=client)
            marker = str(tmp_path / "died")
            with_fault = map_runs(dies_once, TASKS, kwargs={"marker": marker},
                                  executor=ExecutorConfig(kind="dask", retries=2), client=client)
    assert os.path.exists(marker), "the fault was not injected"
    for k in TASKS:
        np.testing.assert_array_equal(local[k], on_dask[k])
        np.testing.assert_array_equal(local[k], with_fault[k])
    # merged exactly once per run: the total equals the independent total
    np.testing.assert_array_equal(_merged(with_fault), _merged(local))


def test_unreachable_scheduler_fails_fast():
    t0 = time.monotonic()
    with pytest.raises(PipelineError, match="could not reach the Dask scheduler"):
        map_runs(partial_histogram, TASKS,
                 executor=ExecutorConfig(kind="dask", scheduler="tcp://127.0.0.1:1", connect_timeout_s=2))
    assert time.monotonic() - t0 < 30
