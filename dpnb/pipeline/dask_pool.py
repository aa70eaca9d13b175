"""Independent notebooks on a Dask cluster (``dpnb run --executor dask``).

:class:`DaskPool` has the interface of :class:`~dpnb.pipeline.execute.WorkerPool`
(``start``, ``running``, ``free``, ``wait``, ``terminate``), so the runner schedules the
DAG the same way; each notebook runs as one task (``run_job``) on a worker. Workers must
see the same file system as the runner (true for a LocalCluster and for batch clusters
on a shared file system). The notebooks' own per-run work goes to the same cluster: the
runner passes its scheduler address as ``executor.scheduler``.
"""

from __future__ import annotations

import traceback
import uuid

__all__ = ["DaskPool"]


def _run_notebook_task(job: dict) -> dict:
    from distributed import secede

    from .execute import run_job

    # a notebook mostly waits for its kernel, whose per-run tasks go to this same cluster:
    # leave the worker's thread pool so those tasks always find a free slot (no deadlock)
    secede()

    try:
        return run_job(job)
    except BaseException as exc:  # report, never lose the outcome
        return {"name": job["name"], "status": "FAILED", "version": None, "dir": None,
                "error": f"internal error: {type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}


class DaskPool:
    """At most ``jobs`` notebooks at once, each a task on the Dask cluster of ``client``."""

    def __init__(self, client, jobs: int):
        self.client = client
        self.jobs = max(1, int(jobs))
        self.running: dict = {}

    @property
    def free(self) -> int:
        return self.jobs - len(self.running)

    def start(self, job: dict) -> None:
        # a worker keeps its own environment (a LocalCluster's workers inherit the runner's)
        job = dict(job, env=None)
        fut = self.client.submit(_run_notebook_task, job, key=f"dpnb-nb-{job['name']}-{uuid.uuid4().hex[:8]}",
                                 pure=False, retries=1)
        self.running[job["name"]] = fut

    def wait(self, poll_s: float = 0.5) -> list[dict]:
        from distributed import wait as dask_wait

        if not self.running:
            return []
        try:
            dask_wait(list(self.running.values()), timeout=poll_s, return_when="FIRST_COMPLETED")
        except TimeoutError:
            return []
        done = []
        for name, fut in list(self.running.items()):
            if not fut.done():
                continue
            try:
                res = fut.result()
            except Exception as exc:  # the task itself failed on the cluster (e.g. the worker died twice)
                res = {"name": name, "status": "FAILED", "version": None, "dir": None,
                       "error": f"Dask task failed: {type(exc).__name__}: {exc}"}
            del self.running[name]
            done.append(res)
        return done

    def terminate(self) -> None:
        for fut in self.running.values():
            fut.cancel()
        self.running.clear()
