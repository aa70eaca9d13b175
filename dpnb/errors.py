"""One exception hierarchy for dpnb.

Every error raised on bad input derives from :class:`DpnbError`. The messages name the
file and the place (line, branch, key) and what was expected. All exceptions keep their
constructor arguments in ``args`` so they survive pickling (process pools, Dask).
"""

from __future__ import annotations

__all__ = [
    "DpnbError",
    "ParameterError",
    "InputError",
    "SchemaError",
    "ConditionsError",
    "ChecksumError",
    "TagStateError",
    "PipelineError",
    "LockError",
    "nearest",
]


class DpnbError(Exception):
    """Base class of every dpnb error."""


class ParameterError(DpnbError):
    """Invalid parameters. ``problems`` lists every problem found (file, key, message)."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message, problems or [])
        self.problems = list(problems or [])

    def __str__(self) -> str:
        if not self.problems:
            return str(self.args[0])
        lines = "\n".join(f"  - {p}" for p in self.problems)
        return f"{self.args[0]}\n{lines}"


class InputError(DpnbError):
    """A bad input file: malformed line, missing branch, wrong value."""


class SchemaError(InputError):
    """A file or table does not have the expected structure (missing branch, column, key)."""


class ConditionsError(DpnbError):
    """Conditions database problem (missing payload, bad IOV)."""


class ChecksumError(ConditionsError):
    """Stored data does not match its recorded checksum."""


class TagStateError(ConditionsError):
    """A change was asked of a global tag whose state forbids it."""


class PipelineError(DpnbError):
    """The notebook DAG is invalid or a notebook cannot be run."""


class LockError(PipelineError):
    """Another process holds the lock on a bucket's reports."""


def nearest(name: str, candidates, n: int = 3) -> list[str]:
    """The candidates closest to ``name`` (for 'did you mean' messages), nearest first."""
    import difflib

    cands = [str(c) for c in candidates]
    close = difflib.get_close_matches(str(name), cands, n=n, cutoff=0.4)
    if close:
        return close
    return sorted(cands)[:n]
