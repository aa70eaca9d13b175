"""Run skims over the files of one sample: retention, CPU time, output size, multiplicity.

Events are counted as distinct ``(exp, run, event)``: a file may hold several candidate
rows per event (as the real CMS file does), and an event is selected when any of its rows
passes. Each skim's selected rows are written to a real ROOT file (uproot, ZSTD) through
a temporary name and an atomic rename, so sizes per event are measured, not estimated:
``output_bytes`` is the compressed size of the written branches read back from the file
(the fixed ~30 kB of ROOT headers and streamers per file would dominate small test
samples), ``output_file_bytes`` the size on disk; ``input_bytes`` is the compressed size
of the same branches (and their counters) in the input, so ``retention_bytes`` compares
like with like.
Memory grows only with the keys of the sample (24 bytes per row) and a few bytes per row
and skim; event data is read ``step_size`` rows at a time.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import InputError, ParameterError
from ..io.events import iterate_chunks, open_tree
from ..kernels import select as ks
from .columns import ChunkColumns, ColumnSet, collection_of, columns_from_branches
from .expr import compile_expression

__all__ = [
    "HistSpec",
    "EmptySampleError",
    "SkimSampleStats",
    "SampleResult",
    "compile_histograms",
    "file_columns",
    "run_sample",
    "KEY_BRANCHES",
    "MAX_MULTIPLICITY",
]

KEY_BRANCHES = ("exp", "run", "event")
#: multiplicities at or above this value share the last bin
MAX_MULTIPLICITY = 10


class EmptySampleError(InputError):
    """A sample without files or without events: its retention is undefined."""


@dataclass(frozen=True)
class HistSpec:
    """A histogram of a key variable: an expression (per event or per object), binning, unit."""

    name: str
    expression: str
    bins: int
    lo: float
    hi: float
    unit: str = ""
    label: str = ""

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(self.lo, self.hi, self.bins + 1)


def compile_histograms(specs: Mapping, columns: ColumnSet, source: str = "histograms") -> tuple[dict, list]:
    """``{name: {expression, bins, range, unit, label}}`` -> (``{name: (HistSpec, Expression)}``,
    names left out because their columns do not exist in ``columns``)."""
    out: dict = {}
    skipped = []
    for name, spec in (specs or {}).items():
        try:
            lo, hi = (float(x) for x in spec["range"])
            h = HistSpec(name, str(spec["expression"]), int(spec["bins"]), lo, hi, spec.get("unit", ""),
                         spec.get("label", name))
        except (KeyError, TypeError, ValueError):
            msg = f"{source}.{name}: expected {{expression: str, bins: int, range: [lo, hi], unit: str, label: str}}, got {spec!r}"
            raise ParameterError(msg) from None
        if h.bins <= 0 or not h.hi > h.lo:
            msg = f"{source}.{name}: expected bins > 0 and range[1] > range[0], got bins={h.bins}, range={[lo, hi]}"
            raise ParameterError(msg)
        if any(columns.kind(c) is None for c in _identifiers(h.expression) if c not in _FUNCS):
            skipped.append(name)
            continue
        out[name] = (h, compile_expression(h.expression, columns, where=f"{source}.{name}", want="value"))
    return out, skipped


_FUNCS = {"count", "any", "all", "sum", "max", "min", "abs", "sqrt", "hlt", "and", "or", "not"}


def _identifiers(text: str) -> list[str]:
    """Names in an expression, quoted strings left out."""
    import re

    return re.findall(r"[A-Za-z_][A-Za-z0-9_]*", re.sub(r"'[^']*'|\"[^\"]*\"", "", text))


def file_columns(path, schema: Mapping[str, str] | None = None, tree: str = "events") -> tuple[ColumnSet, list[str]]:
    """Columns available in ``path`` (in dpnb's names through ``schema``) and those branch names."""
    schema = dict(schema or {})
    inverse = {v: k for k, v in schema.items()}
    t = open_tree(path, tree)
    try:
        flat, jagged = [], []
        for name in t.keys():
            ours = inverse.get(name, name)
            interp = str(t[name].typename)
            (jagged if "[]" in interp or "vector" in interp else flat).append(ours)
        # counters of collections (ntrk, nclus, ...) are implied by the jagged branches
        colls = {collection_of(b) for b in jagged}
        flat = [b for b in flat if not (b.startswith("n") and b[1:] in colls)]
    finally:
        t.file.close()
    return columns_from_branches(flat, jagged), flat + jagged


@dataclass
class SkimSampleStats:
    """Statistics of one skim on one sample (units in the field names; kB = 1000 bytes)."""

    skim: str
    sample: str
    n_input_events: int
    n_input_rows: int
    n_selected_events: int
    n_selected_rows: int
    retention: float
    retention_error: float
    input_bytes: int
    output_bytes: int
    output_file_bytes: int
    n_written_rows: int
    retention_bytes: float
    size_kb_per_selected_event: float | None
    size_kb_per_input_event: float
    cpu_ms_per_event: float
    wall_ms_per_event: float
    mean_multiplicity: float | None
    multiplicity_counts: list = field(default_factory=list)
    output_file: str = ""

    def row(self) -> dict:
        d = dict(self.__dict__)
        d.pop("multiplicity_counts")
        return d


@dataclass
class SampleResult:
    """Everything measured on one sample."""

    sample: str
    files: list
    n_input_events: int
    n_input_rows: int
    read_ms_per_event: float
    skims: list
    stats: dict  # skim -> SkimSampleStats
    histograms: dict  # skim -> {var: counts}
    hist_specs: dict  # var -> HistSpec
    overlap_counts: np.ndarray  # (n_skims, n_skims) distinct events selected by both


def _head(chunk, n: int):
    """The first ``n`` events of a chunk (a view), for warming up compiled kernels."""
    from ..io.events import Chunk

    n = min(n, chunk.n_events)
    head = Chunk(chunk.path, chunk.entry_start, chunk.entry_start + n)
    head.flat = {k: v[:n] for k, v in chunk.flat.items()}
    for k, off in chunk.offsets.items():
        head.offsets[k] = off[: n + 1]
        head.values[k] = chunk.values[k][: off[n]]
    return head


class _RootWriter:
    """Selected rows of one skim into a ROOT file, written atomically on close."""

    def __init__(self, path: Path, compression_level: int, max_rows: int | None = None):
        import uproot

        self.max_rows = max_rows
        self.n_written = 0
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.file = uproot.recreate(self.tmp, compression=uproot.ZSTD(compression_level))
        self.started = False

    def write(self, chunk, mask: np.ndarray, branches: list[str]) -> None:
        import awkward as ak

        if self.max_rows is not None and self.n_written + int(mask.sum()) > self.max_rows:
            # keep disk use bounded: write only the first rows up to max_rows
            mask = mask.copy()
            mask[np.flatnonzero(mask)[max(0, self.max_rows - self.n_written):]] = False
        self.n_written += int(mask.sum())
        data: dict = {}
        groups: dict[str, dict] = {}
        for b in branches:
            if chunk[b].dtype.kind not in "biuf":
                continue  # strings and objects cannot go into a TTree branch; skims keep numbers only
            if b in chunk.flat:
                data[b] = chunk.flat[b][mask]
            else:
                vals, off = chunk.jagged(b)
                counts = np.diff(off)
                sel = vals[np.repeat(mask, counts)]
                coll, _, fld = b.partition("_")
                groups.setdefault(coll, {})[fld or b] = ak.unflatten(sel, counts[mask])
        for coll, fields in groups.items():
            # one record per collection: uproot writes <coll>_<field> branches sharing counter n<coll>
            data[coll] = ak.zip(fields)
        if not self.started:
            # mktree makes a TTree (assigning a dict of records would make an RNTuple)
            types = {k: (v.type.content if isinstance(v, ak.Array) else v.dtype) for k, v in data.items()}
            self.tree = self.file.mktree("events", types)
            self.started = True
        if int(mask.sum()):
            self.tree.extend(data)

    def close(self) -> tuple[int, int]:
        """Finish the file; returns (file size, compressed bytes of its branches) in bytes."""
        import uproot

        self.file.close()
        os.replace(self.tmp, self.path)
        with uproot.open(self.path) as f:
            t = f["events"]
            payload = sum(int(t[b].compressed_bytes) for b in t.keys())
        return self.path.stat().st_size, payload

    def abort(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)


def _input_bytes(files, branches, schema, tree) -> int:
    """Compressed bytes the given branches (and their counters) take in the input files."""
    total = 0
    for path in files:
        t = open_tree(path, tree)
        try:
            have = set(t.keys())
            names = {schema.get(b, b) for b in branches}
            names |= {f"n{collection_of(b)}" for b in branches if f"n{collection_of(b)}" in have}
            total += sum(int(t[n].compressed_bytes) for n in names if n in have)
        finally:
            t.file.close()
    return total


def run_sample(
    skims: list,
    files: list,
    sample: str,
    *,
    schema: Mapping[str, str] | None = None,
    histograms: Mapping | None = None,
    output_dir: str | os.PathLike | None = None,
    output_branches: list[str] | None = None,
    step_size: int = 100_000,
    n_threads: int = 1,
    compression_level: int = 1,
    max_output_rows: int | None = None,
    tree: str = "events",
) -> SampleResult:
    """Run every skim over ``files`` (one sample) and measure its statistics.

    ``histograms`` is the first item returned by :func:`compile_histograms`; ``output_dir`` receives
    ``<skim>_<sample>.root`` (None: nothing written, sizes are 0); ``output_branches``
    (dpnb names) default to every branch of the input. CPU time (process time, all
    threads) covers the selection (derived columns included: each skim computes its own)
    and the writing of each skim, not the shared reading. ``max_output_rows`` caps the rows
    written per skim file (disk use); sizes are then scaled from the written rows to all
    selected rows (``n_written_rows`` < ``n_selected_rows`` says so).
    """
    files = [str(f) for f in files]
    if not files:
        msg = f"sample {sample!r}: no input files; retention is undefined"
        raise EmptySampleError(msg)
    schema = dict(schema or {})
    hists = dict(histograms or {})
    _, available = file_columns(files[0], schema, tree)
    keys = [k for k in KEY_BRANCHES if k in available]
    if not {"run", "event"} <= set(keys):
        msg = f"{files[0]}: tree {tree!r} needs branches 'run' and 'event' (map them with a schema); it has {sorted(available)}"
        raise InputError(msg)
    out_branches = list(output_branches) if output_branches is not None else list(available)
    out_branches = [b for b in out_branches if b in available]
    needed = set(keys) | set(out_branches if output_dir else [])
    for s in skims:
        needed.update(s.branches)
    for h, e in hists.values():
        needed.update(e.branches)

    names = [s.name for s in skims]
    writers = {}
    if output_dir is not None:
        writers = {s.name: _RootWriter(Path(output_dir) / f"{s.name}_{sample}.root", compression_level, max_output_rows)
                   for s in skims}
    cpu = dict.fromkeys(names, 0.0)
    wall = dict.fromkeys(names, 0.0)
    hist_counts = {s.name: {v: np.zeros(h.bins, dtype=np.int64) for v, (h, _) in hists.items()} for s in skims}
    key_parts: list[list[np.ndarray]] = [[] for _ in KEY_BRANCHES]
    pass_parts: dict[str, list] = {n: [] for n in names}
    cand_parts: dict[str, list] = {n: [] for n in names}
    read_s = 0.0
    warmed = False
    try:
        it = iterate_chunks(files, sorted(needed), tree=tree, step_size=step_size, schema=schema)
        while True:
            t0 = time.perf_counter()
            chunk = next(it, None)
            read_s += time.perf_counter() - t0
            if chunk is None:
                break
            if not warmed:
                warmed = True
                # load compiled kernels before timing, so the first skim is not charged for it
                warm = ChunkColumns(_head(chunk, 64), n_threads)
                for s in skims:
                    s.selection.evaluate(warm)
                    if s.candidates is not None:
                        s.candidates.evaluate(warm)
            n = chunk.n_events
            for i, k in enumerate(KEY_BRANCHES):
                key_parts[i].append(chunk.flat[k].astype(np.int64) if k in keys else np.zeros(n, dtype=np.int64))
            # histogram variables once per chunk (not timed), then filled per skim
            shared = ChunkColumns(chunk, n_threads)
            hvals = {}
            for v, (h, e) in hists.items():
                vals = np.asarray(e.evaluate(shared), dtype=np.float64)
                hvals[v] = (np.full(n, vals) if vals.ndim == 0 else vals,
                            None if e.kind == "event" else np.diff(shared.offsets(e.kind)))
            for s in skims:
                c0, w0 = time.process_time(), time.perf_counter()
                cols = ChunkColumns(chunk, n_threads)  # fresh per skim: timings do not depend on the order
                mask = np.asarray(s.selection.evaluate(cols), dtype=bool)
                if s.candidates is not None:
                    cand = s.candidates.evaluate(cols)
                    if s.candidates.kind != "event":
                        cand = ks.count_per_event(np.ascontiguousarray(cand, dtype=np.bool_),
                                                  cols.offsets(s.candidates.kind), n_threads)
                    cand = np.where(mask, np.asarray(cand, dtype=np.int64), 0)
                else:
                    cand = mask.astype(np.int64)
                if writers:
                    writers[s.name].write(chunk, mask, out_branches)
                cpu[s.name] += time.process_time() - c0
                wall[s.name] += time.perf_counter() - w0
                pass_parts[s.name].append(mask)
                cand_parts[s.name].append(cand)
                for v, (h, e) in hists.items():
                    vals, counts = hvals[v]
                    x = vals[mask if counts is None else np.repeat(mask, counts)]
                    hist_counts[s.name][v] += np.histogram(x[np.isfinite(x)], bins=h.bins, range=(h.lo, h.hi))[0]
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    n_rows = int(sum(len(p) for p in key_parts[0]))
    if n_rows == 0:
        for w in writers.values():
            w.abort()
        msg = f"sample {sample!r}: no events in {files}; retention is undefined"
        raise EmptySampleError(msg)
    sizes = {name: w.close() for name, w in writers.items()}
    in_bytes = _input_bytes(files, out_branches, schema, tree) if writers else 0

    # group rows into distinct events
    exp, run, evt = (np.concatenate(p) for p in key_parts)
    order = np.lexsort((evt, run, exp))
    e_s, r_s, v_s = exp[order], run[order], evt[order]
    new = np.ones(n_rows, dtype=bool)
    new[1:] = (e_s[1:] != e_s[:-1]) | (r_s[1:] != r_s[:-1]) | (v_s[1:] != v_s[:-1])
    starts = np.flatnonzero(new)
    goff = np.append(starts, n_rows).astype(np.int64)
    n_events = len(starts)
    selected = np.zeros((n_events, len(skims)), dtype=bool)
    stats = {}
    for j, s in enumerate(skims):
        passed = np.concatenate(pass_parts[s.name])[order]
        cand = np.concatenate(cand_parts[s.name])[order]
        rows_passing = ks.count_per_event(passed, goff, n_threads)
        sel = rows_passing > 0
        selected[:, j] = sel
        mult = ks.sum_per_event(cand.astype(np.float64), goff, n_threads)[sel].astype(np.int64)
        n_sel = int(sel.sum())
        r = n_sel / n_events
        file_b, out_b = sizes.get(s.name, (0, 0))
        n_written = writers[s.name].n_written if writers else 0
        n_sel_rows = int(passed.sum())
        # bytes of all selected rows, scaled from the written ones when the output was capped
        out_all = out_b * n_sel_rows / n_written if n_written else 0.0
        stats[s.name] = SkimSampleStats(
            skim=s.name, sample=sample, n_input_events=n_events, n_input_rows=n_rows, n_selected_events=n_sel,
            n_selected_rows=n_sel_rows, retention=r, retention_error=math.sqrt(r * (1 - r) / n_events),
            input_bytes=int(in_bytes), output_bytes=int(round(out_all)), output_file_bytes=int(file_b),
            n_written_rows=int(n_written), retention_bytes=(out_all / in_bytes) if in_bytes else 0.0,
            size_kb_per_selected_event=(out_all / 1000 / n_sel) if n_sel else None,
            size_kb_per_input_event=out_all / 1000 / n_events,
            cpu_ms_per_event=1000 * cpu[s.name] / n_events, wall_ms_per_event=1000 * wall[s.name] / n_events,
            mean_multiplicity=float(mult.mean()) if n_sel else None,
            multiplicity_counts=np.bincount(np.minimum(mult, MAX_MULTIPLICITY), minlength=MAX_MULTIPLICITY + 1).tolist(),
            output_file=str(writers[s.name].path) if writers else "",
        )
    sf = selected.astype(np.float64)
    overlap = np.rint(sf.T @ sf).astype(np.int64)
    return SampleResult(
        sample=sample, files=files, n_input_events=n_events, n_input_rows=n_rows,
        read_ms_per_event=1000 * read_s / n_events, skims=names, stats=stats,
        histograms=hist_counts, hist_specs={v: h for v, (h, _) in hists.items()}, overlap_counts=overlap,
    )
