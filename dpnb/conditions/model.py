"""Value objects of the conditions database: payloads, tag states, coverage and diff reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..runs import IOV, RunId

__all__ = [
    "Payload", "TagInfo", "CoverageReport", "DiffEntry", "TagDiff",
    "TAG_STATES", "LEGAL_TRANSITIONS",
]

TAG_STATES = ("OPEN", "TESTING", "VALIDATED", "PUBLISHED", "INVALID")
#: state -> states it may move to (PUBLISHED is reached through ConditionsDB.publish)
LEGAL_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "OPEN": ("TESTING", "INVALID"),
    "TESTING": ("VALIDATED", "INVALID"),
    "VALIDATED": ("PUBLISHED", "INVALID"),
    "PUBLISHED": ("INVALID",),
    "INVALID": (),
}


@dataclass(frozen=True, eq=False)
class Payload:
    """One payload as read from a tag; ``data`` is None when read without data."""

    name: str
    revision: str
    iov: IOV
    data: dict[str, Any] | None
    provenance: dict[str, Any]
    tag: str | None = None

    def __repr__(self) -> str:
        return f"Payload({self.name!r}, rev={self.revision[:12]}, iov={self.iov}, tag={self.tag!r})"


@dataclass(frozen=True)
class TagInfo:
    """One row of ``list_tags()``: name, state, description, created (UTC ISO), number of payloads."""

    name: str
    state: str
    description: str
    created: str
    n_payloads: int


@dataclass
class CoverageReport:
    """Gaps (runs without a payload) and overlaps (pairs of revisions whose IOVs overlap) per payload name."""

    ok: bool
    gaps: dict[str, list[RunId]] = field(default_factory=dict)
    overlaps: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    names: tuple[str, ...] = ()
    n_runs: int = 0

    def summary(self, max_items: int = 5) -> str:
        """One line per problem (runs and revisions shortened), or ``coverage ok``."""
        if self.ok:
            return f"coverage ok: {len(self.names)} payload name(s) x {self.n_runs} run(s)"
        lines = []
        if not self.names:
            lines.append("no payloads to check")
        if not self.n_runs:
            lines.append("no runs to check against")
        for name, runs in sorted(self.gaps.items()):
            shown = ", ".join(map(str, runs[:max_items])) + (" ..." if len(runs) > max_items else "")
            lines.append(f"{name}: {len(runs)} run(s) without a payload: {shown}")
        for name, pairs in sorted(self.overlaps.items()):
            shown = ", ".join(f"{a[:12]}/{b[:12]}" for a, b in pairs[:max_items])
            lines.append(f"{name}: {len(pairs)} overlapping IOV pair(s) (revisions {shown})")
        return "; ".join(lines)


@dataclass(frozen=True)
class DiffEntry:
    """One difference between two tags; ``kind`` is added, removed, changed (same IOV, new
    revision) or iov_changed (same revision, new IOV)."""

    kind: str
    name: str
    iov_a: IOV | None
    iov_b: IOV | None
    revision_a: str | None
    revision_b: str | None
    #: for ``changed`` entries read with ``diff(..., fields=True)``: (field, max |b - a|) of the differing fields
    fields: tuple[tuple[str, float], ...] = ()

    def __str__(self) -> str:
        sym = {"added": "+", "removed": "-", "changed": "~", "iov_changed": ">"}[self.kind]
        if self.kind == "added":
            return f"{sym} {self.name} {self.iov_b} {self.revision_b[:12]}"
        if self.kind == "removed":
            return f"{sym} {self.name} {self.iov_a} {self.revision_a[:12]}"
        if self.kind == "changed":
            detail = ", ".join(f"{f}: max |diff| {d:.4g}" for f, d in self.fields)
            return (f"{sym} {self.name} {self.iov_a} {self.revision_a[:12]} -> {self.revision_b[:12]}"
                    + (f"  ({detail})" if detail else ""))
        return f"{sym} {self.name} {self.revision_a[:12]} {self.iov_a} -> {self.iov_b}"


@dataclass
class TagDiff:
    """What changed from ``tag_a`` to ``tag_b``; ``n_same`` payloads are identical in both."""

    tag_a: str
    tag_b: str
    entries: list[DiffEntry]
    n_same: int = 0

    def of_kind(self, kind: str) -> list[DiffEntry]:
        return [e for e in self.entries if e.kind == kind]

    @property
    def added(self) -> list[DiffEntry]:
        return self.of_kind("added")

    @property
    def removed(self) -> list[DiffEntry]:
        return self.of_kind("removed")

    @property
    def changed(self) -> list[DiffEntry]:
        return self.of_kind("changed")

    @property
    def iov_changed(self) -> list[DiffEntry]:
        return self.of_kind("iov_changed")

    @property
    def identical(self) -> bool:
        return not self.entries
