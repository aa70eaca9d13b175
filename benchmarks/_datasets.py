"""Toy datasets shared by the calibration benchmarks (e2e, memory, incremental).

Each dataset is generated once into ``$DPNB_BENCH_DATA`` (default ``/tmp/dpnb-bench``)
with ``seed=1``; :func:`dpnb.simulate.make_dataset` hands back an existing identical
dataset untouched, so later runs only pay for reading. Sizes (seed 1):

* ``tiny``  7 runs, ~5k events, ~2e5 hits, 512 channels (``quick=True`` runs);
* ``demo``  43 runs (40 physics + 3 cosmic), ~70k events, ~1.8e7 hits, 14,336 channels,
  ~130 MB of raw files; ~30 s to generate;
* ``large`` 125 runs, ~6e5 events, ~1.5e8 hits, same geometry; 5-15 min to generate.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BENCH_DATA", "Bucket", "dataset", "bucket", "prefix_with_fraction"]

BENCH_DATA = Path(os.environ.get("DPNB_BENCH_DATA", "/tmp/dpnb-bench"))
SEED = 1


@dataclass(frozen=True)
class Bucket:
    """Runs of one dataset: their files and sizes (from ``runs.csv``)."""

    root: Path
    n_channels: int
    runs: tuple  # ((exp, run), ...)
    files: tuple  # raw file per run, same order
    n_events: int

    def subset(self, runs) -> "Bucket":
        keep = set(runs)
        pairs = [(r, f) for r, f in zip(self.runs, self.files) if r in keep]
        events = _events_by_run(self.root)
        return Bucket(self.root, self.n_channels, tuple(r for r, _ in pairs), tuple(f for _, f in pairs),
                      sum(events[r] for r, _ in pairs))


def dataset(scale: str) -> Path:
    """Path of the benchmark dataset of ``scale`` (generated on first use)."""
    from dpnb.simulate import make_dataset

    return make_dataset(BENCH_DATA / scale, scale, seed=SEED)


def _events_by_run(root: Path) -> dict:
    with open(root / "runs.csv", newline="") as fh:
        return {(int(r["exp"]), int(r["run"])): int(r["n_events"]) for r in csv.DictReader(fh)}


def bucket(scale: str, *, physics_only: bool = False) -> Bucket:
    """All runs (or only the physics runs) of the benchmark dataset of ``scale``."""
    from dpnb.detector import PHYSICS_RUN_TYPES, load_geometry
    from dpnb.io.events import run_file

    root = dataset(scale)
    with open(root / "runs.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if not physics_only or r["run_type"] in PHYSICS_RUN_TYPES]
    runs = tuple((int(r["exp"]), int(r["run"])) for r in rows)
    files = tuple(str(run_file(root / "raw", e, r)) for e, r in runs)
    return Bucket(root, load_geometry(root).n_channels, runs, files, sum(int(r["n_events"]) for r in rows))


def prefix_with_fraction(b: Bucket, fraction: float) -> Bucket:
    """The longest leading run range of ``b`` holding at most ``fraction`` of its events (>= 1 run)."""
    events = _events_by_run(b.root)
    acc, n = 0, 1
    for i, r in enumerate(b.runs):
        acc += events[r]
        if acc > fraction * b.n_events:
            break
        n = i + 1
    return b.subset(b.runs[:n])
