"""Streaming accumulation of per-run hit histograms from event ROOT files.

:func:`accumulate_run` reads one run's file in chunks (bounded memory) and returns a
:class:`RunPartial`: hits per channel and the per-channel hit-time histogram, plus the
counts of hits it dropped. Partials hold integer counts only, so :func:`merge` is exact
and order independent: per-run partials can be cached, recomputed in parallel (both
functions are pure and picklable, ready for Dask) and merged into bucket totals.

Bad input: a channel id outside ``[0, n_channels)`` raises :class:`InputError` naming the
file, the branch, the count, the observed range and the expected one; NaN times are
counted and dropped (``on_nan="drop"``) or raise (``on_nan="fail"``); a missing branch
raises the :class:`SchemaError` of :mod:`dpnb.io.events` (which lists existing branches).
A run without hits gives a partial with zero counts (callers report it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import InputError
from ..io.events import iterate_chunks
from ..kernels.hist import count_invalid, fill_channel_counts, fill_channel_hist

__all__ = ["RunPartial", "accumulate_run", "accumulate_runs", "merge", "TIME_BINS", "TIME_RANGE_NS",
           "HIT_BRANCHES_USED", "CACHE_VERSION"]

TIME_BINS = 200
TIME_RANGE_NS = (0.0, 400.0)
HIT_BRANCHES_USED = ("hit_channel", "hit_time")
#: bump when the content of a partial changes, so that cached partials are recomputed
CACHE_VERSION = 1


@dataclass
class RunPartial:
    """Integer hit counts of one run (or, after :func:`merge`, of several runs)."""

    runs: tuple  # ((exp, run), ...) covered
    paths: tuple  # files read
    n_events: int
    n_hits: int  # hits with a valid channel and a finite time (all times)
    n_nan_dropped: int
    n_out_of_range_time: int  # finite times outside the histogram range (counted in occupancy)
    occupancy: np.ndarray  # int64[n_channels]: hits per channel
    time_hist: np.ndarray  # int64[n_channels, n_bins]
    time_range_ns: tuple = TIME_RANGE_NS
    extra: dict = field(default_factory=dict)

    @property
    def n_channels(self) -> int:
        return int(self.occupancy.shape[0])

    @property
    def n_bins(self) -> int:
        return int(self.time_hist.shape[1])

    @property
    def bin_edges_ns(self) -> np.ndarray:
        return np.linspace(self.time_range_ns[0], self.time_range_ns[1], self.n_bins + 1)


def accumulate_run(path: str | os.PathLike, n_channels: int, *, run: tuple | None = None, n_bins: int = TIME_BINS,
                   time_range_ns: tuple = TIME_RANGE_NS, step_size: int = 200_000, schema=None,
                   on_nan: str = "drop", nthreads: int = 1) -> RunPartial:
    """Hits per channel and per-channel hit-time histogram (ns) of one event file.

    ``run`` is the (exp, run) the file holds (recorded in the partial); ``n_channels`` comes
    from the dataset geometry. ``nthreads`` is passed to the fill kernels.
    """
    if on_nan not in ("drop", "fail"):
        msg = f"on_nan must be 'drop' or 'fail', got {on_nan!r}"
        raise InputError(msg)
    lo, hi = float(time_range_ns[0]), float(time_range_ns[1])
    occ = np.zeros(n_channels, dtype=np.int64)
    th = np.zeros((n_channels, n_bins), dtype=np.int64)
    n_events = n_hits = n_nan = n_oot = 0
    for chunk in iterate_chunks([path], HIT_BRANCHES_USED, step_size=step_size, schema=schema):
        n_events += chunk.n_events
        ch = np.ascontiguousarray(chunk.values["hit_channel"])
        t = np.ascontiguousarray(chunk.values["hit_time"])
        if ch.size == 0:
            continue
        bad, nan, cmin, cmax = count_invalid(ch, t, n_channels, nthreads)
        if bad:
            msg = (f"{path}: branch 'hit_channel', entries {chunk.entry_start}-{chunk.entry_stop - 1}: {bad} hit(s) "
                   f"with channel id outside [0, {n_channels}) (observed range {cmin}..{cmax}); expected channel ids "
                   f"of the dataset geometry (detector.json: {n_channels} channels)")
            raise InputError(msg)
        if nan:
            if on_nan == "fail":
                msg = (f"{path}: branch 'hit_time', entries {chunk.entry_start}-{chunk.entry_stop - 1}: {nan} NaN "
                       f"hit time(s); expected finite times in ns (set on_nan: drop to count and drop them)")
                raise InputError(msg)
            keep = ~np.isnan(t)
            ch, t = ch[keep], t[keep]
            n_nan += int(nan)
        occ += fill_channel_counts(ch, n_channels, nthreads)
        fill_channel_hist(ch, t, n_channels, n_bins, lo, hi, nthreads, out=th)
        n_hits += int(ch.size)
    n_oot = n_hits - int(th.sum())
    return RunPartial(runs=(tuple(run),) if run is not None else (), paths=(str(path),), n_events=n_events,
                      n_hits=n_hits, n_nan_dropped=n_nan, n_out_of_range_time=n_oot, occupancy=occ, time_hist=th,
                      time_range_ns=(lo, hi))


def merge(partials) -> RunPartial:
    """Exact sum of :class:`RunPartial` s with the same channels and binning."""
    partials = list(partials)
    if not partials:
        msg = "merge: no partials to merge"
        raise InputError(msg)
    first = partials[0]
    occ = np.zeros_like(first.occupancy)
    th = np.zeros_like(first.time_hist)
    runs, paths = [], []
    n_events = n_hits = n_nan = n_oot = 0
    for p in partials:
        if p.time_hist.shape != first.time_hist.shape or tuple(p.time_range_ns) != tuple(first.time_range_ns):
            msg = (f"merge: partial of {p.paths} has histogram {p.time_hist.shape} over {p.time_range_ns} ns, "
                   f"expected {first.time_hist.shape} over {first.time_range_ns} ns like {first.paths}")
            raise InputError(msg)
        occ += p.occupancy
        th += p.time_hist
        runs.extend(p.runs)
        paths.extend(p.paths)
        n_events += p.n_events
        n_hits += p.n_hits
        n_nan += p.n_nan_dropped
        n_oot += p.n_out_of_range_time
    return replace(first, runs=tuple(runs), paths=tuple(paths), n_events=n_events, n_hits=n_hits,
                   n_nan_dropped=n_nan, n_out_of_range_time=n_oot, occupancy=occ, time_hist=th, extra={})


def _cache_key(path: Path, n_channels: int, options: dict) -> str:
    import hashlib
    import json

    st = path.stat()
    desc = {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "n_channels": n_channels,
            "options": {k: options[k] for k in sorted(options) if k != "nthreads"}, "version": CACHE_VERSION}
    return hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _save_partial(path: Path, p: RunPartial) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        np.savez(fh, occupancy=p.occupancy, time_hist=p.time_hist, runs=np.asarray(p.runs, dtype=np.int64).reshape(-1, 2),
                 scalars=np.array([p.n_events, p.n_hits, p.n_nan_dropped, p.n_out_of_range_time], dtype=np.int64),
                 time_range_ns=np.asarray(p.time_range_ns, dtype=np.float64), paths=np.asarray(p.paths, dtype=str))
    os.replace(tmp, path)


def _load_partial(path: Path) -> RunPartial:
    with np.load(path) as z:
        n_events, n_hits, n_nan, n_oot = (int(v) for v in z["scalars"])
        return RunPartial(runs=tuple(tuple(int(x) for x in r) for r in z["runs"]), paths=tuple(str(x) for x in z["paths"]),
                          n_events=n_events, n_hits=n_hits, n_nan_dropped=n_nan, n_out_of_range_time=n_oot,
                          occupancy=z["occupancy"].copy(), time_hist=z["time_hist"].copy(),
                          time_range_ns=tuple(float(x) for x in z["time_range_ns"]))


def accumulate_runs(files, n_channels: int, *, cache_dir=None, on_bad_file: str = "fail", **options):
    """:func:`accumulate_run` for each ``{RunId: path}``; returns ``(partials, skipped)``.

    With ``cache_dir`` each run's partial is stored there (``.npz``) under a key of the
    file's path, size and modification time and the options, and reused when the key
    matches: adding runs to a bucket only reads the new runs. ``on_bad_file="skip"`` turns
    an :class:`InputError` of a run into ``skipped[run] = message`` instead of raising.
    """
    from pathlib import Path

    if on_bad_file not in ("fail", "skip"):
        msg = f"on_bad_file must be 'fail' or 'skip', got {on_bad_file!r}"
        raise InputError(msg)
    cache = Path(cache_dir) if cache_dir else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    partials, skipped = {}, {}
    for rid in sorted(files):
        path = Path(files[rid])
        try:
            key = _cache_key(path, n_channels, options) if cache is not None and path.exists() else None
            cached = cache / f"hits-{key}.npz" if key else None
            if cached is not None and cached.exists():
                partials[rid] = _load_partial(cached)
                continue
            part = accumulate_run(path, n_channels, run=(rid.exp, rid.run), **options)
            if cached is not None:
                _save_partial(cached, part)
            partials[rid] = part
        except InputError as exc:
            if on_bad_file == "fail":
                raise
            skipped[rid] = str(exc)
    return partials, skipped
