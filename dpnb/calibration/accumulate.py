"""Streaming accumulation of per-run hit histograms from event ROOT files.

:func:`accumulate_run` reads one run's file in chunks (bounded memory) and returns a
:class:`RunPartial`: hits per channel and the per-channel hit-time histogram in a compact
form (only the nonzero bins: a run of the demo bucket has ~4e5 hits in 2.9e6 bins), plus
the counts of hits it dropped. One fill kernel pass per chunk does it all
(:func:`dpnb.kernels.hist.fill_channel_occupancy_split`), into a dense scratch histogram
reused from run to run, held as uint8 counts modulo 256 plus an int32 part that only bins
with 256 hits or more touch (a quarter of the memory traffic for the sparse per-run fill
and for extracting the nonzero bins).

:func:`accumulate_bucket` fans the runs out through :func:`dpnb.scale.map_runs` (the
local or the Dask executor, with the content-keyed :class:`dpnb.scale.PartialCache`: a
run already computed is not read again) and **merges as it goes**: runs are submitted in
batches, each batch's partials are added to one dense running total (:class:`BucketHits`)
and dropped, so memory does not grow with the number of runs. Per-run partials (for a
run-by-run IOV or a timeline) are loaded back one at a time with
:meth:`BucketAccumulation.partial` (from the cache, or recomputed without one).

Partials hold integer counts only, so merging is exact and order independent: the
executor never changes a number. :func:`accumulate_task` (the per-run task) and
:func:`accumulate_run` are pure, module-level and picklable.

Bad input: a channel id outside ``[0, n_channels)`` raises :class:`InputError` naming the
file, the branch, the count, the observed range and the expected one; NaN times are
counted and dropped (``on_nan="drop"``) or raise (``on_nan="fail"``); a missing branch
raises the :class:`SchemaError` of :mod:`dpnb.io.events` (which lists existing branches).
With ``on_bad_file="skip"`` such a run is reported in ``skipped`` instead. A run without
hits gives a partial with zero counts (it is not merged; callers report it).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.events import iterate_chunks
from ..io.events import prefetch as read_ahead
from ..kernels.hist import add_sparse, count_invalid, fill_channel_occupancy_split, sparse_from_split

__all__ = ["RunPartial", "BucketHits", "RunSummary", "BucketAccumulation", "accumulate_run", "accumulate_task",
           "accumulate_bucket", "merge", "LazyRunHists", "TIME_BINS", "TIME_RANGE_NS", "HIT_BRANCHES_USED"]

TIME_BINS = 200
TIME_RANGE_NS = (0.0, 400.0)
HIT_BRANCHES_USED = ("hit_channel", "hit_time")
_INT32_MAX = 2**31 - 1


@dataclass
class RunPartial:
    """Integer hit counts of one run, the time histogram as its nonzero bins only.

    ``time_bins`` are flat bins ``channel * n_bins + bin`` (int32, ascending) and
    ``time_counts`` their counts (int32; int64 for a run of >= 2**31 hits). ``error`` is
    set (and the counts are empty) when the run's file was unusable under
    ``on_bad_file="skip"``.
    """

    runs: tuple  # ((exp, run),) covered
    paths: tuple  # files read
    n_events: int
    n_hits: int  # hits with a valid channel and a finite time (all times)
    n_nan_dropped: int
    n_out_of_range_time: int  # finite times outside the histogram range (counted in occupancy)
    occupancy: np.ndarray  # int64[n_channels]: hits per channel
    time_bins: np.ndarray  # int32[k] ascending flat bins with hits
    time_counts: np.ndarray  # int32[k] (or int64) their counts
    n_bins: int = TIME_BINS
    time_range_ns: tuple = TIME_RANGE_NS
    error: str | None = None

    @property
    def n_channels(self) -> int:
        return int(self.occupancy.shape[0])

    @property
    def bin_edges_ns(self) -> np.ndarray:
        return np.linspace(self.time_range_ns[0], self.time_range_ns[1], self.n_bins + 1)

    @property
    def time_hist(self) -> np.ndarray:
        """The dense int64[n_channels, n_bins] histogram, built on each access (23 MB for
        14,336 channels x 200 bins: take it once, not in a loop)."""
        h = np.zeros((self.n_channels, self.n_bins), dtype=np.int64)
        return add_sparse(h, self.time_bins, self.time_counts)

    def summary(self) -> "RunSummary":
        return RunSummary(tuple(self.runs[0]) if self.runs else (), self.paths[0] if self.paths else "",
                          self.n_events, self.n_hits, self.n_nan_dropped, self.n_out_of_range_time, self.error)


@dataclass(frozen=True)
class RunSummary:
    """The scalars of a run's partial (what a bucket keeps per run in memory)."""

    run: tuple
    path: str
    n_events: int
    n_hits: int
    n_nan_dropped: int
    n_out_of_range_time: int
    error: str | None = None


