"""Load, merge and validate parameter files.

Order of precedence: shared defaults (``parameters/defaults.yaml`` plus one file per
notebook in ``parameters/defaults/<notebook>.yaml``, which become ``notebooks.<notebook>``)
< the bucket file (``parameters/buckets/<label>.yaml``) < command-line overrides
(``--set key.sub=value``). Validation collects *every* problem before raising one
:class:`~dpnb.errors.ParameterError` (file, key, what was expected; unknown keys name the
nearest valid key).

Relative paths are relative to the project root: the nearest directory above the bucket
file (or the working directory) that holds ``parameters/pipeline.yaml``; ``DPNB_ROOT``
overrides.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import InputError, ParameterError, nearest
from .runs import parse_run_range

__all__ = [
    "project_root",
    "load_yaml",
    "load_defaults",
    "merge",
    "parse_override",
    "validate",
    "resolve_bucket",
    "bucket_file_for",
    "LABEL_RE",
]

# no leading dot: "." and ".." would name a directory outside reports/<label>/ (and ".x" is hidden)
LABEL_RE = re.compile(r"^(?!\.)[A-Za-z0-9_.-]+$")

# keys whose default may be None and still accept a value of these types
_NULLABLE_TYPES: dict[str, tuple[type, ...]] = {}


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The project root: ``DPNB_ROOT`` or the nearest parent holding ``parameters/pipeline.yaml``."""
    env = os.environ.get("DPNB_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(start or os.getcwd()).resolve()
    if here.is_file():
        here = here.parent
    for d in (here, *here.parents):
        if (d / "parameters" / "pipeline.yaml").is_file():
            return d
    # installed in development mode: the package's parent
    pkg_root = Path(__file__).resolve().parent.parent
    if (pkg_root / "parameters" / "pipeline.yaml").is_file():
        return pkg_root
    return here


def load_yaml(path: str | os.PathLike) -> Any:
    """Read a YAML file; a syntax error names the file, line and column."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        msg = f"{path}: file not found"
        raise ParameterError(msg) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        msg = f"{where}: invalid YAML ({getattr(exc, 'problem', exc)})"
        raise ParameterError(msg) from None


def load_defaults(root: Path | None = None) -> dict:
    """Shared defaults with every notebook's own defaults under ``notebooks``."""
    root = root or project_root()
    pdir = root / "parameters"
    base = load_yaml(pdir / "defaults.yaml") or {}
    nb = base.setdefault("notebooks", {}) or {}
    base["notebooks"] = nb
    ddir = pdir / "defaults"
    if ddir.is_dir():
        for f in sorted(ddir.glob("*.yaml")):
            nb[f.stem] = merge(nb.get(f.stem) or {}, load_yaml(f) or {})
    return base


def merge(base: Mapping, over: Mapping) -> dict:
    """Deep merge: mappings merge key by key, everything else in ``over`` replaces."""
    out = copy.deepcopy(dict(base))
    for k, v in (over or {}).items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_override(text: str) -> dict:
    """``"a.b.c=value"`` -> ``{"a": {"b": {"c": value}}}``; the value is parsed as YAML."""
    if "=" not in text:
        msg = f"--set {text!r}: expected KEY=VALUE, e.g. notebooks.calibration_t0.min_hits=50"
        raise ParameterError(msg)
    key, value = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        msg = f"--set {text!r}: empty key"
        raise ParameterError(msg)
    try:
        val = yaml.safe_load(value)
    except yaml.YAMLError:
        val = value
    out: dict = {}
    cur = out
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = val
    return out


def _type_name(v: Any) -> str:
    return {dict: "mapping", list: "list", str: "string", int: "integer", float: "number", bool: "true/false"}.get(
        type(v), type(v).__name__
    )


def _check(value: Any, default: Any, key: str, origin: Mapping[str, str], problems: list[str]) -> None:
    """Compare ``value`` against the shape of ``default`` (recursively for mappings)."""
    src = origin.get(key.split(".")[0], "parameters")
    if isinstance(default, Mapping):
        if not isinstance(value, Mapping):
            problems.append(f"{src}: key '{key}': expected a mapping, got {_type_name(value)} {value!r}")
            return
        for k, v in value.items():
            sub = f"{key}.{k}" if key else str(k)
            if k not in default:
                if default.get("*") is not None or "*" in default:
                    _check(v, default.get("*"), sub, origin, problems)
                    continue
                near = nearest(k, [d for d in default if d != "*"])
                hint = f"; did you mean '{near[0]}'?" if near else ""
                where = origin.get(sub.split(".")[0], src)  # a top-level key names its own file
                valid = ", ".join(sorted(map(str, default)))
                problems.append(f"{where}: unknown key '{sub}'{hint} (valid keys: {valid})")
                continue
            _check(v, default[k], sub, origin, problems)
        return
    if default is None or value is None:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, list):
        ok = isinstance(value, list)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        problems.append(f"{src}: key '{key}': expected {_type_name(default)}, got {_type_name(value)} {value!r}")


