"""Coverage of a run list by payload IOVs, and the difference between two tags' contents.

Pure functions over (name, IOV, revision) triples; :class:`~dpnb.conditions.ConditionsDB`
reads the triples (checksums verified) and calls these.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..runs import IOV, RunId
from .model import CoverageReport, DiffEntry, TagDiff

__all__ = ["uncovered_runs", "coverage_report", "diff_contents", "field_changes"]


def _end_key(iov: IOV) -> tuple:
    inf = float("inf")
    if iov.exp_last == -1:
        return (inf, inf)
    return (iov.exp_last, inf if iov.run_last == -1 else iov.run_last)


def _iov_key(iov: IOV) -> tuple:
    return iov.as_tuple()


def uncovered_runs(runs: Iterable[RunId], iovs: Iterable[IOV]) -> list[RunId]:
    """The runs (sorted) inside none of the IOVs, in one sweep (not runs x IOVs).

    IOVs are sorted by start; for increasing runs, IOVs ending before the run are passed
    for good. The first remaining IOV contains the run unless it starts after it, and then
    so do all later ones.
    """
    spans = sorted(((iv.exp_first, iv.run_first), _end_key(iv)) for iv in iovs)
    out, i = [], 0
    for run in sorted(runs):
        key = (run.exp, run.run)
        while i < len(spans) and spans[i][1] < key:
            i += 1
        if i == len(spans) or key < spans[i][0]:
            out.append(run)
    return out


def overlapping_pairs(items: Iterable[tuple[IOV, str]]) -> list[tuple[str, str]]:
    """Revision pairs ``(earlier, later)`` whose IOVs overlap."""
    ivs = sorted(items, key=lambda x: (x[0].exp_first, x[0].run_first))
    pairs = []
    for i, (a, rev_a) in enumerate(ivs):
        for b, rev_b in ivs[i + 1:]:
            if not a.overlaps(b):  # sorted by start: every later one starts after a ends too
                break
            pairs.append((rev_a, rev_b))
    return pairs


def coverage_report(by_name: Mapping[str, Sequence[tuple[IOV, str]]], runs: Sequence[RunId],
                    names: Iterable[str] | None = None) -> CoverageReport:
    """Gaps and overlaps per payload name; ``by_name`` maps name -> [(IOV, revision)]."""
    names = tuple(sorted(by_name) if names is None else names)
    gaps, overlaps = {}, {}
    for name in names:
        items = list(by_name.get(name, []))
        missing = uncovered_runs(runs, [iov for iov, _ in items])
        if missing:
            gaps[name] = missing
        pairs = overlapping_pairs(items)
        if pairs:
            overlaps[name] = pairs
    ok = bool(names) and bool(runs) and not gaps and not overlaps
    return CoverageReport(ok, gaps, overlaps, names, len(runs))


def diff_contents(tag_a: str, tag_b: str, a: set[tuple[str, IOV, str]], b: set[tuple[str, IOV, str]]) -> TagDiff:
    """Entries added, removed, changed (same name and IOV, new revision) and iov_changed
    (same name and revision, new IOV) from ``a`` to ``b`` (sets of (name, IOV, revision))."""
    def key(x):
        return (x[0], _iov_key(x[1]), x[2])

    same = a & b
    only_a, only_b = sorted(a - same, key=key), sorted(b - same, key=key)
    entries: list[DiffEntry] = []
    for pairing, kind in ((lambda x, y: x[:2] == y[:2], "changed"),
                          (lambda x, y: x[0] == y[0] and x[2] == y[2], "iov_changed")):
        for x in list(only_a):
            match = next((y for y in only_b if pairing(x, y)), None)
            if match is not None:
                entries.append(DiffEntry(kind, x[0], x[1], match[1], x[2], match[2]))
                only_a.remove(x)
                only_b.remove(match)
    entries += [DiffEntry("removed", n, iov, None, rev, None) for n, iov, rev in only_a]
    entries += [DiffEntry("added", n, None, iov, None, rev) for n, iov, rev in only_b]
    entries.sort(key=lambda e: (e.name, _iov_key(e.iov_a or e.iov_b), e.kind))
    return TagDiff(tag_a, tag_b, entries, len(same))


def field_changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[tuple[str, float], ...]:
    """(field, max |b - a|) for every field whose values differ (NaN equals NaN; inf if the shapes differ)."""
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = np.asarray(a.get(key, np.nan), dtype=float), np.asarray(b.get(key, np.nan), dtype=float)
        if x.shape != y.shape:
            out.append((key, float("inf")))
            continue
        differ = ~((x == y) | (np.isnan(x) & np.isnan(y)))
        if differ.any():
            with np.errstate(invalid="ignore"):
                d = np.abs(y - x)[differ]
            out.append((key, float(np.nanmax(d)) if np.isfinite(d).any() else float("inf")))
    return tuple(out)
