"""Runner overhead per notebook and cached-rerun time of a bucket.

Baseline (same run, same machine): each trivial notebook executed with plain
``papermill.execute_notebook`` and the same injected parameters. Runner overhead per
notebook = (``dpnb run`` time per notebook) - (baseline time of that notebook): content
key, version directory, manifest, report.html, index. Targets: median overhead <= 1.0 s;
cached rerun of a bucket <= 2 s (in-process, and as a ``dpnb run`` command).

    python benchmarks/bench_runner.py [--quick]
"""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))


def _project(root: Path, n: int) -> Path:
    from helpers_pipeline import make_project

    bodies = {f"nb{i:02d}": f'ctx.record("i", {i})\nctx.gate("ok", {i}, 100, "<")' for i in range(n)}
    return make_project(root, bodies, {name: {"inputs": ["raw"]} for name in bodies})


def _baseline(root: Path, bfile: Path, names: list[str]) -> list[float]:
    """Plain papermill, same kernel settings and injected parameters."""
    import logging

    import papermill as pm

    logging.getLogger("papermill").setLevel(logging.ERROR)

    from dpnb.params import resolve_bucket
    from dpnb.pipeline.execute import KERNEL_ARGS, KERNEL_ENV, _environ, _kernel_manager_class

    params = resolve_bucket(bfile, root=root)
    times = []
    for name in names:
        out = Path(tempfile.mkdtemp(prefix="baseline-", dir=root))
        t0 = time.perf_counter()
        with _environ(KERNEL_ENV):
            pm.execute_notebook(str(root / "notebooks" / f"{name}.ipynb"), str(out / "nb.ipynb"),
                                parameters=dict(params, dpnb_resolved=True, output_dir=str(out), upstream={}),
                                kernel_name="python3", cwd=str(root / "notebooks"), progress_bar=False,
                                kernel_manager_class=_kernel_manager_class(), extra_arguments=KERNEL_ARGS)
        times.append(time.perf_counter() - t0)
    return times


def _cpu_per_call(fn, repeat: int) -> list[float]:
    """CPU seconds (user + system) of this process per call of ``fn``."""
    out = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        out.append(time.process_time() - t0)
    return out


def run(quick: bool = False) -> dict:
    """Measure and print; return the figures (seconds)."""
    from dpnb.pipeline.runner import RunOptions, run_bucket

    n = 3 if quick else 6
    with tempfile.TemporaryDirectory(prefix="bench-runner-") as tmp:
        root = Path(tmp)
        os.environ["DPNB_ROOT"] = str(root)
        bfile = _project(root, n)
        names = [f"nb{i:02d}" for i in range(n)]
        # warm-up: imports of papermill/nbconvert and the first kernel's disk caches
        _baseline(root, bfile, names[:1])
        base = _baseline(root, bfile, names)
        base_cpu = _cpu_per_call(lambda: _baseline(root, bfile, names[:1]), 3)
        per_nb = []
        for name in names:  # one notebook per run: the full per-notebook cost of `dpnb run`
            t0 = time.perf_counter()
            run_bucket(bfile, [], RunOptions(only=[name], jobs=1, force=True, progress=False), out=io.StringIO())
            per_nb.append(time.perf_counter() - t0)
        overhead = [r - b for r, b in zip(per_nb, base)]
        runner_cpu = _cpu_per_call(lambda: run_bucket(bfile, [], RunOptions(only=[names[0]], jobs=1, force=True,
                                                                           progress=False), out=io.StringIO()), 3)
        t0 = time.perf_counter()
        run_bucket(bfile, [], RunOptions(jobs=2, force=True, progress=False), out=io.StringIO())
        parallel = time.perf_counter() - t0
        for _ in range(3):  # a concurrent edit of dpnb/ (shared tree) changes the code key: settle first
            t0 = time.perf_counter()
            outs = run_bucket(bfile, [], RunOptions(jobs=2, progress=False), out=io.StringIO())
            cached = time.perf_counter() - t0
            if all(o.cached for o in outs):
                break
        assert all(o.cached for o in outs), [o.line() for o in outs]
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "dpnb.cli", "run", str(bfile), "--no-progress"],
                              capture_output=True, text=True, env=dict(os.environ))
        cached_cli = time.perf_counter() - t0
        assert proc.returncode == 0 and proc.stdout.count("cached") == n, proc.stdout + proc.stderr
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import dpnb.cli; dpnb.cli.build_parser()"], check=True)
        cli_import = time.perf_counter() - t0
        # the same cached rerun in a fresh interpreter without building the whole CLI parser
        code = ("import sys; from dpnb.pipeline.runner import RunOptions, run_bucket; "
                f"o = run_bucket({str(bfile)!r}, [], RunOptions(progress=False)); "
                "sys.exit(0 if all(x.cached for x in o) else 1)")
        t0 = time.perf_counter()
        fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
        cached_fresh = time.perf_counter() - t0
        assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    figures = {
        "notebooks": n,
        "baseline_papermill_median_s": statistics.median(base),
        "runner_per_notebook_median_s": statistics.median(per_nb),
        "runner_overhead_median_s": statistics.median(overhead),
        "runner_overhead_ratio": statistics.median(per_nb) / statistics.median(base),
        # CPU of the runner's own process (kernels excluded): insensitive to other load on the machine
        "runner_overhead_cpu_median_s": statistics.median(runner_cpu) - statistics.median(base_cpu),
        "bucket_parallel_jobs2_s": parallel,
        "cached_rerun_in_process_s": cached,
        "cached_rerun_cli_s": cached_cli,
        "cached_rerun_fresh_process_s": cached_fresh,
        "cli_startup_s": cli_import,
        "load_average_1min": os.getloadavg()[0],
    }
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}, indent=1))
    return figures


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
