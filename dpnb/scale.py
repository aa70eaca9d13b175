"""Fan-out of per-run work: local processes or a Dask cluster, with a per-run cache.

Per-run partial results (histograms, sums) are computed by a pure, picklable function of
one run's inputs, then merged exactly on the caller's side, so the executor never
changes a number: the local and the Dask executor give identical results, and a worker
that dies mid-run only makes Dask run that task again (results are keyed by run, so a
run's contribution can be neither lost nor counted twice).

``PartialCache`` stores each run's partial result under a content key (function, its
parameters, the input file's identity and dpnb's code version): adding runs to a bucket
computes only the new runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Hashable, Mapping

from .errors import PipelineError

__all__ = ["ExecutorConfig", "PartialCache", "map_runs", "file_identity", "code_version_hash", "dask_client"]


@dataclass(frozen=True)
class ExecutorConfig:
    """How per-run work is executed.

    kind: ``"local"`` (processes on this machine; ``jobs=1`` runs in-process) or ``"dask"``.
    scheduler: address of a running Dask scheduler (``tcp://host:8786``); ``None`` starts a
    ``distributed.LocalCluster`` with ``n_workers`` single-threaded worker processes.
    """

    kind: str = "local"
    jobs: int = 1
    scheduler: str | None = None
    n_workers: int = 2
    connect_timeout_s: float = 10.0
    retries: int = 2

    @classmethod
    def from_params(cls, params: Mapping | None) -> "ExecutorConfig":
        p = dict(params or {})
        kind = p.get("kind", "local")
        if kind not in ("local", "dask"):
            msg = f"executor.kind must be 'local' or 'dask', got {kind!r}"
            raise PipelineError(msg)
        return cls(
            kind=kind,
            jobs=int(p.get("jobs") or 1),
            scheduler=p.get("scheduler") or None,
            n_workers=int(p.get("n_workers") or 2),
            connect_timeout_s=float(p.get("connect_timeout_s") or 10.0),
            retries=int(p.get("retries") if p.get("retries") is not None else 2),
        )


_CODE_HASH: str | None = None


def code_version_hash() -> str:
    """sha256 over dpnb's own source files (changes whenever the code does, committed or not)."""
    global _CODE_HASH
    if _CODE_HASH is None:
        h = hashlib.sha256()
        pkg = Path(__file__).resolve().parent
        for f in sorted(pkg.rglob("*.py")):
            h.update(str(f.relative_to(pkg)).encode())
            h.update(f.read_bytes())
        _CODE_HASH = h.hexdigest()
    return _CODE_HASH


def file_identity(path: str | os.PathLike) -> dict:
    """A cheap identity of an input file (path, size, mtime in ns)."""
    st = os.stat(path)
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class PartialCache:
    """Pickled per-run partial results under content keys, written atomically."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe = self.directory / f".probe-{os.getpid()}-{uuid.uuid4().hex}"  # unique per thread too
            probe.write_bytes(b"")
            probe.unlink()
        except OSError:
            fallback = Path(tempfile.gettempdir()) / f"dpnb-partials-{os.getuid()}"
            warnings.warn(f"partial-result cache {self.directory} is not writable; using {fallback}", stacklevel=2)
            fallback.mkdir(parents=True, exist_ok=True)
            self.directory = fallback
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(func: Callable, args: tuple, kwargs: Mapping, inputs: list[str]) -> str:
        payload = {
            "func": f"{func.__module__}.{getattr(func, '__qualname__', repr(func))}",
            "args": repr(args),
            "kwargs": json.dumps(kwargs, sort_keys=True, default=repr),
            "inputs": [file_identity(p) for p in inputs],
            "code": code_version_hash(),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.pkl"

    def has(self, key: str) -> bool:
        """Whether an entry exists for ``key`` (it may still prove unreadable on :meth:`get`)."""
        return self._path(key).exists()

    def get(self, key: str) -> tuple[bool, Any]:
        path = self._path(key)
        if not path.exists():
            self.misses += 1
            return False, None
        try:
            with open(path, "rb") as fh:
                value = pickle.load(fh)
        except Exception:  # a corrupt entry is recomputed, never trusted
            self.misses += 1
            return False, None
        self.hits += 1
        return True, value

    def put(self, key: str, value: Any) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as fh:
            pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)


def dask_client(config: ExecutorConfig):
    """A ``distributed.Client``: to ``config.scheduler`` or to a new LocalCluster.

    A scheduler that does not answer raises :class:`PipelineError` within
    ``connect_timeout_s`` instead of hanging.
    """
    from distributed import Client, LocalCluster

    if config.scheduler:
        try:
            return Client(config.scheduler, timeout=f"{config.connect_timeout_s}s")
        except (OSError, TimeoutError) as exc:
            msg = (
                f"could not reach the Dask scheduler at {config.scheduler!r} within "
                f"{config.connect_timeout_s:g} s ({type(exc).__name__}: {exc}); is it running and reachable?"
            )
            raise PipelineError(msg) from None
    cluster = LocalCluster(
        n_workers=config.n_workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    return Client(cluster)


def _call(func, args, kwargs):
    return func(*args, **kwargs)


def map_runs(
    func: Callable,
    tasks: Mapping[Hashable, tuple],
    *,
    kwargs: Mapping | None = None,
    executor: ExecutorConfig | None = None,
    cache: PartialCache | None = None,
    inputs: Mapping[Hashable, list[str]] | None = None,
    client=None,
) -> dict:
    """Run ``func(*tasks[key], **kwargs)`` for every key; return ``{key: result}`` in key order.

    Results found in ``cache`` (keyed by ``func``, its arguments and the identity of
    ``inputs[key]`` files) are not recomputed; new results are stored.
    """
    executor = executor or ExecutorConfig()
    kwargs = dict(kwargs or {})
    inputs = inputs or {}
    results: dict = {}
    todo: dict = {}
    keys: dict = {}
    for k, args in tasks.items():
        if cache is not None:
            ck = cache.key(func, tuple(args), kwargs, list(inputs.get(k, [])))
            keys[k] = ck
            hit, value = cache.get(ck)
            if hit:
                results[k] = value
                continue
        todo[k] = tuple(args)

    if todo:
        if executor.kind == "dask":
            own = client is None
            client = client or dask_client(executor)
            try:
                # unique keys per call: Dask would otherwise hand back results of an earlier call
                tag = f"{getattr(func, '__name__', 'task')}-{uuid.uuid4().hex[:12]}"
                futures = {
                    k: client.submit(_call, func, a, kwargs, key=f"dpnb-{tag}-{i}",
                                     retries=executor.retries, pure=False)
                    for i, (k, a) in enumerate(todo.items())
                }
                for k, fut in futures.items():
                    results[k] = fut.result()
            finally:
                if own:
                    cluster = getattr(client, "cluster", None)
                    client.close()
                    if cluster is not None:
                        cluster.close()
        elif executor.jobs > 1 and len(todo) > 1:
            from concurrent.futures import ProcessPoolExecutor
            import multiprocessing as mp

            with ProcessPoolExecutor(max_workers=executor.jobs, mp_context=mp.get_context("spawn")) as pool:
                futs = {k: pool.submit(_call, func, a, kwargs) for k, a in todo.items()}
                for k, f in futs.items():
                    results[k] = f.result()
        else:
            for k, a in todo.items():
                results[k] = func(*a, **kwargs)
        if cache is not None:
            for k in todo:
                cache.put(keys[k], results[k])
    return {k: results[k] for k in tasks}