@dataclass
class BucketHits:
    """Dense integer hit counts of several runs: the exact sum of their partials."""

    runs: tuple
    paths: tuple
    n_events: int
    n_hits: int
    n_nan_dropped: int
    n_out_of_range_time: int
    occupancy: np.ndarray  # int64[n_channels]
    time_hist: np.ndarray  # int64[n_channels, n_bins]
    time_range_ns: tuple = TIME_RANGE_NS
    extra: dict = field(default_factory=dict)

    @classmethod
    def empty(cls, n_channels: int, n_bins: int = TIME_BINS, time_range_ns: tuple = TIME_RANGE_NS) -> "BucketHits":
        return cls((), (), 0, 0, 0, 0, np.zeros(n_channels, dtype=np.int64),
                   np.zeros((n_channels, n_bins), dtype=np.int64), tuple(float(x) for x in time_range_ns))

    @property
    def n_channels(self) -> int:
        return int(self.occupancy.shape[0])

    @property
    def n_bins(self) -> int:
        return int(self.time_hist.shape[1])

    @property
    def bin_edges_ns(self) -> np.ndarray:
        return np.linspace(self.time_range_ns[0], self.time_range_ns[1], self.n_bins + 1)

    def add(self, p: "RunPartial | BucketHits") -> "BucketHits":
        """Add a partial (or another total) in place, exactly; returns self."""
        if (p.n_channels, p.n_bins) != (self.n_channels, self.n_bins) or \
                tuple(p.time_range_ns) != tuple(self.time_range_ns):
            msg = (f"merge: partial of {p.paths} has {p.n_channels} channels x {p.n_bins} bins over "
                   f"{tuple(p.time_range_ns)} ns, expected {self.n_channels} x {self.n_bins} over "
                   f"{tuple(self.time_range_ns)} ns like {self.paths or 'the total'}")
            raise InputError(msg)
        self.occupancy += p.occupancy
        if isinstance(p, RunPartial):
            add_sparse(self.time_hist, p.time_bins, p.time_counts)
        else:
            self.time_hist += p.time_hist
        self.runs = (*self.runs, *(tuple(r) for r in p.runs))
        self.paths = (*self.paths, *p.paths)
        self.n_events += int(p.n_events)
        self.n_hits += int(p.n_hits)
        self.n_nan_dropped += int(p.n_nan_dropped)
        self.n_out_of_range_time += int(p.n_out_of_range_time)
        return self


def merge(partials) -> BucketHits:
    """Exact sum of :class:`RunPartial` s (or :class:`BucketHits`) with the same channels and
    binning, consuming the iterable one item at a time (a generator that loads partials
    keeps only one in memory)."""
    total = None
    for p in partials:
        if total is None:
            total = BucketHits.empty(p.n_channels, p.n_bins, p.time_range_ns)
        total.add(p)
    if total is None:
        msg = "merge: no partials to merge"
        raise InputError(msg)
    return total


# --- one run ---------------------------------------------------------------------------
_scratch = threading.local()
#: events per chunk read from a run's file
STEP_SIZE = 200_000


