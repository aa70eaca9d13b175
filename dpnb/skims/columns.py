"""The columns a skim selection can name: branches of the file plus a few derived ones.

Per-event columns have one value per row; per-object columns belong to a *collection*
(``trk``, ``clus``, ``hit``: the prefix before the first ``_``) and share its offsets.
Derived columns are computed on demand from branches with the kernels of
:mod:`dpnb.kernels.select`; each exists only when its source branches do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..detector import CLUSTER_BRANCHES, EVENT_BRANCHES, HIT_BRANCHES, PION_MASS_GEV, TRACK_BRANCHES
from ..kernels import select as ks

__all__ = ["ColumnSet", "DERIVED", "detector_columns", "columns_from_branches", "ChunkColumns", "collection_of"]


def collection_of(branch: str) -> str:
    """The collection a per-object branch belongs to (``trk_px`` -> ``trk``)."""
    return branch.split("_", 1)[0]


@dataclass(frozen=True)
class Derived:
    """A derived column: its kind (``event`` or a collection name), sources, unit and meaning."""

    kind: str
    sources: tuple[str, ...]
    unit: str
    doc: str


#: derived columns; ``kind`` is "event" or the collection of a per-object column
DERIVED: dict[str, Derived] = {
    "trk_pt": Derived("trk", ("trk_px", "trk_py"), "GeV", "transverse momentum"),
    "trk_p": Derived("trk", ("trk_px", "trk_py", "trk_pz"), "GeV", "momentum"),
    "trk_costheta": Derived("trk", ("trk_px", "trk_py", "trk_pz"), "", "cos of the polar angle"),
    "ntrk": Derived("event", ("trk_px",), "", "number of tracks"),
    "nclus": Derived("event", ("clus_energy",), "", "number of clusters"),
    "m_2trk": Derived(
        "event", ("trk_px", "trk_py", "trk_pz"), "GeV",
        "invariant mass of the two highest-momentum tracks (pion mass hypothesis; NaN if < 2 tracks)",
    ),
    "ntrk_lead_hemi": Derived("event", ("trk_px", "trk_py", "trk_pz"), "", "tracks in the leading track's hemisphere"),
    "ntrk_opp_hemi": Derived("event", ("trk_px", "trk_py", "trk_pz"), "", "tracks in the opposite hemisphere"),
    "e_clus_total": Derived("event", ("clus_energy",), "GeV", "sum of cluster energies"),
    "e_clus_max": Derived("event", ("clus_energy",), "GeV", "largest cluster energy (0 if none)"),
}


@dataclass(frozen=True)
class ColumnSet:
    """Names a selection may use: ``event`` columns and ``objects`` (column -> collection)."""

    event: frozenset = frozenset()
    objects: dict = field(default_factory=dict)

    def kind(self, name: str) -> str | None:
        """``"event"``, the collection name, or None for an unknown column."""
        if name in self.event:
            return "event"
        return self.objects.get(name)

    @property
    def names(self) -> list[str]:
        return sorted(set(self.event) | set(self.objects))


def columns_from_branches(flat: list[str], jagged: list[str]) -> ColumnSet:
    """The columns available from these flat and jagged branch names (derived ones added)."""
    have = set(flat) | set(jagged)
    event = set(flat)
    objects = {b: collection_of(b) for b in jagged}
    for name, d in DERIVED.items():
        if all(s in have for s in d.sources) and name not in have:
            if d.kind == "event":
                event.add(name)
            else:
                objects[name] = d.kind
    return ColumnSet(frozenset(event), objects)


def detector_columns() -> ColumnSet:
    """The columns of dpnb's event files (``dpnb.detector`` schema) plus the derived ones."""
    return columns_from_branches(list(EVENT_BRANCHES), list(HIT_BRANCHES + TRACK_BRANCHES + CLUSTER_BRANCHES))


def source_branches(names) -> set[str]:
    """The file branches needed to compute the columns ``names``."""
    out: set[str] = set()
    for n in names:
        if n in DERIVED:
            out.update(DERIVED[n].sources)
        else:
            out.add(n)
    return out


class ChunkColumns:
    """Column values of one :class:`dpnb.io.events.Chunk`, derived ones computed once."""

    def __init__(self, chunk, n_threads: int = 1):
        self.chunk = chunk
        self.n_threads = int(n_threads)
        self.n_events = chunk.n_events
        self._cache: dict[str, np.ndarray] = {}

    def offsets(self, collection: str) -> np.ndarray:
        """Offsets of a collection (from any of its branches that was read)."""
        for name, off in self.chunk.offsets.items():
            if collection_of(name) == collection:
                return off
        msg = f"{self.chunk.path}: no branch of collection {collection!r} was read"
        raise KeyError(msg)

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self._cache:
            return self._cache[name]
        if name in self.chunk.flat or name in self.chunk.values:
            return self.chunk[name]
        value = self._derive(name)
        self._cache[name] = value
        return value

    def _derive(self, name: str) -> np.ndarray:
        c = self.chunk
        t = self.n_threads
        if name == "trk_pt":
            x = c["trk_px"].astype(np.float64)
            y = c["trk_py"].astype(np.float64)
            return np.sqrt(x * x + y * y)  # float64 like the kernels; sqrt is faster than hypot
        if name == "trk_p":
            pt = self["trk_pt"]
            z = c["trk_pz"].astype(np.float64)
            return np.sqrt(pt * pt + z * z)
        if name == "trk_costheta":
            p = self["trk_p"]
            return np.divide(c["trk_pz"], p, out=np.zeros_like(p), where=p > 0)
        if name == "ntrk":
            return np.diff(self.offsets("trk"))
        if name == "nclus":
            return np.diff(self.offsets("clus"))
        if name == "m_2trk":
            return ks.leading_pair_mass(c["trk_px"], c["trk_py"], c["trk_pz"], self.offsets("trk"), PION_MASS_GEV, t)
        if name in ("ntrk_lead_hemi", "ntrk_opp_hemi"):
            same, opp = ks.hemisphere_counts(c["trk_px"], c["trk_py"], c["trk_pz"], self.offsets("trk"), t)
            self._cache["ntrk_lead_hemi"], self._cache["ntrk_opp_hemi"] = same, opp
            return same if name == "ntrk_lead_hemi" else opp
        if name == "e_clus_total":
            return ks.sum_per_event(c["clus_energy"], self.offsets("clus"), t)
        if name == "e_clus_max":
            return ks.max_per_event(c["clus_energy"], self.offsets("clus"), 0.0, t)
        msg = f"{c.path}: column {name!r} was not read and is not a derived column"
        raise KeyError(msg)
