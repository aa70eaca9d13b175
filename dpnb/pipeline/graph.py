"""The notebook DAG of a bucket, declared in ``parameters/pipeline.yaml``.

Each entry under ``notebooks`` is ``name: {path, depends_on, timeout, inputs, always_run}``:

* ``path``       notebook file relative to the project root (required);
* ``depends_on`` names of upstream notebooks, or ``["*"]`` for every other notebook
  (used by roll-ups such as ``bucket_summary``);
* ``timeout``    seconds for the whole notebook (default 600);
* ``inputs``     keys of the bucket's ``data`` mapping whose files enter the content key;
* ``always_run`` run even when an upstream FAILED or was SKIPPED (roll-ups report them).

:func:`load_graph` checks everything (unknown names, cycles, missing notebook files,
notebooks without a ``parameters`` cell) and raises one :class:`PipelineError` listing
every problem.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from ..errors import PipelineError, nearest
from ..params import LABEL_RE, load_yaml

__all__ = ["NotebookSpec", "Graph", "load_graph", "build_graph", "read_notebook", "has_parameters_cell"]

DEFAULT_TIMEOUT_S = 600.0
DATA_KEYS = ("root", "raw", "mc", "lumi", "run_registry")
_ENTRY_KEYS = ("path", "depends_on", "timeout", "inputs", "always_run")


@dataclass(frozen=True)
class NotebookSpec:
    """One node of the DAG."""

    name: str
    path: Path
    depends_on: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT_S
    inputs: tuple[str, ...] = ()
    always_run: bool = False


@dataclass
class Graph:
    """Validated DAG: ``specs`` by name and ``order`` (a topological order, stable by file order)."""

    specs: dict[str, NotebookSpec]
    order: list[str] = field(default_factory=list)
    source: Path | None = None

    def upstream_closure(self, names: Iterable[str]) -> set[str]:
        """Every notebook that ``names`` depend on, directly or not (excluding ``names`` unless reached)."""
        out: set[str] = set()
        todo = [d for n in names for d in self.specs[n].depends_on]
        while todo:
            d = todo.pop()
            if d not in out:
                out.add(d)
                todo.extend(self.specs[d].depends_on)
        return out

    def dependents(self, name: str) -> set[str]:
        """Every notebook downstream of ``name``."""
        out: set[str] = set()
        frontier = {name}
        while frontier:
            nxt = {n for n, s in self.specs.items() if frontier & set(s.depends_on)} - out
            out |= nxt
            frontier = nxt
        return out


def read_notebook(path: Path) -> dict:
    """The notebook JSON (plain ``json``: faster than nbformat for a structural check)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        msg = f"{path}: cannot read notebook ({exc})"
        raise PipelineError(msg) from None