def _take_scratch(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Zeroed (uint8 low, int32 high) parts of a histogram of ``size`` bins
    (:func:`~dpnb.kernels.hist.fill_channel_occupancy_split`), reused across runs of this
    thread (handed back zeroed by :func:`~dpnb.kernels.hist.sparse_from_split` ``reset=True``)."""
    buf = getattr(_scratch, "buf", None)
    _scratch.buf = None  # owned by the caller until given back
    if buf is None or buf[0].shape[0] != size:
        buf = (np.zeros(size, dtype=np.uint8), np.zeros(size, dtype=np.int32))
    return buf


def _give_back_scratch(low: np.ndarray, high: np.ndarray) -> None:
    if high.dtype == np.int32:
        _scratch.buf = (low, high)


def accumulate_run(path: str | os.PathLike, n_channels: int, *, run: tuple | None = None, n_bins: int = TIME_BINS,
                   time_range_ns: tuple = TIME_RANGE_NS, step_size: int = STEP_SIZE, schema=None,
                   on_nan: str = "drop", nthreads: int = 1, prefetch: bool = True, chunks=None) -> RunPartial:
    """Hits per channel and per-channel hit-time histogram (ns) of one event file.

    ``run`` is the (exp, run) the file holds (recorded in the partial); ``n_channels`` comes
    from the dataset geometry. ``nthreads`` is passed to the fill kernel. With ``prefetch``,
    the next chunk is read in a background thread while the kernel fills the current one
    (:func:`dpnb.io.events.prefetch`; one chunk ahead). ``chunks`` (an iterator of the
    file's :class:`~dpnb.io.events.Chunk` s, e.g. from :class:`~dpnb.io.events.FileStreams`)
    replaces the reading.
    """
    if on_nan not in ("drop", "fail"):
        msg = f"on_nan must be 'drop' or 'fail', got {on_nan!r}"
        raise InputError(msg)
    lo, hi = float(time_range_ns[0]), float(time_range_ns[1])
    occ = np.zeros(n_channels, dtype=np.int64)
    size = n_channels * n_bins
    low, high = _take_scratch(size)
    high_used = False
    n_events = n_hits = n_nan = n_oot = 0
    clean = False
    try:
        if chunks is None:
            chunks = iterate_chunks([path], HIT_BRANCHES_USED, step_size=step_size, schema=schema)
            if prefetch:
                chunks = read_ahead(chunks)
        for chunk in chunks:
            n_events += chunk.n_events
            ch = chunk.values["hit_channel"]
            t = chunk.values["hit_time"]
            if ch.size == 0:
                continue
            if high.dtype == np.int32 and n_hits + ch.size > _INT32_MAX:
                high = high.astype(np.int64)  # a run this large: 64-bit counts from here on
            bad, nan, oot, moved = fill_channel_occupancy_split(ch, t, n_channels, n_bins, lo, hi, occ, low, high,
                                                                nthreads)
            high_used = high_used or moved > 0
            if bad:
                _, _, cmin, cmax = count_invalid(ch, t, n_channels, nthreads)
                msg = (f"{path}: branch 'hit_channel', entries {chunk.entry_start}-{chunk.entry_stop - 1}: {bad} "
                       f"hit(s) with channel id outside [0, {n_channels}) (observed range {cmin}..{cmax}); expected "
                       f"channel ids of the dataset geometry (detector.json: {n_channels} channels)")
                raise InputError(msg)
            if nan and on_nan == "fail":
                msg = (f"{path}: branch 'hit_time', entries {chunk.entry_start}-{chunk.entry_stop - 1}: {nan} NaN "
                       f"hit time(s); expected finite times in ns (set on_nan: drop to count and drop them)")
                raise InputError(msg)
            n_nan += int(nan)
            n_oot += int(oot)
            n_hits += int(ch.size - bad - nan)
        bins, counts = sparse_from_split(low, high, high_used, max_nonzero=n_hits - n_oot, reset=True)
        clean = True
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()  # stops a read-ahead thread now, not when the traceback is freed
        if clean:
            _give_back_scratch(low, high)
    return RunPartial(runs=(tuple(run),) if run is not None else (), paths=(str(path),), n_events=n_events,
                      n_hits=n_hits, n_nan_dropped=n_nan, n_out_of_range_time=n_oot, occupancy=occ,
                      time_bins=bins, time_counts=counts, n_bins=int(n_bins), time_range_ns=(lo, hi))


def accumulate_task(path: str, n_channels: int, exp: int, run: int, *, on_bad_file: str = "fail",
                    **options) -> RunPartial:
    """The per-run task of :func:`accumulate_bucket`: :func:`accumulate_run` of one file;
    with ``on_bad_file="skip"`` an :class:`InputError` becomes a partial with ``error`` set."""
    try:
        return accumulate_run(path, n_channels, run=(int(exp), int(run)), **options)
    except InputError as exc:
        if on_bad_file != "skip":
            raise
        lo, hi = options.get("time_range_ns", TIME_RANGE_NS)
        return RunPartial(runs=((int(exp), int(run)),), paths=(str(path),), n_events=0, n_hits=0, n_nan_dropped=0,
                          n_out_of_range_time=0, occupancy=np.zeros(n_channels, dtype=np.int64),
                          time_bins=np.zeros(0, dtype=np.int32), time_counts=np.zeros(0, dtype=np.int32),
                          n_bins=int(options.get("n_bins", TIME_BINS)), time_range_ns=(float(lo), float(hi)),
                          error=str(exc))



# --- a bucket ----------------------------------------------------------------------------
class BucketAccumulation:
    """What :func:`accumulate_bucket` returns.

    ``total``: the merged :class:`BucketHits` of the runs with hits (``used``), None if
    none; ``summaries``: per run, the scalars (:class:`RunSummary`); ``skipped``: ``{run:
    reason}`` for unusable files (``on_bad_file="skip"``); ``reused`` / ``computed``: runs
    taken from the partial cache / computed. :meth:`partial` loads one run's partial.
    """

    def __init__(self, total, summaries, skipped, reused, computed, loader):
        self.total = total
        self.summaries = summaries
        self.skipped = skipped
        self.reused = reused
        self.computed = computed
        self._loader = loader

    @property
    def used(self) -> list:
        """Runs merged into ``total`` (readable, with hits), sorted."""
        return sorted(r for r, s in self.summaries.items() if s.error is None and s.n_hits > 0)

    @property
    def empty_runs(self) -> dict:
        """``{run: RunSummary}`` of readable runs without hits (not merged)."""
        return {r: s for r, s in sorted(self.summaries.items()) if s.error is None and s.n_hits == 0}

    def partial(self, run) -> RunPartial:
        """The partial of ``run`` (from the cache when there is one, else recomputed)."""
        return self._loader(run)

    def iter_partials(self, runs=None):
        """``(run, partial)`` for ``runs`` (default: ``used``), loaded one at a time."""
        for r in self.used if runs is None else runs:
            yield r, self.partial(r)

    def hists(self, runs=None) -> "LazyRunHists":
        """``{"all": total histogram, str(run): that run's histogram (loaded on access)}``."""
        return LazyRunHists(self, self.used if runs is None else runs)


class LazyRunHists(Mapping):
    """A mapping ``"all"`` / ``str(run)`` -> dense time histogram; a run's histogram is
    loaded when asked for (the last one is kept), never all of them at once."""

    def __init__(self, acc: BucketAccumulation, runs):
        self._acc = acc
        self._runs = {str(r): r for r in runs}
        self._last = (None, None)

    def __getitem__(self, key):
        if key == "all":
            return self._acc.total.time_hist
        if key not in self._runs:
            raise KeyError(key)
        if self._last[0] != key:
            self._last = (key, self._acc.partial(self._runs[key]).time_hist)
        return self._last[1]

    def __iter__(self):
        yield "all"
        yield from self._runs

    def __len__(self) -> int:
        return 1 + len(self._runs)


def _accumulate_pipelined(tasks, keys, kwargs, inputs, cache, consume) -> None:
    """The ``overlap`` mode of :func:`accumulate_bucket`: a reader thread streams the chunks
    of every run not in ``cache``; each run is accumulated here as its chunks arrive and
    stored in the cache like :func:`dpnb.scale.map_runs` would."""
    from ..io.events import FileStreams
    from ..scale import PartialCache

    ckeys = {}
    planned = set()
    if cache is not None:
        for rid in keys:
            ckeys[rid] = PartialCache.key(accumulate_task, tasks[rid], kwargs, inputs[rid])
            if cache.has(ckeys[rid]):
                planned.add(rid)
    to_read = [rid for rid in keys if rid not in planned]
    streams = FileStreams([tasks[rid][0] for rid in to_read], HIT_BRANCHES_USED,
                          step_size=kwargs.get("step_size", STEP_SIZE), schema=kwargs.get("schema"))
    index = {rid: i for i, rid in enumerate(to_read)}
    try:
        for rid in keys:
            if rid in planned:
                hit, part = cache.get(ckeys[rid])
                if not hit:  # unreadable entry: computed again, reading the file here
                    part = accumulate_task(*tasks[rid], **kwargs)
                    cache.put(ckeys[rid], part)
            else:
                part = accumulate_task(*tasks[rid], chunks=streams.chunks(index[rid]), **kwargs)
                if cache is not None:
                    cache.misses += 1
                    cache.put(ckeys[rid], part)
            consume(rid, part)
    finally:
        streams.close()


def accumulate_bucket(files, n_channels: int, *, executor=None, cache=None, batch_size: int | None = None,
                      on_bad_file: str = "fail", client=None, overlap: bool = True,
                      **options) -> BucketAccumulation:
    """:func:`accumulate_task` for every ``{RunId: path}`` through :func:`dpnb.scale.map_runs`,
    merged as the results arrive.

    ``executor`` (:class:`dpnb.scale.ExecutorConfig`, default local in-process) runs the
    tasks, ``cache`` (:class:`dpnb.scale.PartialCache` or None) skips runs computed before
    (adding runs to a bucket computes only the new ones). Runs go in batches of
    ``batch_size`` (default 8 locally, 4 per Dask worker) whose partials are merged into the
    total and dropped: memory holds the dense total and at most ``batch_size`` compact
    partials, whatever the number of runs. ``options`` are those of :func:`accumulate_run`
    (``n_bins``, ``time_range_ns``, ``step_size``, ``schema``, ``on_nan``, ``nthreads``).

    With the local in-process executor (``jobs=1``) and ``overlap=True``, one thread reads
    the files of the runs to compute, in run order and a couple of chunks ahead
    (:class:`~dpnb.io.events.FileStreams`; uproot works mostly under the GIL), while this
    thread fills (the kernels release the GIL): reading is never interrupted by filling.
    Cached runs are not read. Partials are merged in run order, so the total is the same
    in every case.
    """
    from ..scale import ExecutorConfig, dask_client, map_runs

    if on_bad_file not in ("fail", "skip"):
        msg = f"on_bad_file must be 'fail' or 'skip', got {on_bad_file!r}"
        raise InputError(msg)
    executor = executor or ExecutorConfig()
    n_bins = int(options.get("n_bins", TIME_BINS))
    time_range = tuple(float(x) for x in options.get("time_range_ns", TIME_RANGE_NS))
    kwargs = {k: options[k] for k in sorted(options)}
    if "time_range_ns" in kwargs:
        kwargs["time_range_ns"] = time_range
    kwargs["on_bad_file"] = on_bad_file
    skipped: dict = {}
    tasks, inputs = {}, {}
    for rid in sorted(files):
        path = Path(files[rid])
        if not path.exists():  # no file identity for the cache key: report it here
            msg = f"{path}: file not found"
            if on_bad_file == "fail":
                raise InputError(msg)
            skipped[rid] = msg
            continue
        tasks[rid] = (str(path), int(n_channels), int(rid.exp), int(rid.run))
        inputs[rid] = [str(path)]
    if batch_size is None:
        batch_size = 4 * max(1, executor.n_workers) if executor.kind == "dask" else max(8, 2 * executor.jobs)
    own_client = False
    if executor.kind == "dask" and client is None and tasks:
        client, own_client = dask_client(executor), True
    total = BucketHits.empty(n_channels, n_bins, time_range)
    summaries: dict = {}
    keys = list(tasks)
    pipelined = overlap and executor.kind == "local" and executor.jobs <= 1 and len(tasks) > 1
    hits0, misses0 = (cache.hits, cache.misses) if cache is not None else (0, 0)

    def consume(rid, p):
        summaries[rid] = p.summary()
        if p.error is not None:
            skipped[rid] = p.error
        elif p.n_hits > 0:
            total.add(p)

    try:
        if pipelined:
            _accumulate_pipelined(tasks, keys, kwargs, inputs, cache, consume)
        else:
            for i in range(0, len(keys), batch_size):
                batch = {k: tasks[k] for k in keys[i:i + batch_size]}
                parts = map_runs(accumulate_task, batch, kwargs=kwargs, executor=executor, cache=cache,
                                 inputs={k: inputs[k] for k in batch}, client=client)
                for rid in batch:
                    consume(rid, parts.pop(rid))
                del parts
    finally:
        if own_client:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None:
                cluster.close()

    if cache is not None:
        reused = cache.hits - hits0
        computed = cache.misses - misses0
    else:
        reused, computed = 0, len(tasks)

    def load(rid):
        if rid not in tasks:
            raise KeyError(f"run {rid} is not in this bucket accumulation")
        local = ExecutorConfig()  # a cache hit needs no executor; a miss is one run, computed here
        return map_runs(accumulate_task, {rid: tasks[rid]}, kwargs=kwargs, executor=local, cache=cache,
                        inputs={rid: inputs[rid]})[rid]

    return BucketAccumulation(total if total.runs else None, summaries, skipped, reused, computed, load)
