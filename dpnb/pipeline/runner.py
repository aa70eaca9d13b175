"""Run a bucket: resolve parameters, load the DAG, decide cache hits, schedule notebooks.

Order of work (``run_bucket``): parameters are resolved and validated and the DAG is
checked before anything is written; then the bucket's reports directory is checked for
writability, locked, and cleaned of leftovers of killed runs. Notebooks are then
scheduled in dependency order: each notebook's content key is computed once its
upstreams are settled (their ``results.json`` is part of the key); an unchanged key is a
cache hit; otherwise the notebook runs (in-process for ``jobs == 1``, else in worker
processes). A FAILED or SKIPPED upstream makes its dependents SKIPPED unless they are
``always_run`` roll-ups. Finally ``reports/index.html`` is rewritten.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, TextIO

from ..errors import PipelineError
from ..params import project_root, resolve_bucket
from ..reports import versions
from . import cache
from .graph import Graph, load_graph
from .lock import BucketLock

__all__ = ["RunOptions", "Outcome", "run_bucket", "exit_code", "prepare"]

GOOD = ("PASS", "WARN", "FAIL")


@dataclass
class RunOptions:
    only: Sequence[str] = ()
    jobs: int | None = None
    force: bool = False
    timeout: float | None = None
    strict: bool = False
    lock_timeout: float = 60.0
    progress: bool = True
    executor: str = "local"  # local | dask
    scheduler: str | None = None  # Dask scheduler address; None = a LocalCluster of `jobs` workers


@dataclass
class Outcome:
    """What happened to one notebook in this run."""

    name: str
    status: str  # PASS WARN FAIL FAILED SKIPPED
    version: int | None = None
    dir: str | None = None
    cached: bool = False
    duration_s: float | None = None
    reason: str | None = None
    results_sha256: str | None = None

    def line(self) -> str:
        v = f"v{self.version}" if self.version else "-"
        if self.cached:
            return f"cached {v:<5} {self.name:<32} ({self.status})"
        if self.status == "SKIPPED":
            return f"{'SKIPPED':<12} {self.name:<32} {self.reason or ''}"
        extra = f"{self.duration_s:7.1f} s" if self.duration_s is not None else ""
        err = f"  {self.reason}" if self.reason else ""
        return f"{self.status:<6} {v:<5} {self.name:<32} {extra}{err}"


@dataclass
class Prepared:
    params: dict
    root: Path
    graph: Graph
    selected: list[str]
    bucket_dir: Path
    timeout: float | None = None  # --timeout: replaces every notebook's own timeout


def prepare(bucket_file: str | os.PathLike, overrides: Sequence[str] = (), only: Sequence[str] = (),
            reports_dir: str | os.PathLike | None = None) -> Prepared:
    """Everything checked before a notebook starts; raises ParameterError / PipelineError."""
    bucket_file = Path(bucket_file)
    root = project_root(bucket_file.resolve().parent if bucket_file.exists() else None)
    ov = list(overrides)
    if reports_dir is not None:
        ov.append({"reports_dir": str(Path(reports_dir).resolve())})
    params = resolve_bucket(bucket_file, ov, root=root)
    graph = load_graph(root)
    unknown = [n for n in only if n not in graph.specs]
    if unknown:
        from ..errors import nearest

        hints = "; ".join(f"{n!r} (did you mean {nearest(n, graph.specs)[0]!r}?)" for n in unknown)
        msg = f"--only: unknown notebook {hints}; notebooks in {graph.source}: {', '.join(graph.order)}"
        raise PipelineError(msg)
    selected = [n for n in graph.order if not only or n in only]
    bucket_dir = Path(params["reports_dir"]) / params["label"]
    _check_writable(bucket_dir)
    return Prepared(params=params, root=root, graph=graph, selected=selected, bucket_dir=bucket_dir)


def _check_writable(bucket_dir: Path) -> None:
    try:
        bucket_dir.mkdir(parents=True, exist_ok=True)
        probe = bucket_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        msg = f"{bucket_dir}: reports directory is not writable ({exc.strerror or exc}); expected a writable directory"
        raise PipelineError(msg) from None


def _latest(nb_dir: Path) -> tuple[int | None, dict | None]:
    n = versions.latest_version(nb_dir)
    if n is None:
        return None, None
    return n, versions.read_json(versions.version_dir(nb_dir, n) / "manifest.json")


def _results_sha(vdir: Path) -> str | None:
    p = Path(vdir) / "results.json"
    return cache.sha256_bytes(p.read_bytes()) if p.is_file() else None


def exit_code(outcomes: Sequence[Outcome], strict: bool = False) -> int:
    """1 if a notebook FAILED or was SKIPPED (or, with ``strict``, a gate failed), else 0."""
    if any(o.status in ("FAILED", "SKIPPED") for o in outcomes):
        return 1
    if strict and any(o.status == "FAIL" for o in outcomes):
        return 1
    return 0


def run_bucket(bucket_file: str | os.PathLike, overrides: Sequence[str] = (), options: RunOptions | None = None,
               reports_dir: str | os.PathLike | None = None, out: TextIO | None = None) -> list[Outcome]:
    """Run the bucket (see the module docstring); return one :class:`Outcome` per selected notebook.

    With ``jobs > 1`` notebooks run in multiprocessing (forkserver) workers, so a script calling
    this needs the usual ``if __name__ == "__main__":`` guard; the ``dpnb`` command has it.
    Raises ParameterError / PipelineError / LockError (exit code 2 in the CLI) before running anything.
    """
    options = options or RunOptions()
    out = out or sys.stdout
    from .execute import skip_slow_optional_imports

    skip_slow_optional_imports()
    overrides = list(overrides)
    if options.executor not in ("local", "dask"):
        msg = f"--executor {options.executor!r}: expected 'local' or 'dask'"
        raise PipelineError(msg)
    if options.executor == "dask":
        # validate before starting a cluster; then point the notebooks' per-run work at it
        prepare(bucket_file, overrides, options.only, reports_dir)
    client = _dask_client(options) if options.executor == "dask" else None
    try:
        if client is not None:
            overrides.append({"executor": {"kind": "dask", "scheduler": client.scheduler.address}})
        prep = prepare(bucket_file, overrides, options.only, reports_dir)
        prep.timeout = options.timeout
        with BucketLock(prep.bucket_dir, timeout_s=options.lock_timeout):
            versions.clean_leftovers(prep.bucket_dir)
            outcomes = _schedule(prep, options, out, client)
            from ..reports.index import write_index

            index = write_index(Path(prep.params["reports_dir"]), order=prep.graph.order)
    finally:
        if client is not None:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None:
                cluster.close()
    for o in outcomes:
        print(o.line(), file=out)
    print(f"index: {index}", file=out)
    return outcomes


def _dask_client(options: RunOptions):
    import logging

    from ..scale import ExecutorConfig, dask_client

    for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.worker"):
        logging.getLogger(name).setLevel(logging.WARNING)  # the progress lines are ours

    jobs = options.jobs or os.cpu_count() or 1
    return dask_client(ExecutorConfig(kind="dask", scheduler=options.scheduler, n_workers=max(1, jobs)))


def _schedule(prep: Prepared, options: RunOptions, out: TextIO, client=None) -> list[Outcome]:
    graph, params = prep.graph, prep.params
    label = params["label"]
    hashes = cache.FileHashCache(prep.bucket_dir / ".file_hashes.json")
    code = cache.code_version()
    git: dict | None = None
    settled: dict[str, Outcome] = {}

    # upstreams outside the selection come from their latest version
    for name in sorted(graph.upstream_closure(prep.selected) - set(prep.selected)):
        n, man = _latest(prep.bucket_dir / name)
        if n is None:
            needing = [s for s in prep.selected if name in graph.specs[s].depends_on and not graph.specs[s].always_run]
            if needing:
                msg = (f"--only {' '.join(needing)}: upstream notebook {name!r} has no version in "
                       f"{prep.bucket_dir / name}; run it first or add --only {name}")
                raise PipelineError(msg)
            continue
        vdir = versions.version_dir(prep.bucket_dir / name, n)
        settled[name] = Outcome(name, (man or {}).get("status", "PASS"), n, str(vdir), cached=True,
                                results_sha256=_results_sha(vdir))
        if options.only:
            print(f"using upstream {name} v{n} ({settled[name].status})", file=out)

    pending = list(prep.selected)
    jobs = options.jobs or os.cpu_count() or 1
    pool = None
    if client is not None:
        from .dask_pool import DaskPool

        pool = DaskPool(client, jobs)
    elif jobs > 1 and len(pending) > 1:
        from .execute import WorkerPool

        pool = WorkerPool(jobs)
    from tqdm import tqdm

    bar = tqdm(total=len(pending), desc=f"bucket {label}", unit="nb", file=sys.stderr, disable=not options.progress,
               leave=False)
    results: dict[str, Outcome] = {}
    try:
        while pending or (pool and pool.running):
            launched = False
            for name in list(pending):
                spec = graph.specs[name]
                deps = spec.depends_on
                if any(d in pending or (pool and d in pool.running) for d in deps if d in prep.selected):
                    continue
                bad = [d for d in deps if d in settled and settled[d].status in ("FAILED", "SKIPPED")]
                if bad and not spec.always_run:
                    pending.remove(name)
                    o = Outcome(name, "SKIPPED", reason=f"upstream {', '.join(bad)} {settled[bad[0]].status}")
                    versions.write_last_run(prep.bucket_dir / name, {"status": "SKIPPED", "reason": o.reason,
                                                                     "time": _now()})
                    settled[name] = results[name] = o
                    bar.update(1)
                    continue
                job = _make_job(prep, spec, settled, hashes, code)
                nb_dir = prep.bucket_dir / name
                n, man = _latest(nb_dir)
                if (not options.force and man and man.get("content_key") == job["manifest"]["content_key"]
                        and man.get("status") != "FAILED"):
                    pending.remove(name)
                    vdir = versions.version_dir(nb_dir, n)
                    o = Outcome(name, man.get("status", "PASS"), n, str(vdir), cached=True,
                                results_sha256=_results_sha(vdir))
                    _record_last(nb_dir, o)
                    settled[name] = results[name] = o
                    bar.update(1)
                    launched = True
                    continue
                if pool and pool.free <= 0:
                    continue
                if git is None:
                    git = cache.git_state(prep.root)
                job["manifest"]["code"].update(git_commit=git["commit"], git_dirty=git["dirty"])
                job["version"] = (n or 0) + 1
                pending.remove(name)
                launched = True
                if pool:
                    pool.start(job)
                else:
                    res = _run_inline(job)
                    _settle(prep, res, settled, results, bar)
            hashes.save()
            if pool and not launched:
                for res in pool.wait():
                    _settle(prep, res, settled, results, bar)
    finally:
        if pool:
            pool.terminate()
        bar.close()
        hashes.save()
    return [results[n] for n in prep.selected if n in results]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _record_last(nb_dir: Path, o: Outcome) -> None:
    """Update ``last_run.json`` only when the outcome differs (a cached rerun writes nothing)."""
    entry = {"status": o.status, "version": o.version, "cached": o.cached, "reason": o.reason}
    old = versions.read_last_run(nb_dir) or {}
    if {k: old.get(k) for k in entry} != entry:
        versions.write_last_run(nb_dir, dict(entry, time=_now()))


def _run_inline(job: dict) -> dict:
    from .execute import run_job

    try:
        return run_job(job)
    except Exception as exc:  # an internal error fails this notebook, not the bucket
        return {"name": job["name"], "status": "FAILED", "version": None, "dir": None,
                "error": f"internal error: {type(exc).__name__}: {exc}"}


def _settle(prep: Prepared, res: dict, settled: dict, results: dict, bar) -> None:
    name = res["name"]
    o = Outcome(name, res["status"], res.get("version"), res.get("dir"), duration_s=res.get("duration_s"),
                reason=res.get("error"), results_sha256=_results_sha(res["dir"]) if res.get("dir") else None)
    _record_last(prep.bucket_dir / name, o)
    settled[name] = results[name] = o
    bar.update(1)


def _make_job(prep: Prepared, spec, settled: dict, hashes: cache.FileHashCache, code: dict) -> dict:
    """Everything a worker needs, including the content key and the manifest's provenance."""
    from . import graph as _graph

    params = prep.params
    nb = _graph.read_notebook(spec.path)
    source = cache.notebook_source_hash(nb)
    kparams = cache.key_parameters(params, spec.name)
    inputs = []
    for key in spec.inputs:
        inputs.extend(hashes.hash_tree(params["data"][key]))
    upstream = {d: settled[d] for d in spec.depends_on if d in settled and settled[d].dir}
    up_hashes = {d: o.results_sha256 for d, o in upstream.items()}
    key = cache.content_key(source, kparams, inputs, code, up_hashes)
    inject = dict(params, dpnb_resolved=True, upstream={d: o.dir for d, o in upstream.items()})
    manifest = {
        "bucket": params["label"], "notebook": spec.name, "notebook_path": str(spec.path),
        "content_key": key,
        "key_parts": {"source": source, "params": cache.sha256_bytes(cache.canonical_json(kparams).encode()),
                      "inputs": cache.sha256_bytes(cache.canonical_json(inputs).encode()),
                      "code": code["source_sha256"], "upstream": up_hashes},
        "parameters": kparams, "inputs": inputs,
        "upstream": {d: {"version": o.version, "results_sha256": o.results_sha256, "status": o.status}
                     for d, o in upstream.items()},
        "code": dict(code), "packages": _packages(), "timeout_s": spec.timeout,
    }
    return {"name": spec.name, "bucket": params["label"], "nb_path": str(spec.path),
            "nb_dir": str(prep.bucket_dir / spec.name), "timeout": float(prep.timeout or spec.timeout),
            "parameters": inject, "manifest": manifest, "version": 1}


_PKG: dict | None = None


def _packages() -> dict:
    global _PKG
    if _PKG is None:
        from ..reports.manifest import package_versions

        _PKG = package_versions()
    return _PKG
