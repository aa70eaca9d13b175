"""Run every benchmark in this folder and print one table.

Each ``bench_*.py`` exposes ``run(quick=False) -> dict``: figure name -> value. Figures
are ratios against a baseline measured in the same run wherever a baseline exists (these
machines are shared and noisy), so compare ratios, not seconds. The latest table is
written to ``benchmarks/README.md`` (between the RESULTS markers) with the machine
description and package versions.

Usage: ``python benchmarks/run.py [--quick] [--only NAME ...] [--no-write]``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
START, END = "<!-- RESULTS START -->", "<!-- RESULTS END -->"


def machine() -> dict:
    import numpy

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "numpy": numpy.__version__,
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as fh:
            info["memory"] = fh.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    for mod in ("numba", "uproot", "awkward", "pandas", "boost_histogram", "dask"):
        try:
            info[mod] = importlib.import_module(mod).__version__
        except Exception:
            info[mod] = "absent"
    return info


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    return str(v)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run, figures not representative)")
    ap.add_argument("--only", nargs="*", default=None, help="benchmark module names without bench_ (e.g. hist lumi)")
    ap.add_argument("--no-write", action="store_true", help="do not update benchmarks/README.md")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))
    files = sorted(HERE.glob("bench_*.py"))
    if args.only:
        files = [f for f in files if f.stem[len("bench_"):] in args.only]
    rows: list[tuple[str, str, str]] = []
    failures = 0
    for f in files:
        spec = importlib.util.spec_from_file_location(f.stem, f)
        mod = importlib.util.module_from_spec(spec)
        t0 = time.perf_counter()
        try:
            spec.loader.exec_module(mod)
            figures = mod.run(quick=args.quick)
        except Exception:
            failures += 1
            traceback.print_exc()
            rows.append((f.stem, "ERROR", "see traceback above"))
            continue
        print(f"# {f.stem}: {time.perf_counter() - t0:.1f} s", flush=True)
        for k, v in (figures or {}).items():
            rows.append((f.stem, str(k), _fmt(v)))
    width = max((len(r[1]) for r in rows), default=10)
    table = ["| benchmark | figure | value |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    print()
    for a, b, c in rows:
        print(f"{a:<18} {b:<{width}} {c}")
    if not args.no_write and not args.quick:
        info = machine()
        text = "\n".join(
            [START, "", f"Measured {time.strftime('%Y-%m-%d')} on: " + ", ".join(f"{k} {v}" for k, v in info.items()), ""]
            + table + ["", END]
        )
        readme = HERE / "README.md"
        old = readme.read_text() if readme.exists() else "# Benchmarks\n\n" + START + "\n" + END + "\n"
        if START in old and END in old:
            new = old.split(START)[0] + text + old.split(END, 1)[1]
        else:
            new = old + "\n" + text + "\n"
        readme.write_text(new)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
