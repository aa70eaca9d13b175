"""The bucket roll-up behind ``notebooks/bucket_summary.ipynb``.

Reads the ``results.json`` of every other notebook of the bucket (the injected upstream
version, else the latest version on disk), counts verdicts and derives one overall
verdict: ``fail`` if any notebook FAILED to run or has a failing gate, ``warn`` if any
warns or has not run (or there is nothing to summarise), else ``pass``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from ..errors import DpnbError
from . import versions

__all__ = ["NotebookRollup", "BucketRollup", "rollup", "rollup_for_context", "dag_notebooks", "plot_counts",
           "record_gates"]

CATEGORIES = ("pass", "warn", "fail", "failed", "not run")


@dataclass
class NotebookRollup:
    notebook: str
    status: str  # one of CATEGORIES
    version: int | None = None
    gates: dict = field(default_factory=dict)


@dataclass
class BucketRollup:
    bucket: str
    notebooks: list[NotebookRollup]

    @property
    def counts(self) -> dict[str, int]:
        c = dict.fromkeys(CATEGORIES, 0)
        for n in self.notebooks:
            c[n.status] += 1
        return c

    @property
    def verdict(self) -> str:
        c = self.counts
        if c["fail"] or c["failed"]:
            return "fail"
        if c["warn"] or c["not run"] or not self.notebooks:
            return "warn"
        return "pass"

    def notebook_table(self):
        """One row per notebook: status, version, number of gates by verdict."""
        import pandas as pd

        rows = []
        for n in self.notebooks:
            verdicts = [g.get("verdict") for g in n.gates.values()]
            rows.append({"notebook": n.notebook, "status": n.status, "version": n.version,
                         "gates": len(verdicts), "pass": verdicts.count("pass"), "warn": verdicts.count("warn"),
                         "fail": verdicts.count("fail")})
        return pd.DataFrame(rows, columns=["notebook", "status", "version", "gates", "pass", "warn", "fail"])

    def gates_table(self):
        """Every recorded gate of every notebook."""
        import pandas as pd

        rows = [{"notebook": n.notebook, "gate": name, "value": g.get("value"), "op": g.get("op"),
                 "threshold": g.get("threshold"), "unit": g.get("unit"), "verdict": g.get("verdict")}
                for n in self.notebooks for name, g in sorted(n.gates.items())]
        return pd.DataFrame(rows, columns=["notebook", "gate", "value", "op", "threshold", "unit", "verdict"])


def _read_results(vdir: Path) -> dict | None:
    try:
        return json.loads((vdir / "results.json").read_text())
    except (OSError, ValueError):
        return None


def rollup(bucket: str, notebooks: Sequence[str], upstream: Mapping[str, str | os.PathLike],
           bucket_dir: str | os.PathLike) -> BucketRollup:
    """Roll up ``notebooks``: each from ``upstream[name]`` if given, else its latest version in ``bucket_dir``."""
    rows = []
    for name in notebooks:
        vdir = Path(upstream[name]) if name in upstream else None
        if vdir is None:
            n = versions.latest_version(Path(bucket_dir) / name)
            vdir = versions.version_dir(Path(bucket_dir) / name, n) if n else None
        res = _read_results(vdir) if vdir else None
        if res is None:
            rows.append(NotebookRollup(name, "not run"))
            continue
        status = str(res.get("status", "pass")).lower()
        if status not in CATEGORIES:
            status = "fail"
        version = int(vdir.name[1:]) if vdir.name[1:].isdigit() else None
        rows.append(NotebookRollup(name, status, version, dict(res.get("gates") or {})))
    return BucketRollup(bucket, rows)


def dag_notebooks(exclude: str, root: Path | None = None) -> list[str]:
    """Notebook names of the project's DAG (``parameters/pipeline.yaml``) other than ``exclude``."""
    from ..params import project_root
    from ..params import load_yaml

    root = root or project_root()
    try:
        doc = load_yaml(root / "parameters" / "pipeline.yaml") or {}
    except DpnbError:
        return []
    return [str(n) for n in (doc.get("notebooks") or {}) if str(n) != exclude]


def rollup_for_context(ctx) -> BucketRollup:
    """Roll up the bucket of a notebook context: DAG notebooks plus any injected upstream."""
    names = dag_notebooks(ctx.name)
    injected = {k: str(v) for k, v in getattr(ctx, "_upstream", {}).items()}
    names += [n for n in injected if n not in names and n != ctx.name]
    return rollup(ctx.label, names, injected, ctx.reports_dir / ctx.label)


def plot_counts(summary: BucketRollup, ax=None):
    """Bar chart of notebooks per verdict category."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    counts = summary.counts
    colors = {"pass": "#2e7d32", "warn": "#ef8f00", "fail": "#c62828", "failed": "#6a1b9a", "not run": "#9e9e9e"}
    ax.bar(list(counts), list(counts.values()), color=[colors[k] for k in counts])
    ax.set_ylabel("notebooks")
    ax.set_title(f"bucket {summary.bucket}: overall {summary.verdict.upper()}")
    return ax


def record_gates(ctx, summary: BucketRollup, max_failing: int = 0) -> str:
    """Record the roll-up numbers and gates in ``ctx``; return the overall verdict."""
    for k, v in summary.counts.items():
        ctx.record(f"notebooks_{k.replace(' ', '_')}", v)
    ctx.record("overall_verdict", summary.verdict)
    ctx.table("notebooks", summary.notebook_table())
    c = summary.counts
    ctx.gate("failing_notebooks", c["fail"] + c["failed"], max_failing, "<=",
             description="notebooks that failed to run or have a failing gate")
    ctx.gate("warned_or_missing_notebooks", c["warn"] + c["not run"], len(summary.notebooks), "<=", warn_threshold=0,
             description="notebooks with a warning, or not run (warn only)")
    return summary.verdict
