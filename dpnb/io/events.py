"""Chunked reading of event ROOT files with uproot.

Jagged branches come back as flat ``values`` plus ``offsets`` (int64, length
``n_events + 1``, starting at 0), the layout every kernel in :mod:`dpnb.kernels` takes.
Memory stays bounded: files are read ``step_size`` entries at a time.

A ``schema`` maps dpnb's branch names to the names in a file (``{"run": "Run"}``), so
real files with other names work; chunks always use dpnb's names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np

from ..errors import InputError, SchemaError, nearest

__all__ = ["Chunk", "open_tree", "check_branches", "iterate_chunks", "prefetch", "FileStreams", "read_branches",
           "run_file", "SkippedFile"]


@dataclass
class Chunk:
    """A block of consecutive events of one file."""

    path: str
    entry_start: int
    entry_stop: int
    flat: dict[str, np.ndarray] = field(default_factory=dict)  # one value per event
    values: dict[str, np.ndarray] = field(default_factory=dict)  # jagged: flat values
    offsets: dict[str, np.ndarray] = field(default_factory=dict)  # jagged: offsets

    @property
    def n_events(self) -> int:
        return self.entry_stop - self.entry_start

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self.flat:
            return self.flat[name]
        if name in self.values:
            return self.values[name]
        msg = f"{self.path}: branch {name!r} was not read; read: {sorted(self.flat) + sorted(self.values)}"
        raise KeyError(msg)

    def jagged(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(values, offsets) of a jagged branch."""
        return self.values[name], self.offsets[name]


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


def run_file(raw_dir: str | os.PathLike, exp: int, run: int) -> Path:
    """Path of a run's event file in the dataset layout (``raw/e{exp:04d}/r{run:05d}.root``)."""
    return Path(raw_dir) / f"e{int(exp):04d}" / f"r{int(run):05d}.root"


def open_tree(path: str | os.PathLike, tree: str = "events"):
    """Open ``tree`` in ``path``; errors name the file and list the objects that exist."""
    import uproot

    path = str(path)
    if not os.path.exists(path):
        msg = f"{path}: file not found"
        raise InputError(msg)
    try:
        f = uproot.open(path)
    except Exception as exc:  # uproot raises several kinds for corrupt files
        msg = f"{path}: not a readable ROOT file ({type(exc).__name__}: {exc})"
        raise InputError(msg) from None
    keys = [k.split(";")[0] for k in f.keys(recursive=False)]
    if tree not in keys:
        f.close()
        msg = f"{path}: no tree {tree!r}; objects in the file: {keys} (nearest: {nearest(tree, keys)})"
        raise SchemaError(msg)
    return f[tree]


def check_branches(tree, wanted: Iterable[str], path: str, tree_name: str = "events") -> None:
    """Raise :class:`SchemaError` for missing branches, listing those that exist (nearest first)."""
    have = list(tree.keys())
    missing = [b for b in wanted if b not in have]
    if missing:
        hints = "; ".join(f"{m!r} (nearest: {', '.join(nearest(m, have))})" for m in missing)
        msg = f"{path}: tree {tree_name!r} has no branch {hints}; branches that exist: {sorted(have)}"
        raise SchemaError(msg)


def _to_numpy(arr) -> tuple[np.ndarray, np.ndarray | None]:
    """awkward array -> (values, offsets) for jagged, (values, None) for flat."""
    import awkward as ak

    if arr.ndim == 1:
        return np.asarray(ak.to_numpy(arr)), None
    layout = ak.to_layout(arr)
    while hasattr(layout, "content") and not hasattr(layout, "offsets"):
        layout = layout.content
    if hasattr(layout, "offsets"):
        offsets = np.asarray(layout.offsets, dtype=np.int64)
        content = layout.content[offsets[0] : offsets[-1]]
        values = np.asarray(ak.to_numpy(ak.Array(content)))
        return values, offsets - offsets[0]
    counts = np.asarray(ak.num(arr, axis=1), dtype=np.int64)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return np.asarray(ak.to_numpy(ak.flatten(arr))), offsets


