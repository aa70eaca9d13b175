"""IOV strategies: which runs are calibrated together and the interval of validity of the result.

* :func:`single_iov` — one IOV for the whole bucket, from its first to its last run.
* :func:`run_by_run` — one IOV per run; a run without enough data is merged into its
  neighbour: into the previous group, or, for runs before the first run with enough data,
  into the next one. If no run has enough data, all runs form one group (the pooled data
  is all there is; the caller checks whether the pool is enough and otherwise reports
  NOT_ENOUGH_DATA).
* :func:`split_at` — consecutive run ranges starting at given runs (e.g. change points).

Each group's IOV runs from its first to its last run, so runs between them that are not in
the bucket's list (bad or excluded runs) fall inside an IOV too; groups never overlap.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from ..errors import InputError
from ..runs import IOV, RunId

__all__ = ["single_iov", "run_by_run", "split_at", "iov_of"]


def _sorted_runs(runs: Iterable[RunId], where: str) -> list[RunId]:
    out = sorted(set(runs))
    if not out:
        msg = f"{where}: no runs given; expected at least one RunId"
        raise InputError(msg)
    bad = [r for r in out if not isinstance(r, RunId)]
    if bad:
        msg = f"{where}: expected RunId values, got {bad[:3]!r}"
        raise InputError(msg)
    return out


def iov_of(runs: Iterable[RunId]) -> IOV:
    """The closed IOV from the first to the last of ``runs``."""
    rs = _sorted_runs(runs, "iov_of")
    return IOV(rs[0].exp, rs[0].run, rs[-1].exp, rs[-1].run)


def single_iov(runs: Iterable[RunId]) -> IOV:
    """One IOV covering every run of the bucket (first run to last run, inclusive)."""
    return iov_of(_sorted_runs(runs, "single_iov"))


def run_by_run(runs: Iterable[RunId], enough: Mapping[RunId, bool]) -> list[tuple[IOV, list[RunId]]]:
    """Groups of runs calibrated together, one per run with enough data, in run order.

    ``enough[run]`` says whether ``run`` alone has enough data (every run must be a key).
    A run without enough data joins the previous group, or the next one when no earlier run
    has enough data; if no run has enough data, all runs form a single group.
    Returns ``[(IOV, [runs]), ...]`` with IOVs from the group's first to last run.
    """
    rs = _sorted_runs(runs, "run_by_run")
    missing = [r for r in rs if r not in enough]
    if missing:
        shown = ", ".join(map(str, missing[:5]))
        msg = f"run_by_run: no 'enough data' verdict for run(s) {shown}; expected one for every run"
        raise InputError(msg)
    groups: list[list[RunId]] = []
    leading: list[RunId] = []  # runs before the first run with enough data
    for r in rs:
        if enough[r]:
            groups.append(leading + [r])
            leading = []
        elif groups:
            groups[-1].append(r)
        else:
            leading.append(r)
    if leading:  # no run had enough data
        groups.append(leading)
    return [(iov_of(g), g) for g in groups]


def split_at(runs: Iterable[RunId], starts: Iterable[RunId]) -> list[tuple[IOV, list[RunId]]]:
    """Consecutive groups of ``runs``, a new one beginning at each run of ``starts``.

    ``starts`` are runs where a constant changes (e.g. a detected beam-energy step); a
    start before the first run or not in ``runs`` begins its group at the next run listed.
    """
    rs = _sorted_runs(runs, "split_at")
    cuts = sorted(set(starts))
    groups: list[list[RunId]] = [[]]
    ci = 0
    for r in rs:
        advanced = False
        while ci < len(cuts) and cuts[ci] <= r:
            ci += 1
            advanced = True
        if advanced and groups[-1]:
            groups.append([])
        groups[-1].append(r)
    return [(iov_of(g), g) for g in groups]
