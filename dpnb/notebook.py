"""What a notebook needs from dpnb: its resolved parameters and a way to record results.

A notebook's first cell (tagged ``parameters``) declares ``label = "demo"`` and the
bucket keys as ``None`` (meaning: from ``parameters/buckets/<label>.yaml``), plus its own
options as ``None`` (meaning: from the bucket file or ``parameters/defaults/<name>.yaml``).
The second cell calls::

    ctx = dpnb.notebook_context("calibration_t0", globals())

``dpnb run`` injects the fully resolved parameters (``dpnb_resolved = True``) plus
``output_dir`` and ``upstream``; plain ``papermill -f parameters/buckets/X.yaml`` injects
the bucket file's keys; in JupyterLab the cell defaults apply. ``DPNB_BUCKET_FILE`` (used
by the tests) replaces ``parameters/buckets/<label>.yaml`` when nothing was injected.

Results
-------
``ctx.record(name, value, unit=..., error=...)`` records a number; ``ctx.gate(name,
value, threshold, op)`` records a quality gate with its verdict; ``ctx.save()`` writes
``results.json`` into ``ctx.output_dir`` with sorted keys and no timestamps, so unchanged
inputs give byte-identical files.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import ParameterError, PipelineError
from .params import bucket_file_for, merge, project_root, resolve_bucket
from .runs import RunId, parse_run_ranges

__all__ = ["notebook_context", "NotebookContext", "Results", "RESULTS_SCHEMA", "gate_verdict", "write_json_atomic"]

RESULTS_SCHEMA = 1
BUCKET_KEYS = (
    "label", "description", "runs", "run_types", "exclude_runs", "data", "conditions",
    "policies", "reports_dir", "seed", "notebooks", "cache_dir", "executor",
)
_OPS = {
    "<": lambda v, t: v < t,
    "<=": lambda v, t: v <= t,
    ">": lambda v, t: v > t,
    ">=": lambda v, t: v >= t,
    "==": lambda v, t: v == t,
    "in": lambda v, t: t[0] <= v <= t[1],
}
VERDICT_ORDER = {"pass": 0, "warn": 1, "fail": 2}


def gate_verdict(value, threshold, op: str = "<", warn_threshold=None) -> str:
    """``pass`` if ``value op threshold`` holds, else ``fail``; ``warn`` if only ``warn_threshold`` is missed."""
    if op not in _OPS:
        msg = f"unknown gate operator {op!r}; expected one of {sorted(_OPS)}"
        raise ValueError(msg)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "fail"
    if not _OPS[op](value, threshold):
        return "fail"
    if warn_threshold is not None and not _OPS[op](value, warn_threshold):
        return "warn"
    return "pass"


def _clean(x: Any) -> Any:
    """JSON-safe, deterministic representation (numpy scalars -> Python, NaN -> None)."""
    try:
        import numpy as np

        if isinstance(x, np.generic):
            x = x.item()
        elif isinstance(x, np.ndarray):
            x = x.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(x, float):
        if math.isnan(x) or math.isinf(x):
            return None
        return float(repr(x)) if x == x else None
    if isinstance(x, Mapping):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    return x


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON with sorted keys to ``path`` through a temporary file and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(_clean(obj), sort_keys=True, indent=1) + "\n")
    os.replace(tmp, path)


@dataclass
class Results:
    notebook: str
    bucket: str
    values: dict = field(default_factory=dict)
    gates: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def record(self, name: str, value: Any, unit: str | None = None, error: float | None = None, **extra) -> Any:
        entry = {"value": _clean(value)}
        if unit is not None:
            entry["unit"] = unit
        if error is not None:
            entry["error"] = _clean(error)
        entry.update(_clean(extra))
        self.values[name] = entry
        return value

    def gate(self, name: str, value, threshold, op: str = "<", unit: str | None = None, warn_threshold=None,
             description: str = "") -> str:
        verdict = gate_verdict(value, threshold, op, warn_threshold)
        self.gates[name] = _clean({
            "value": value, "threshold": threshold, "op": op, "unit": unit, "verdict": verdict,
            "warn_threshold": warn_threshold, "description": description,
        })
        return verdict

    def table(self, name: str, rows) -> None:
        """Record a small table (list of dicts, or a pandas DataFrame)."""
        if hasattr(rows, "to_dict"):
            rows = rows.to_dict(orient="records")
        self.tables[name] = _clean(list(rows))

    @property
    def status(self) -> str:
        worst = "pass"
        for g in self.gates.values():
            if VERDICT_ORDER.get(g["verdict"], 2) > VERDICT_ORDER[worst]:
                worst = g["verdict"]
        return worst

    def to_dict(self) -> dict:
        return {
            "schema": RESULTS_SCHEMA,
            "notebook": self.notebook,
            "bucket": self.bucket,
            "status": self.status,
            "values": self.values,
            "gates": self.gates,
            "tables": self.tables,
            "notes": self.notes,
        }


class NotebookContext:
    """Resolved parameters, paths and the results recorder of one notebook run."""

    def __init__(self, name: str, params: dict, output_dir: Path, upstream: Mapping[str, str], injected: bool):
        self.name = name
        self.params = params
        self.options = dict((params.get("notebooks") or {}).get(name) or {})
        self.label = params["label"]
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._upstream = {k: Path(v) for k, v in (upstream or {}).items()}
        self.injected = injected
        self.results = Results(notebook=name, bucket=self.label)
        self.run_ranges = parse_run_ranges(params["runs"])
        self.exclude_ranges = parse_run_ranges(params.get("exclude_runs") or [], "exclude_runs")

    # convenient views -------------------------------------------------------------
    @property
    def data(self) -> dict:
        return self.params["data"]

    @property
    def conditions(self) -> dict:
        return self.params["conditions"]

    @property
    def reports_dir(self) -> Path:
        return Path(self.params["reports_dir"])

    @property
    def executor(self):
        """The :class:`dpnb.scale.ExecutorConfig` for per-run work (parameter ``executor``)."""
        from .scale import ExecutorConfig

        return ExecutorConfig.from_params(self.params.get("executor"))

    def map_runs(self, func, tasks, *, kwargs=None, inputs=None, use_cache: bool = True) -> dict:
        """Run per-run work through the configured executor and the per-run partial cache.

        ``tasks`` maps a key (e.g. a RunId) to the positional arguments of ``func``;
        ``inputs`` maps the same key to the files it reads (their identity is part of the
        cache key). Returns ``{key: result}``; ``self.cache_stats`` says how many were reused.
        """
        from .scale import PartialCache, map_runs

        cache = PartialCache(self.params["cache_dir"]) if use_cache else None
        out = map_runs(func, tasks, kwargs=kwargs, executor=self.executor, cache=cache, inputs=inputs)
        self.cache_stats = {"reused": cache.hits if cache else 0, "computed": cache.misses if cache else len(tasks)}
        return out

    def in_bucket(self, run: RunId) -> bool:
        """True if ``run`` is inside the bucket's run ranges and not excluded."""
        return any(r.contains(run) for r in self.run_ranges) and not any(r.contains(run) for r in self.exclude_ranges)

    def artifact(self, filename: str) -> Path:
        """Path for a file this notebook writes beside its report."""
        return self.output_dir / filename

    def upstream_dir(self, notebook: str) -> Path:
        """The report directory of an upstream notebook: injected by ``dpnb run``, else its latest version."""
        if notebook in self._upstream:
            return self._upstream[notebook]
        base = self.reports_dir / self.label / notebook
        versions = sorted(
            (p for p in base.glob("v*") if p.name[1:].isdigit() and (p / "results.json").exists()),
            key=lambda p: int(p.name[1:]),
        )
        if not versions:
            msg = (
                f"notebook {self.name!r} needs the results of {notebook!r} for bucket {self.label!r}, "
                f"but {base} holds no version; run `dpnb run parameters/buckets/{self.label}.yaml --only {notebook}` first"
            )
            raise PipelineError(msg)
        return versions[-1]

    def upstream_results(self, notebook: str) -> dict:
        return json.loads((self.upstream_dir(notebook) / "results.json").read_text())

    # results ----------------------------------------------------------------------
    def record(self, *args, **kwargs):
        return self.results.record(*args, **kwargs)

    def gate(self, *args, **kwargs) -> str:
        return self.results.gate(*args, **kwargs)

    def table(self, *args, **kwargs) -> None:
        self.results.table(*args, **kwargs)

    def note(self, text: str) -> None:
        self.results.notes.append(str(text))

    def save(self) -> Path:
        """Write ``results.json`` into the output directory and return its path."""
        path = self.output_dir / "results.json"
        write_json_atomic(path, self.results.to_dict())
        return path

    def gates_frame(self):
        import pandas as pd

        rows = [{"gate": k, **v} for k, v in sorted(self.results.gates.items())]
        return pd.DataFrame(rows, columns=["gate", "value", "op", "threshold", "unit", "verdict", "description"])

    def __repr__(self) -> str:
        return f"NotebookContext({self.name!r}, bucket={self.label!r}, output_dir={str(self.output_dir)!r})"