def iterate_chunks(
    files: Iterable[str | os.PathLike],
    branches: Iterable[str],
    *,
    tree: str = "events",
    step_size: int = 200_000,
    schema: Mapping[str, str] | None = None,
    on_bad_file: str = "fail",
    skipped: list | None = None,
) -> Iterator[Chunk]:
    """Yield :class:`Chunk` s of at most ``step_size`` events from each file in turn.

    ``on_bad_file="skip"`` skips unreadable files or files missing a branch and appends a
    :class:`SkippedFile` to ``skipped``; ``"fail"`` raises.
    """
    if on_bad_file not in ("fail", "skip"):
        msg = f"on_bad_file must be 'fail' or 'skip', got {on_bad_file!r}"
        raise InputError(msg)
    schema = dict(schema or {})
    branches = list(dict.fromkeys(branches))
    file_names = {b: schema.get(b, b) for b in branches}
    for path in files:
        path = str(path)
        try:
            t = open_tree(path, tree)
            check_branches(t, file_names.values(), path, tree)
        except InputError as exc:
            if on_bad_file == "skip":
                if skipped is not None:
                    skipped.append(SkippedFile(path, str(exc)))
                continue
            raise
        try:
            n = t.num_entries
            for start in range(0, n, step_size):
                stop = min(n, start + step_size)
                arrays = t.arrays(list(file_names.values()), entry_start=start, entry_stop=stop, library="ak",
                                  how=dict)
                chunk = Chunk(path, start, stop)
                for ours, theirs in file_names.items():
                    values, offsets = _to_numpy(arrays[theirs])
                    if offsets is None:
                        chunk.flat[ours] = values
                    else:
                        chunk.values[ours] = values
                        chunk.offsets[ours] = offsets
                yield chunk
        finally:  # also when the consumer stops early (generator closed)
            t.file.close()


class _Raised:
    def __init__(self, exc: BaseException):
        self.exc = exc


_END = object()


def prefetch(chunks: Iterator[Chunk], depth: int = 1) -> Iterator[Chunk]:
    """Iterate ``chunks`` (e.g. :func:`iterate_chunks`) from a background thread, up to
    ``depth`` chunks ahead: reading the next chunk (uproot; decompression releases the GIL)
    overlaps the caller's work on the current one (the numba kernels release the GIL).

    Chunks come in the same order; an exception of the reader is raised here at the same
    place in the sequence; leaving the loop early stops the reader (after the chunk it is
    reading) and closes ``chunks``. Memory: at most ``depth + 2`` chunks exist at once.
    """
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for chunk in chunks:
                if not put(chunk):
                    return
            put(_END)
        except BaseException as exc:  # re-raised in the consumer's thread
            put(_Raised(exc))

    reader = threading.Thread(target=work, name="dpnb-prefetch", daemon=True)
    reader.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        stop.set()
        reader.join()
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _tagged_chunks(files, branches, options):
    # (i, chunk) for every chunk of file i, then (i, None); a file that cannot be read gives
    # (i, InputError) instead and the next file follows
    for i, path in enumerate(files):
        try:
            for chunk in iterate_chunks([path], branches, **options):
                yield i, chunk
        except InputError as exc:
            yield i, exc
            continue
        yield i, None


class FileStreams:
    """Chunks of several files read in order by one background thread (:func:`prefetch`,
    ``depth`` chunks ahead), handed out file by file: ``chunks(i)`` iterates file ``i``'s
    chunks and raises its :class:`InputError` (bad file, missing branch) in place. Files
    must be taken in increasing ``i``; chunks a consumer left unread are dropped. ``close()``
    stops the reader. ``options`` are those of :func:`iterate_chunks` (``step_size``,
    ``schema``, ``tree``).
    """

    def __init__(self, files, branches, depth: int = 2, **options):
        self._items = prefetch(_tagged_chunks([str(f) for f in files], list(branches), options), depth=depth)
        self._pending = None

    def _next(self):
        if self._pending is not None:
            item, self._pending = self._pending, None
            return item
        return next(self._items)

    def chunks(self, i: int) -> Iterator[Chunk]:
        while True:
            try:
                item = self._next()
            except StopIteration:
                return
            j, x = item
            if j < i:  # the rest of a file whose consumer stopped early
                continue
            if j > i:
                self._pending = item
                return
            if x is None:
                return
            if isinstance(x, BaseException):
                raise x
            yield x

    def close(self) -> None:
        self._items.close()


def read_branches(path, branches, *, tree: str = "events", schema=None) -> Chunk:
    """Read whole branches of one file into a single :class:`Chunk`."""
    chunks = list(iterate_chunks([path], branches, tree=tree, step_size=1 << 62, schema=schema))
    if not chunks:
        return Chunk(str(path), 0, 0)
    return chunks[0]
