"""The registry of calibration steps: order, payloads, quality gates and iteration limits.

One place says, for each of the five steps, its category, the steps it depends on, the
notebook that runs it, the payloads it writes, its gates (declared as data: name,
threshold, operator, unit), ``max_iterations``, the IOV strategy it uses and what it does
when an upstream payload is missing for some runs (``on_missing_upstream``: ``stop`` or
``skip`` those runs). :func:`check_registry` refuses unknown dependencies, cycles and
payloads written by two steps; :func:`topological_order` gives a deterministic run order.

A step reads its upstream constants from the conditions database only: use
:func:`missing_upstream` to find runs without them and :func:`runs_to_calibrate` to apply
the step's policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Iterable, Mapping

from ..errors import ConditionsError, PipelineError, nearest
from ..notebook import gate_verdict
from ..runs import RunId
from .payloads import PAYLOAD_NAMES

__all__ = [
    "StepStatus", "Gate", "Step", "STEPS", "CATEGORIES", "IOV_STRATEGIES",
    "get_step", "step_for_notebook", "step_producing", "check_registry", "topological_order",
    "upstream_steps", "upstream_payloads", "missing_upstream", "runs_to_calibrate", "check_pipeline",
]

CATEGORIES = ("raw", "alignment", "post-tracking", "analysis")
IOV_STRATEGIES = ("single", "run_by_run", "change_point")


class StepStatus(str, Enum):
    """Outcome of one step (or one IOV of it)."""

    OK = "OK"
    ITERATE = "ITERATE"                  # not converged yet; run again (up to max_iterations)
    NOT_ENOUGH_DATA = "NOT_ENOUGH_DATA"  # the IOV strategy merges the runs or the step is skipped
    FAILURE = "FAILURE"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Gate:
    """A quality gate: ``value op threshold`` must hold (ops of :func:`dpnb.notebook.gate_verdict`)."""

    name: str
    threshold: float | tuple[float, float]
    op: str
    unit: str = ""
    description: str = ""

    def verdict(self, value) -> str:
        """``pass`` or ``fail`` for ``value``."""
        return gate_verdict(value, self.threshold, self.op)

    def record(self, ctx, value, threshold=None) -> str:
        """Record this gate with ``value`` in a notebook context (``threshold`` overrides the
        declared one, e.g. from a notebook option); returns the verdict."""
        return ctx.gate(self.name, value, self.threshold if threshold is None else threshold, self.op,
                        unit=self.unit or None, description=self.description)


@dataclass(frozen=True)
class Step:
    """One calibration step as declared in the registry (see the module docstring)."""

    name: str
    category: str
    notebook: str
    depends_on: tuple[str, ...]
    payloads: tuple[str, ...]
    gates: tuple[Gate, ...]
    max_iterations: int = 1
    iov_strategy: str = "single"
    on_missing_upstream: str = "stop"
    description: str = ""

    def gate(self, name: str) -> Gate:
        for g in self.gates:
            if g.name == name:
                return g
        msg = f"step {self.name!r} has no gate {name!r}; gates: {[g.name for g in self.gates]}"
        raise PipelineError(msg)


STEPS: dict[str, Step] = {
    s.name: s
    for s in (
        Step("channel_masking", "raw", "calibration_masking", (), ("ChannelMask",),
             (Gate("masked_fraction", 0.05, "<", "", "fraction of channels masked hot or dead"),),
             description="hot and dead channels from occupancy relative to a robust reference"),
        Step("time_offsets", "raw", "calibration_t0", ("channel_masking",), ("ChannelT0",),
             (Gate("fit_converged_fraction", 0.99, ">=", "", "fraction of calibrated channels whose fit converged"),
              Gate("not_enough_data_fraction", 0.05, "<", "", "fraction of unmasked channels without enough hits")),
             description="per-channel time offsets from the drift-time peak"),
        Step("alignment", "alignment", "calibration_alignment", ("time_offsets",), ("ModuleAlignment",),
             (Gate("last_shift_change_um", 0.5, "<", "um", "largest module shift change in the last iteration"),
              Gate("mean_abs_residual_um", 2.0, "<", "um", "mean |residual| per module after alignment")),
             max_iterations=10,
             description="silicon module x/y shifts from track residuals, iterated"),
        Step("post_tracking", "post-tracking", "calibration_post_tracking", ("alignment",),
             ("BeamSpot", "DedxGain"),
             (Gate("beamspot_fit_converged_fraction", 0.99, ">=", "", "fraction of runs whose beam-spot fit converged"),
              Gate("dedx_gain_rel_err", 0.01, "<", "", "largest relative uncertainty of a run's dE/dx gain")),
             iov_strategy="run_by_run", on_missing_upstream="skip",
             description="beam-spot position and size and dE/dx gain per run"),
        Step("beam_energy", "analysis", "calibration_beam_energy", ("post_tracking",), ("BeamEnergy",),
             (Gate("dimuon_fit_converged_fraction", 1.0, ">=", "", "fraction of run ranges whose mass fit converged"),
              Gate("ecm_err_gev", 0.005, "<", "GeV", "largest uncertainty of a range's centre-of-mass energy")),
             iov_strategy="change_point", on_missing_upstream="skip",
             description="centre-of-mass energy from the dimuon mass peak, with change-point ranges"),
    )
}


def _registry(steps: Mapping[str, Step] | None) -> Mapping[str, Step]:
    return STEPS if steps is None else steps


def get_step(name: str, steps: Mapping[str, Step] | None = None) -> Step:
    """The step called ``name``; an unknown name lists the nearest."""
    reg = _registry(steps)
    if name not in reg:
        msg = f"unknown calibration step {name!r}; expected one of {list(reg)} (nearest: {nearest(name, reg)})"
        raise PipelineError(msg)
    return reg[name]


def step_for_notebook(notebook: str, steps: Mapping[str, Step] | None = None) -> Step:
    """The step run by notebook ``notebook`` (e.g. ``calibration_t0`` -> time_offsets)."""
    reg = _registry(steps)
    for s in reg.values():
        if s.notebook == notebook:
            return s
    msg = f"no calibration step runs notebook {notebook!r}; notebooks: {[s.notebook for s in reg.values()]}"
    raise PipelineError(msg)


def step_producing(payload: str, steps: Mapping[str, Step] | None = None) -> Step:
    """The step that writes payload ``payload``."""
    reg = _registry(steps)
    for s in reg.values():
        if payload in s.payloads:
            return s
    known = sorted(p for s in reg.values() for p in s.payloads)
    msg = f"no calibration step writes payload {payload!r}; payloads: {known}"
    raise PipelineError(msg)


def check_registry(steps: Mapping[str, Step] | None = None) -> None:
    """Raise PipelineError listing every problem: unknown category, dependency, payload or IOV
    strategy, payloads written by two steps, bad ``max_iterations``, and dependency cycles."""
    reg = _registry(steps)
    problems = []
    writer: dict[str, str] = {}
    for s in reg.values():
        if s.category not in CATEGORIES:
            problems.append(f"step {s.name!r}: category {s.category!r} not in {list(CATEGORIES)}")
        if s.iov_strategy not in IOV_STRATEGIES:
            problems.append(f"step {s.name!r}: iov_strategy {s.iov_strategy!r} not in {list(IOV_STRATEGIES)}")
        if s.on_missing_upstream not in ("stop", "skip"):
            problems.append(f"step {s.name!r}: on_missing_upstream {s.on_missing_upstream!r} not 'stop' or 'skip'")
        if not isinstance(s.max_iterations, int) or s.max_iterations < 1:
            problems.append(f"step {s.name!r}: max_iterations {s.max_iterations!r} must be an integer >= 1")
        for d in s.depends_on:
            if d not in reg:
                problems.append(f"step {s.name!r} depends on unknown step {d!r} (nearest: {nearest(d, reg)})")
        for p in s.payloads:
            if p not in PAYLOAD_NAMES:
                problems.append(f"step {s.name!r}: unknown payload {p!r}; schemas: {list(PAYLOAD_NAMES)}")
            elif p in writer:
                problems.append(f"payload {p!r} written by both {writer[p]!r} and {s.name!r}")
            writer.setdefault(p, s.name)
    cycle = _find_cycle(reg)
    if cycle:
        problems.append("dependency cycle: " + " -> ".join(cycle))
    if problems:
        msg = "invalid calibration step registry:\n" + "\n".join(f"  - {p}" for p in problems)
        raise PipelineError(msg)


def _find_cycle(reg: Mapping[str, Step]) -> list[str] | None:
    """One dependency cycle as a closed path of step names, or None (depth-first search)."""
    colour: dict[str, int] = {}  # 1 on the current path, 2 finished
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        colour[n] = 1
        path.append(n)
        for d in sorted(reg[n].depends_on):
            if d not in reg:
                continue
            if colour.get(d) == 1:
                return path[path.index(d):] + [d]
            if d not in colour:
                found = visit(d)
                if found:
                    return found
        path.pop()
        colour[n] = 2
        return None

    for n in sorted(reg):
        if n not in colour:
            found = visit(n)
            if found:
                return found
    return None


def topological_order(steps: Mapping[str, Step] | None = None) -> list[str]:
    """Step names so that each comes after its dependencies; ties in registry order."""
    reg = _registry(steps)
    check_registry(reg)
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(reg):
        # registry order among the ready steps keeps the result stable
        ready = next(n for n, s in reg.items() if n not in done and all(d in done for d in s.depends_on))
        order.append(ready)
        done.add(ready)
    return order


def upstream_steps(name: str, steps: Mapping[str, Step] | None = None, transitive: bool = True) -> list[str]:
    """The steps ``name`` depends on (all ancestors when ``transitive``), in topological order."""
    reg = _registry(steps)
    todo, seen = list(get_step(name, reg).depends_on), set()
    while todo:
        d = todo.pop()
        if d not in seen:
            seen.add(d)
            if transitive:
                todo.extend(reg[d].depends_on)
    return [n for n in topological_order(reg) if n in seen]


def upstream_payloads(name: str, steps: Mapping[str, Step] | None = None, transitive: bool = False) -> list[str]:
    """Payload names written by the steps ``name`` depends on (direct ones unless ``transitive``)."""
    reg = _registry(steps)
    return [p for d in upstream_steps(name, reg, transitive) for p in reg[d].payloads]


def missing_upstream(db, name: str, runs: Iterable[RunId], tags, steps: Mapping[str, Step] | None = None,
                     transitive: bool = False) -> dict[str, list[RunId]]:
    """Upstream payload name -> runs without it in the tag chain (only names with missing runs)."""
    runs = list(runs)
    out = {}
    for payload in upstream_payloads(name, steps, transitive):
        missing = db.runs_missing(payload, runs, tags)
        if missing:
            out[payload] = missing
    return out


def runs_to_calibrate(db, name: str, runs: Iterable[RunId], tags, steps: Mapping[str, Step] | None = None,
                      policy: str | None = None) -> tuple[list[RunId], dict[RunId, str]]:
    """Apply a missing-upstream policy: ``(runs to use, {skipped run: reason})``.

    ``policy`` is the step's ``on_missing_upstream`` unless given (a notebook option):
    ``stop`` (or ``fail``) raises ConditionsError naming the payloads and runs without
    them; ``skip`` returns those runs as skipped with the reason.
    """
    step = get_step(name, steps)
    policy = policy or step.on_missing_upstream
    if policy not in ("stop", "fail", "skip"):
        msg = f"step {name!r}: missing-upstream policy {policy!r}; expected 'fail' (or 'stop') or 'skip'"
        raise ConditionsError(msg)
    runs = sorted(set(runs))
    missing = missing_upstream(db, name, runs, tags, steps)
    if not missing:
        return runs, {}
    if policy in ("stop", "fail"):
        detail = "; ".join(f"{p}: {len(rs)} run(s) {', '.join(map(str, rs[:5]))}{' ...' if len(rs) > 5 else ''}"
                           for p, rs in sorted(missing.items()))
        chain = [tags] if isinstance(tags, str) else list(tags)
        msg = (f"step {name!r}: upstream payloads missing in tag chain {chain}: {detail} "
               f"(run the upstream step first, or set the policy to 'skip'; it is {policy!r})")
        raise ConditionsError(msg)
    skipped: dict[RunId, str] = {}
    for p, rs in sorted(missing.items()):
        for r in rs:
            skipped[r] = (skipped[r] + ", " if r in skipped else "no upstream payload ") + p
    return [r for r in runs if r not in skipped], skipped


def check_pipeline(dag: Mapping[str, Mapping], steps: Mapping[str, Step] | None = None) -> None:
    """Check that a notebook DAG (``parameters/pipeline.yaml``'s ``notebooks``: name ->
    ``{depends_on: [...]}``) runs each step's notebook after its upstream steps' notebooks.

    Only steps whose notebook is in ``dag`` are checked; a missing ordering raises
    PipelineError listing every missing edge.
    """
    reg = _registry(steps)

    def ancestors(nb: str, seen: set[str]) -> set[str]:
        for d in (dag.get(nb) or {}).get("depends_on") or []:
            if d not in seen:
                seen.add(d)
                ancestors(d, seen)
        return seen

    problems = []
    for s in reg.values():
        if s.notebook not in dag:
            continue
        before = ancestors(s.notebook, set())
        for d in s.depends_on:
            up = reg[d].notebook
            if up not in before:
                problems.append(f"notebook {s.notebook!r} (step {s.name!r}) must depend on {up!r} (step {d!r})")
    if problems:
        msg = "notebook DAG disagrees with the calibration step registry:\n" + "\n".join(f"  - {p}" for p in problems)
        raise PipelineError(msg)
