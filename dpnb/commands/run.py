"""``dpnb run parameters/buckets/<label>.yaml``: execute a bucket's notebooks into versioned reports."""

from __future__ import annotations

import argparse
import os

__all__ = ["register", "main"]

_EPILOG = """\
exit codes:
  0  every notebook ran (or was cached); gate verdicts FAIL are printed but do not
     change the exit code unless --strict, because a failed gate is a finding for the
     reviewer (it is in the report), not a broken run
  1  a notebook FAILED to execute or was SKIPPED (an upstream failed); with --strict
     also when any gate failed
  2  invalid parameters or DAG, unwritable reports directory, or the bucket is locked
"""


def register(subparsers) -> None:
    """Add the ``run`` subcommand."""
    p = subparsers.add_parser(
        "run", help="run a bucket's notebooks (cached, parallel) into versioned HTML reports",
        description="Run the notebooks of a bucket in dependency order and write reports/<bucket>/<notebook>/v<N>/.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bucket", help="bucket file, e.g. parameters/buckets/demo.yaml")
    p.add_argument("--only", nargs="+", default=[], metavar="NAME",
                   help="run only these notebooks (their upstreams come from the latest versions)")
    p.add_argument("--jobs", "-j", type=int, default=None, help="notebooks run in parallel (default: number of cores)")
    p.add_argument("--force", action="store_true", help="run even when the content key is unchanged")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a parameter, e.g. --set notebooks.bucket_summary.title=x (repeatable)")
    p.add_argument("--reports-dir", default=None, metavar="DIR", help="write reports here instead of reports/")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="timeout per notebook in seconds (default: from parameters/pipeline.yaml)")
    p.add_argument("--lock-timeout", type=float, default=60.0, metavar="S",
                   help="wait this long for another run of the same bucket before refusing (default 60)")
    p.add_argument("--strict", action="store_true", help="exit 1 when any gate verdict is FAIL")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--executor", choices=("local", "dask"), default="local",
                   help="where notebooks and their per-run work run: local processes (default) or a Dask cluster")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="with --executor dask: a running scheduler (tcp://host:8786); default: a LocalCluster of "
                        "--jobs workers. See docs/scaling.md for HTCondor/Slurm with dask-jobqueue")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run the bucket; print one status line per notebook; return the exit code."""
    from ..pipeline.runner import RunOptions, exit_code, run_bucket

    if args.jobs is not None and args.jobs < 1:
        from ..errors import ParameterError

        msg = f"--jobs {args.jobs}: expected a positive number of parallel notebooks"
        raise ParameterError(msg)
    opts = RunOptions(only=args.only, jobs=args.jobs or os.cpu_count() or 1, force=args.force, timeout=args.timeout,
                      strict=args.strict, lock_timeout=args.lock_timeout, progress=not args.no_progress,
                      executor=args.executor, scheduler=args.scheduler)
    if args.scheduler and args.executor == "local":
        args.executor = "dask"  # a scheduler address means the Dask executor
        opts.executor, opts.scheduler = "dask", args.scheduler
    outcomes = run_bucket(args.bucket, args.overrides, opts, reports_dir=args.reports_dir)
    return exit_code(outcomes, strict=args.strict)
