"""Execute one notebook with papermill and write its report version atomically.

:func:`run_job` is the unit of work: it runs in the calling process (``--jobs 1``) or in a
worker process started by :class:`WorkerPool` (forkserver with papermill preloaded, so
starting a worker costs a fork, not an import). Kernels use the ``ipc`` transport (unix
sockets), which sidesteps jupyter_client's TCP port race under parallel runs
(nteract/papermill#511), and an in-memory IPython history; a kernel that still fails to
start is retried with back-off. The whole-notebook timeout kills the kernel, which turns
into a FAILED report that says so.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import multiprocessing.connection
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import uuid
import weakref
from pathlib import Path
from typing import Any

from ..notebook import RESULTS_SCHEMA, write_json_atomic
from ..reports import versions

__all__ = ["KERNEL_ENV", "run_job", "WorkerPool", "skip_slow_optional_imports"]

KERNEL_ENV = {"MPLBACKEND": "agg", "PYTHONHASHSEED": "0"}
KERNEL_ARGS = ["--HistoryManager.hist_file=:memory:"]
_START_RETRIES = 3
_LIVE_KERNELS: "weakref.WeakSet[Any]" = weakref.WeakSet()


def skip_slow_optional_imports() -> None:
    """Keep jsonschema (imported by nbformat) from importing ``rfc3987_syntax``.

    jsonschema imports it only for the optional ``iri`` format checks, which nbformat never
    uses, and it compiles ~40 lark grammars at import (about 1.5 s of CPU in every runner
    process). Blocking it only makes that optional import fail, as if it were not installed.
    """
    if "jsonschema" not in sys.modules and "rfc3987_syntax" not in sys.modules:
        sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]


skip_slow_optional_imports()


def _kernel_manager_class():
    """AsyncKernelManager over ipc sockets that registers itself so a timeout can kill its kernel."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class IpcKernelManager(AsyncKernelManager):
        @default("transport")
        def _default_transport(self):
            return "ipc"

        def __init__(self, **kw):
            super().__init__(**kw)
            # jupyter_client would default to "kernel-ipc" in the working directory, shared by
            # every kernel started there: give each kernel its own socket path prefix
            self.ip = os.path.join(tempfile.gettempdir(), f"dpnb-kernel-{uuid.uuid4().hex[:16]}")
            _LIVE_KERNELS.add(self)

    return IpcKernelManager


def _kill_live_kernels() -> None:
    for km in list(_LIVE_KERNELS):
        pid = getattr(getattr(km, "provisioner", None), "pid", None)
        if pid:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def _environ(extra: dict):
    """Temporarily set environment variables (kernels inherit the environment of their launcher)."""
    old = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _is_start_failure(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}"
    return any(s in text for s in ("Address already in use", "ZMQError", "Kernel died before replying",
                                   "Kernel didn't respond", "kernel_info"))


def _execute(job: dict, out_nb: Path, inject: dict) -> str | None:
    """Run the notebook; None on success, else a one-line error."""
    import papermill as pm

    logging.getLogger("papermill").setLevel(logging.ERROR)
    timed_out = threading.Event()

    def on_timeout():
        timed_out.set()
        _kill_live_kernels()

    for attempt in range(_START_RETRIES):
        timer = threading.Timer(job["timeout"], on_timeout)
        timer.daemon = True
        timer.start()
        try:
            with _environ(KERNEL_ENV):
                pm.execute_notebook(
                    str(job["nb_path"]), str(out_nb), parameters=inject, kernel_name="python3",
                    cwd=str(Path(job["nb_path"]).parent), progress_bar=False, log_output=False,
                    start_timeout=60, kernel_manager_class=_kernel_manager_class(), extra_arguments=KERNEL_ARGS,
                )
            return None
        except pm.PapermillExecutionError as exc:
            return f"{exc.ename}: {exc.evalue} (cell {exc.exec_count})"
        except Exception as exc:  # kernel death, timeout, start failure
            if timed_out.is_set():
                return f"timed out after {job['timeout']:g} s (kernel killed)"
            if _is_start_failure(exc) and attempt + 1 < _START_RETRIES:
                time.sleep(0.5 * 2**attempt)
                continue
            return f"{type(exc).__name__}: {exc}"
        finally:
            timer.cancel()
    return "kernel failed to start"  # pragma: no cover - loop always returns


def _failed_notebook(job: dict, out_nb: Path, error: str):
    """The executed notebook (or the source when nothing ran) with a first cell stating the error."""
    import nbformat

    nb = nbformat.read(str(out_nb if out_nb.exists() else job["nb_path"]), as_version=4)
    if not any(c.get("metadata", {}).get("papermill", {}).get("exception") for c in nb.cells):
        cell = nbformat.v4.new_markdown_cell(f"**Execution failed:** `{error}`")
        cell.metadata["tags"] = ["dpnb-error"]
        nb.cells.insert(0, cell)
        nbformat.write(nb, str(out_nb))
    return nb