def notebook_context(name: str, namespace: Mapping[str, Any]) -> NotebookContext:
    """Resolve a notebook's parameters from its namespace (see the module docstring)."""
    resolved_flag = bool(namespace.get("dpnb_resolved"))
    bucket_values = {k: namespace[k] for k in BUCKET_KEYS if namespace.get(k) is not None}
    label = bucket_values.get("label") or "demo"
    root = project_root()
    if resolved_flag:
        params = dict(bucket_values)
    else:
        env_file = os.environ.get("DPNB_BUCKET_FILE")
        base_file = Path(env_file) if env_file else bucket_file_for(label, root)
        if env_file:
            bucket_values.pop("label", None)
        file_values = {}
        if base_file.exists():
            from .params import load_yaml

            file_values = load_yaml(base_file) or {}
        elif "runs" not in bucket_values:
            msg = f"no parameters for bucket {label!r}: {base_file} does not exist and no runs were given"
            raise ParameterError(msg)
        merged = merge(file_values, bucket_values)
        params = resolve_bucket(merged, root=root)
    # the notebook's own options given as top-level variables override the bucket's
    nb_opts = dict((params.get("notebooks") or {}).get(name) or {})
    overrides = {k: namespace[k] for k in nb_opts if k not in BUCKET_KEYS and namespace.get(k) is not None}
    if overrides:
        params = merge(params, {"notebooks": {name: overrides}})
    out = namespace.get("output_dir")
    if not out:
        out = Path(params["reports_dir"]) / "_scratch" / params["label"] / name
    return NotebookContext(name, params, Path(out), namespace.get("upstream") or {}, resolved_flag)
