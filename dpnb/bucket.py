"""Which runs of the dataset belong to a bucket, and why the others do not.

The run registry (``runs.csv``: exp,run,run_type,fill,start_time,stop_time,magnet_on,
dq_flag,n_events) is filtered by the bucket's run ranges, run types, ``exclude_runs``,
data-quality flag and the presence of the run's event file. Every excluded run keeps its
reason, so reports can list them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .io.events import run_file
from .io.tables import read_table
from .runs import RunId

__all__ = ["BucketRuns", "read_registry", "select_runs", "REGISTRY_COLUMNS"]

REGISTRY_COLUMNS = ("exp", "run", "run_type", "fill", "start_time", "stop_time", "magnet_on", "dq_flag", "n_events")


@dataclass
class BucketRuns:
    selected: list[RunId]
    excluded: dict[RunId, str] = field(default_factory=dict)
    registry: pd.DataFrame | None = None
    files: dict[RunId, Path] = field(default_factory=dict)

    def excluded_frame(self) -> pd.DataFrame:
        rows = [{"exp": r.exp, "run": r.run, "reason": why} for r, why in sorted(self.excluded.items())]
        return pd.DataFrame(rows, columns=["exp", "run", "reason"])

    def selected_frame(self) -> pd.DataFrame:
        if self.registry is None:
            return pd.DataFrame({"exp": [r.exp for r in self.selected], "run": [r.run for r in self.selected]})
        keys = {(r.exp, r.run) for r in self.selected}
        mask = [(e, r) in keys for e, r in zip(self.registry["exp"], self.registry["run"])]
        return self.registry[mask].reset_index(drop=True)


def read_registry(path: str | Path) -> pd.DataFrame:
    """Read ``runs.csv``; a missing column names the file and the columns that exist."""
    return read_table(path, REGISTRY_COLUMNS,
                      "run registry not found (make the dataset with `dpnb simulate` or point data.run_registry at it)")


def select_runs(ctx, require_files: bool = True, run_types=None) -> BucketRuns:
    """The bucket's runs from the registry; ``ctx`` is a :class:`dpnb.notebook.NotebookContext`."""
    reg = read_registry(ctx.data["run_registry"])
    types = set(run_types if run_types is not None else ctx.params.get("run_types") or [])
    raw = ctx.data["raw"]
    out = BucketRuns(selected=[], registry=reg)
    for row in reg.itertuples(index=False):
        rid = RunId(int(row.exp), int(row.run))
        if not any(r.contains(rid) for r in ctx.run_ranges):
            continue  # not in the bucket at all: not listed
        if any(r.contains(rid) for r in ctx.exclude_ranges):
            out.excluded[rid] = "excluded by parameter exclude_runs"
        elif types and row.run_type not in types:
            out.excluded[rid] = f"run type {row.run_type!r} not in {sorted(types)}"
        elif str(row.dq_flag) != "good":
            out.excluded[rid] = f"data-quality flag {row.dq_flag!r}"
        else:
            path = run_file(raw, rid.exp, rid.run)
            if require_files and not path.exists():
                out.excluded[rid] = f"event file missing: {path}"
            else:
                out.selected.append(rid)
                out.files[rid] = path
    out.selected.sort()
    return out