def run_job(job: dict) -> dict:
    """Execute ``job`` (built by the runner) into a new version ``v<N>``; return its outcome.

    The version is assembled in a temporary directory and renamed last; on any exception
    the temporary directory is removed and nothing becomes visible.
    """
    import nbformat

    from ..reports.html import header_html, render_report
    from ..reports.manifest import diff_manifests

    nb_dir = Path(job["nb_dir"])
    t0 = time.time()
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0))
    tmp = versions.new_temp_dir(nb_dir)
    try:
        out_nb = tmp / "notebook.ipynb"
        inject = dict(job["parameters"], output_dir=str(tmp))
        error = _execute(job, out_nb, inject)
        nb = _failed_notebook(job, out_nb, error) if error else nbformat.read(str(out_nb), as_version=4)
        results = versions.read_json(tmp / "results.json")
        if error:
            results = {"schema": RESULTS_SCHEMA, "notebook": job["name"], "bucket": job["bucket"], "status": "failed",
                       "error": error, "values": {}, "gates": {}, "tables": {}, "notes": []}
            write_json_atomic(tmp / "results.json", results)
        elif results is None:
            results = {"schema": RESULTS_SCHEMA, "notebook": job["name"], "bucket": job["bucket"], "status": "warn",
                       "values": {}, "gates": {}, "tables": {},
                       "notes": ["notebook recorded no results (no ctx.save())"]}
            write_json_atomic(tmp / "results.json", results)
        status = "FAILED" if error else str(results.get("status", "pass")).upper()
        manifest = dict(job["manifest"], start_time=start, status=status, error=error)
        n = job["version"]
        for _ in range(5):
            prev = versions.latest_version(nb_dir)
            n = max(n, (prev or 0) + 1)
            prev_manifest = versions.read_json(versions.version_dir(nb_dir, prev) / "manifest.json") if prev else None
            manifest.update(version=n, previous_version=prev, duration_s=round(time.time() - t0, 3))
            diff = diff_manifests(prev_manifest, manifest)
            manifest["changes"] = diff
            write_json_atomic(tmp / "manifest.json", manifest)
            (tmp / "report.html").write_text(render_report(nb, header_html(manifest, results, diff)))
            try:
                final = versions.commit_version(tmp, nb_dir, n)
                break
            except FileExistsError:
                continue  # an orphaned worker of a killed run took v<n>: take the next number
        else:
            msg = f"{nb_dir}: could not allocate a new version number"
            raise RuntimeError(msg)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"name": job["name"], "status": status, "version": n, "dir": str(final), "error": error,
            "duration_s": manifest["duration_s"]}


# --- worker processes ----------------------------------------------------------------------
def _die_with_runner(runner_pid: int, poll_s: float = 0.5) -> None:
    """Exit (killing the kernel) when the runner is gone, so a ``kill -9`` of ``dpnb run`` leaves no
    orphan worker that would commit a version behind the next run's back. (The forkserver, the
    worker's parent, outlives the runner while any worker lives, so PDEATHSIG would not fire.)"""

    def watch():
        while True:
            time.sleep(poll_s)
            try:
                os.kill(runner_pid, 0)
            except ProcessLookupError:
                _kill_live_kernels()
                os._exit(1)
            except PermissionError:
                pass

    threading.Thread(target=watch, daemon=True, name="dpnb-runner-watch").start()


def _worker_entry(conn, job: dict) -> None:
    _die_with_runner(job["runner_pid"])
    # the forkserver's environment dates from its start; use the parent's current one
    if job.get("env") is not None:
        os.environ.clear()
        os.environ.update(job["env"])
    try:
        res = run_job(job)
    except BaseException as exc:  # report, never hang the parent
        res = {"name": job["name"], "status": "FAILED", "version": None, "dir": None,
               "error": f"internal error: {type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    conn.send(res)
    conn.close()


class WorkerPool:
    """At most ``jobs`` notebooks at once, each in its own worker process."""

    def __init__(self, jobs: int):
        self.jobs = max(1, int(jobs))
        self.ctx = mp.get_context("forkserver")
        self.ctx.set_forkserver_preload(["dpnb.pipeline.execute", "dpnb.pipeline._preload"])
        self.running: dict[str, tuple[Any, Any, float, float]] = {}

    @property
    def free(self) -> int:
        return self.jobs - len(self.running)

    def start(self, job: dict) -> None:
        job = dict(job, env=dict(os.environ), runner_pid=os.getpid())
        recv, send = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(target=_worker_entry, args=(send, job), name=f"dpnb-{job['name']}")
        proc.start()
        send.close()
        # backstop beyond the in-worker timeout: rendering, or a wedged worker
        self.running[job["name"]] = (proc, recv, time.monotonic(), float(job["timeout"]) + 120.0)

    def wait(self, poll_s: float = 0.5) -> list[dict]:
        """Outcomes of the workers that finished (possibly none) within ``poll_s``."""
        if not self.running:
            return []
        sentinels = {p.sentinel: name for name, (p, _, _, _) in self.running.items()}
        mp.connection.wait(list(sentinels), timeout=poll_s)
        done = []
        for name, (proc, recv, t0, limit) in list(self.running.items()):
            res = None
            if recv.poll():
                try:
                    res = recv.recv()
                except EOFError:
                    res = None
            elif proc.is_alive() and time.monotonic() - t0 > limit:
                _kill_tree(proc.pid)
                res = {"name": name, "status": "FAILED", "version": None, "dir": None,
                       "error": f"worker exceeded {limit:g} s and was killed"}
            elif proc.is_alive():
                continue
            proc.join(5)
            if res is None:
                res = {"name": name, "status": "FAILED", "version": None, "dir": None,
                       "error": f"worker process died (exit code {proc.exitcode})"}
            recv.close()
            del self.running[name]
            done.append(res)
        return done

    def terminate(self) -> None:
        for proc, recv, _, _ in self.running.values():
            _kill_tree(proc.pid)
            recv.close()
        self.running.clear()


def _kill_tree(pid: int) -> None:
    import psutil

    try:
        parent = psutil.Process(pid)
        procs = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
