"""Runs, intervals of validity and run ranges.

* ``RunId(exp, run)`` names a run; ordering is (exp, run).
* ``IOV(exp_first, run_first, exp_last, run_last)`` is inclusive; ``-1`` is an open end.
* Run ranges are written ``"7:909-4120"`` (exp 7, runs 909..4120), ``"7:12"`` (one run)
  or ``"7:909-"`` (open end).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from .errors import InputError

__all__ = ["RunId", "IOV", "RunRange", "parse_run_range", "parse_run_ranges", "runs_in_ranges"]

_RANGE_RE = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*(?:(-)\s*(\d+)?)?\s*$")


@dataclass(frozen=True, order=True)
class RunId:
    exp: int
    run: int

    def __str__(self) -> str:
        return f"{self.exp}:{self.run}"


@dataclass(frozen=True)
class IOV:
    """Inclusive interval of validity; ``-1`` in the last fields means open-ended."""

    exp_first: int
    run_first: int
    exp_last: int = -1
    run_last: int = -1

    def __post_init__(self):
        if self.exp_first < 0 or self.run_first < 0:
            msg = f"IOV start must be non-negative, got {self.exp_first}:{self.run_first}"
            raise InputError(msg)
        if self.exp_last == -1 and self.run_last != -1:
            msg = f"IOV with open experiment must have open run, got {self.as_tuple()}"
            raise InputError(msg)
        if not self.is_open and (self.exp_last, self.run_last) < (self.exp_first, self.run_first):
            msg = f"IOV end {self.exp_last}:{self.run_last} is before its start {self.exp_first}:{self.run_first}"
            raise InputError(msg)

    @classmethod
    def single(cls, run: RunId) -> "IOV":
        return cls(run.exp, run.run, run.exp, run.run)

    @property
    def is_open(self) -> bool:
        return self.exp_last == -1 or self.run_last == -1

    def _last_key(self) -> tuple[float, float]:
        if self.exp_last == -1:
            return (float("inf"), float("inf"))
        if self.run_last == -1:
            return (self.exp_last, float("inf"))
        return (self.exp_last, self.run_last)

    def contains(self, run: RunId) -> bool:
        return (self.exp_first, self.run_first) <= (run.exp, run.run) <= self._last_key()

    def overlaps(self, other: "IOV") -> bool:
        a0, a1 = (self.exp_first, self.run_first), self._last_key()
        b0, b1 = (other.exp_first, other.run_first), other._last_key()
        return a0 <= b1 and b0 <= a1

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.exp_first, self.run_first, self.exp_last, self.run_last)

    def __str__(self) -> str:
        return "({},{},{},{})".format(*self.as_tuple())


@dataclass(frozen=True)
class RunRange:
    exp: int
    first: int
    last: int  # -1 = open end

    def contains(self, run: RunId) -> bool:
        return run.exp == self.exp and run.run >= self.first and (self.last == -1 or run.run <= self.last)

    def __str__(self) -> str:
        if self.last == self.first:
            return f"{self.exp}:{self.first}"
        return f"{self.exp}:{self.first}-{'' if self.last == -1 else self.last}"


def parse_run_range(text: str, where: str = "run range") -> RunRange:
    """Parse ``"7:909-4120"``, ``"7:12"`` or ``"7:909-"``; ``where`` names the place for errors."""
    m = _RANGE_RE.match(str(text))
    if not m:
        msg = f"{where}: {text!r} is not a run range; expected 'EXP:FIRST-LAST' such as '7:909-4120', 'EXP:RUN' or 'EXP:FIRST-'"
        raise InputError(msg)
    exp, first, dash, last = m.groups()
    exp, first = int(exp), int(first)
    if dash is None:
        return RunRange(exp, first, first)
    if last is None:
        return RunRange(exp, first, -1)
    last = int(last)
    if last < first:
        msg = f"{where}: {text!r} ends (run {last}) before it starts (run {first})"
        raise InputError(msg)
    return RunRange(exp, first, last)


def parse_run_ranges(items: Iterable[str], where: str = "runs") -> list[RunRange]:
    return [parse_run_range(t, f"{where}[{i}]") for i, t in enumerate(items)]


def runs_in_ranges(runs: Iterable[RunId], ranges: Iterable[RunRange]) -> list[RunId]:
    """The runs (sorted, unique) that fall in any of the ranges."""
    ranges = list(ranges)
    return sorted({r for r in runs if any(rr.contains(r) for rr in ranges)})