def has_parameters_cell(nb: Mapping) -> bool:
    """True if the first code cell is tagged ``parameters`` (docs/architecture.md)."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            return "parameters" in ((cell.get("metadata") or {}).get("tags") or [])
    return False


def _topological(specs: Mapping[str, NotebookSpec]) -> tuple[list[str], list[str] | None]:
    """(order, None) or (partial order, one cycle as a list of names)."""
    names = list(specs)
    state: dict[str, int] = {}  # 1 visiting, 2 done
    order: list[str] = []
    for start in names:
        if state.get(start):
            continue
        stack = [(start, iter(specs[start].depends_on))]
        path = [start]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            dep = next(it, None)
            if dep is None:
                stack.pop()
                path.pop()
                state[node] = 2
                order.append(node)
                continue
            if dep not in specs:
                continue
            if state.get(dep) == 1:
                return order, path[path.index(dep):] + [dep]
            if not state.get(dep):
                state[dep] = 1
                stack.append((dep, iter(specs[dep].depends_on)))
                path.append(dep)
    return order, None


def build_graph(entries: Mapping, root: Path, source: str = "pipeline.yaml") -> Graph:
    """Validate DAG entries (a mapping name -> entry) and return the :class:`Graph`."""
    problems: list[str] = []
    if not isinstance(entries, Mapping) or not entries:
        msg = f"{source}: key 'notebooks': expected a non-empty mapping of notebook name -> entry"
        raise PipelineError(msg)
    names = [str(n) for n in entries]
    specs: dict[str, NotebookSpec] = {}
    for name, entry in entries.items():
        name = str(name)
        where = f"{source}: notebooks.{name}"
        if not LABEL_RE.match(name):
            problems.append(f"{where}: notebook name {name!r} has characters outside [A-Za-z0-9_.-] or starts with '.' "
                            "(it names a directory under reports/<bucket>/)")
            continue
        if not isinstance(entry, Mapping):
            problems.append(f"{where}: expected a mapping with 'path' and 'depends_on', got {entry!r}")
            continue
        for k in entry:
            if k not in _ENTRY_KEYS:
                problems.append(f"{where}: unknown key '{k}'; did you mean '{nearest(k, _ENTRY_KEYS)[0]}'?")
        path = entry.get("path")
        if not isinstance(path, str) or not path:
            problems.append(f"{where}.path: required, expected a notebook path such as notebooks/{name}.ipynb")
            continue
        nb_path = (root / path).resolve()
        deps = entry.get("depends_on") or []
        if not isinstance(deps, list):
            problems.append(f"{where}.depends_on: expected a list of notebook names, got {deps!r}")
            deps = []
        if deps == ["*"]:
            deps = [n for n in names if n != name and (entries.get(n) or {}).get("depends_on") != ["*"]]
        for d in deps:
            if d not in names:
                problems.append(
                    f"{where}.depends_on: unknown notebook {d!r}; did you mean {nearest(str(d), names)[0]!r}? "
                    f"(notebooks: {', '.join(names)})"
                )
        inputs = entry.get("inputs") or []
        if not isinstance(inputs, list) or any(i not in DATA_KEYS for i in inputs):
            problems.append(f"{where}.inputs: expected a list of data keys from {list(DATA_KEYS)}, got {inputs!r}")
            inputs = [i for i in inputs if i in DATA_KEYS] if isinstance(inputs, list) else []
        timeout = entry.get("timeout", DEFAULT_TIMEOUT_S)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            problems.append(f"{where}.timeout: expected a positive number of seconds, got {timeout!r}")
            timeout = DEFAULT_TIMEOUT_S
        if not nb_path.is_file():
            problems.append(f"{where}.path: notebook {nb_path} does not exist")
        else:
            try:
                if not has_parameters_cell(read_notebook(nb_path)):
                    problems.append(
                        f"{nb_path}: no 'parameters' cell; expected the first code cell to carry the tag 'parameters'"
                    )
            except PipelineError as exc:
                problems.append(str(exc))
        specs[name] = NotebookSpec(
            name=name, path=nb_path, depends_on=tuple(d for d in deps if d in names), timeout=float(timeout),
            inputs=tuple(inputs), always_run=bool(entry.get("always_run", False)),
        )
    if not problems:
        order, cycle = _topological(specs)
        if cycle:
            problems.append(f"{source}: dependency cycle {' -> '.join(cycle)} (each depends on the next)")
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        msg = f"invalid notebook DAG ({len(problems)} problem{'s' if len(problems) > 1 else ''})\n{lines}"
        raise PipelineError(msg)
    return Graph(specs=specs, order=order, source=Path(source))


def load_graph(root: Path, path: Path | None = None) -> Graph:
    """Load and validate ``parameters/pipeline.yaml`` (or ``path``) under the project ``root``."""
    path = Path(path) if path else root / "parameters" / "pipeline.yaml"
    doc = load_yaml(path) or {}
    if not isinstance(doc, Mapping) or "notebooks" not in doc:
        msg = f"{path}: expected a top-level key 'notebooks' (name -> {{path, depends_on}})"
        raise PipelineError(msg)
    graph = build_graph(doc["notebooks"], root, source=str(path))
    graph.source = path
    return graph
