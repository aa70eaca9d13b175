"""Skim definitions (``parameters/skims/*.yaml``) and the registry of Python selections.

A skim file holds one mapping::

    name: hadronic
    owner: "Hadronic skim convener <hadron-skim@example.org>"
    description: "≥ 3 good tracks, not Bhabha-like"
    selection: "count(trk_pt > 0.2 and abs(trk_d0) < 2 and abs(trk_z0) < 4) >= 3 and ..."
    retention_ceiling: 0.10          # optional, fraction of input events (default 0.10)
    candidates: "trk_pt > 0.2"       # optional per-object condition: candidates per event

``selection`` is an expression of :mod:`dpnb.skims.expr` or ``{function: <name>}``, a
Python function registered with :func:`register_selection` (see :mod:`dpnb.skims.builtin`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from ..errors import ParameterError, nearest
from ..params import load_yaml
from .columns import ColumnSet, detector_columns, source_branches
from .expr import Expression, SkimExpressionError, compile_expression

__all__ = [
    "Skim",
    "PythonSelection",
    "register_selection",
    "registered_selections",
    "load_skim",
    "load_skims",
    "skim_from_mapping",
    "DEFAULT_RETENTION_CEILING",
]

DEFAULT_RETENTION_CEILING = 0.10
_KEYS = {"name", "owner", "description", "selection", "retention_ceiling", "candidates"}
_REQUIRED = ("name", "owner", "description", "selection")

_REGISTRY: dict[str, tuple[Callable, tuple[str, ...], str]] = {}


def register_selection(name: str, columns: tuple[str, ...] | list[str], doc: str = ""):
    """Register ``func(cols) -> bool array (one per row)`` as selection ``name``.

    ``columns`` are the columns the function reads (derived names allowed); ``cols`` is a
    :class:`dpnb.skims.columns.ChunkColumns` (``cols["ntrk"]``, ``cols.offsets("trk")``,
    ``cols.n_threads``).
    """

    def deco(func):
        _REGISTRY[name] = (func, tuple(columns), doc or (func.__doc__ or "").strip().split("\n")[0])
        return func

    return deco


def registered_selections() -> dict[str, str]:
    """Name -> one-line description of every registered Python selection."""
    from . import builtin  # noqa: F401  (registers the built-in selections)

    return {k: v[2] for k, v in sorted(_REGISTRY.items())}


class PythonSelection:
    """A registered Python selection, with the same interface as :class:`Expression`."""

    def __init__(self, name: str, func: Callable, columns: tuple[str, ...]):
        self.name = name
        self.func = func
        self.text = f"function {name}"
        self.columns = sorted(columns)
        self.branches = sorted(source_branches(columns))
        self.kind = "event"

    def evaluate(self, cols) -> np.ndarray:
        out = np.asarray(self.func(cols), dtype=bool)
        if out.shape != (cols.n_events,):
            msg = f"selection function {self.name!r} returned shape {out.shape}, expected ({cols.n_events},)"
            raise ValueError(msg)
        return out

    def __repr__(self) -> str:
        return f"PythonSelection({self.name!r})"


@dataclass
class Skim:
    """One skim: who owns it, what it selects, and its retention ceiling (fraction)."""

    name: str
    owner: str
    description: str
    selection: Expression | PythonSelection
    retention_ceiling: float = DEFAULT_RETENTION_CEILING
    candidates: Expression | None = None
    source: str = ""
    spec: dict = field(default_factory=dict)

    @property
    def branches(self) -> list[str]:
        """File branches this skim reads."""
        out = set(self.selection.branches)
        if self.candidates is not None:
            out.update(self.candidates.branches)
        return sorted(out)


def skim_from_mapping(spec: Mapping, columns: ColumnSet | None = None, source: str = "parameters") -> Skim:
    """Validate one skim mapping and compile its selection; every problem is listed."""
    columns = columns or detector_columns()
    problems: list[str] = []
    if not isinstance(spec, Mapping):
        msg = f"{source}: expected a mapping with keys {sorted(_KEYS)}, got {type(spec).__name__}"
        raise ParameterError(msg)
    for k in spec:
        if k not in _KEYS:
            problems.append(f"{source}: unknown key {k!r} (did you mean {nearest(str(k), _KEYS)[0]!r}?)")
    for k in _REQUIRED:
        if spec.get(k) in (None, ""):
            problems.append(f"{source}: key {k!r} is required")
    for k in ("name", "owner", "description"):
        if spec.get(k) is not None and not isinstance(spec[k], str):
            problems.append(f"{source}: key {k!r}: expected a string, got {spec[k]!r}")
    ceiling = spec.get("retention_ceiling", DEFAULT_RETENTION_CEILING)
    if isinstance(ceiling, bool) or not isinstance(ceiling, (int, float)) or not 0.0 < float(ceiling) <= 1.0:
        problems.append(f"{source}: key 'retention_ceiling': expected a fraction in (0, 1], got {ceiling!r}")
    if problems:
        msg = f"invalid skim definition in {source}"
        raise ParameterError(msg, problems)
    name = spec["name"]
    where = f"{source}: skim {name!r}"
    sel = spec["selection"]
    if isinstance(sel, Mapping):
        registered_selections()
        fname = sel.get("function")
        if set(sel) != {"function"} or fname not in _REGISTRY:
            msg = (
                f"{where}: selection {dict(sel)!r}: expected an expression or {{function: <name>}} with a registered "
                f"name, one of {sorted(_REGISTRY)}"
            )
            raise ParameterError(msg)
        func, cols_needed, _ = _REGISTRY[fname]
        missing = [c for c in cols_needed if columns.kind(c) is None]
        if missing:
            msg = f"{where}: selection function {fname!r} needs columns {missing}; columns that exist: {columns.names}"
            raise SkimExpressionError(msg)
        selection = PythonSelection(fname, func, cols_needed)
    else:
        selection = compile_expression(sel, columns, where=f"{where} selection")
    candidates = None
    if spec.get("candidates") is not None:
        candidates = compile_expression(spec["candidates"], columns, where=f"{where} candidates", want="value")
        if candidates.root.vtype != "bool":
            msg = f"{where} candidates: expected a condition (per object or per event), e.g. 'trk_pt > 0.2'"
            raise SkimExpressionError(msg)
    return Skim(
        name=name, owner=spec["owner"], description=spec["description"].strip(), selection=selection,
        retention_ceiling=float(ceiling), candidates=candidates, source=source, spec=dict(spec),
    )


def load_skim(path: str | os.PathLike, columns: ColumnSet | None = None) -> Skim:
    """Read and compile one skim file."""
    path = Path(path)
    return skim_from_mapping(load_yaml(path), columns, source=str(path))


def load_skims(paths, columns: ColumnSet | None = None, root: str | os.PathLike | None = None) -> list[Skim]:
    """Skims from files or glob patterns (relative to ``root``), in the given order; names must be unique."""
    root = Path(root) if root else Path.cwd()
    files: list[Path] = []
    for p in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
        pat = Path(p)
        pat = pat if pat.is_absolute() else root / pat
        if any(ch in str(p) for ch in "*?["):
            matched = sorted(pat.parent.glob(pat.name))
            if not matched:
                msg = f"skim files {str(pat)!r}: no file matches"
                raise ParameterError(msg)
            files.extend(matched)
        else:
            files.append(pat)
    skims = [load_skim(f, columns) for f in files]
    seen: dict[str, str] = {}
    for s in skims:
        if s.name in seen:
            msg = f"skim name {s.name!r} is defined twice: {seen[s.name]} and {s.source}"
            raise ParameterError(msg)
        seen[s.name] = s.source
    return skims