def validate(params: Mapping, defaults: Mapping, origin: Mapping[str, str] | None = None) -> None:
    """Raise one :class:`ParameterError` listing every problem in ``params``."""
    origin = origin or {}
    problems: list[str] = []
    _check(params, defaults, "", origin, problems)

    def src(k):
        return origin.get(k, "parameters")

    label = params.get("label")
    if label in (None, ""):
        problems.append(f"{src('label')}: key 'label': required, expected a bucket label such as 'bucket26'")
    elif not isinstance(label, str) or not LABEL_RE.match(label):
        problems.append(
            f"{src('label')}: key 'label': {label!r} has characters outside [A-Za-z0-9_.-] or starts with '.' "
            "(a label names a directory under reports/)"
        )
    runs = params.get("runs")
    if not runs:
        problems.append(f"{src('runs')}: key 'runs': required, expected a list of run ranges like '7:909-4120'")
    elif isinstance(runs, list):
        for i, r in enumerate(runs):
            try:
                parse_run_range(r, f"runs[{i}]")
            except InputError as exc:
                problems.append(f"{src('runs')}: key {exc}")
    run_types = params.get("run_types")
    if isinstance(run_types, list):
        from .detector import RUN_TYPES

        for i, t in enumerate(run_types):
            if t not in RUN_TYPES:
                near = nearest(str(t), RUN_TYPES)
                problems.append(
                    f"{src('run_types')}: key 'run_types[{i}]': unknown run type {t!r}; "
                    f"expected one of {list(RUN_TYPES)} (nearest: {near[0]!r})"
                )
    excl = params.get("exclude_runs")
    if isinstance(excl, list):
        for i, r in enumerate(excl):
            try:
                parse_run_range(r, f"exclude_runs[{i}]")
            except InputError as exc:
                problems.append(f"{src('exclude_runs')}: key {exc}")
    if problems:
        msg = f"invalid parameters ({len(problems)} problem{'s' if len(problems) > 1 else ''})"
        raise ParameterError(msg, problems)


def bucket_file_for(label: str, root: Path | None = None) -> Path:
    root = root or project_root()
    if not isinstance(label, str) or not LABEL_RE.match(label):
        msg = f"bucket label {label!r} has characters outside [A-Za-z0-9_.-] or starts with '.'"
        raise ParameterError(msg)
    return root / "parameters" / "buckets" / f"{label}.yaml"


def _resolve_paths(p: dict, root: Path) -> dict:
    """Fill derived paths and make every path absolute (relative to the project root)."""
    data = p.setdefault("data", {})
    droot = Path(data.get("root") or "data/demo")
    if not droot.is_absolute():
        droot = root / droot
    data["root"] = str(droot)
    for key, default in (("raw", "raw"), ("mc", "mc"), ("lumi", "lumi"), ("run_registry", "runs.csv")):
        v = data.get(key)
        path = Path(v) if v else droot / default
        if not path.is_absolute():
            path = root / path
        data[key] = str(path)
    cond = p.setdefault("conditions", {})
    db = Path(cond.get("db") or (droot / "conditions.sqlite"))
    if not db.is_absolute():
        db = root / db
    cond["db"] = str(db)
    if not cond.get("global_tag"):
        cond["global_tag"] = f"{p.get('label')}_calibration"
    rdir = Path(p.get("reports_dir") or "reports")
    if not rdir.is_absolute():
        rdir = root / rdir
    p["reports_dir"] = str(rdir)
    cache = Path(p.get("cache_dir") or (droot / ".dpnb-cache"))
    if not cache.is_absolute():
        cache = root / cache
    p["cache_dir"] = str(cache)
    return p


def resolve_bucket(
    bucket: str | os.PathLike | Mapping | None = None,
    overrides: list[str] | list[Mapping] | None = None,
    root: Path | None = None,
) -> dict:
    """Defaults < bucket file (path, or an already-loaded mapping) < overrides; validated; paths absolute."""
    origin: dict[str, str] = {}
    if isinstance(bucket, Mapping):
        root = root or project_root()
        bucket_data = dict(bucket)
        bucket_name = "parameters"
    else:
        bpath = Path(bucket)
        root = root or project_root(bpath.parent if bpath.exists() else None)
        bucket_data = load_yaml(bpath)
        bucket_name = str(bpath)
        if bucket_data is None:
            bucket_data = {}
        if not isinstance(bucket_data, Mapping):
            msg = f"{bpath}: expected a mapping of parameters at the top level, got {_type_name(bucket_data)}"
            raise ParameterError(msg)
    defaults = load_defaults(root)
    for k in bucket_data:
        origin[str(k)] = bucket_name
    merged = merge(defaults, bucket_data)
    for o in overrides or []:
        ov = parse_override(o) if isinstance(o, str) else dict(o)
        for k in ov:
            origin[str(k)] = "command line (--set)"
        merged = merge(merged, ov)
    validate(merged, defaults, origin)
    return _resolve_paths(merged, root)
