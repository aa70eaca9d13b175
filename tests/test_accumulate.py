"""Bucket accumulation: compact per-run partials, streaming merge, per-run cache, fused fill kernel."""

from __future__ import annotations

import pickle

import awkward as ak
import numpy as np
import pytest
import uproot

from dpnb.calibration import accumulate as acc_mod
from dpnb.calibration.accumulate import BucketHits, accumulate_bucket, accumulate_run, merge
from dpnb.errors import InputError
from dpnb.kernels.hist import (
    add_sparse, add_sparse_numpy, fill_channel_hist_numpy, fill_channel_occupancy_hist,
    fill_channel_occupancy_hist_numpy, sparse_from_dense, sparse_from_dense_numpy,
)
from dpnb.runs import RunId
from dpnb.scale import ExecutorConfig, PartialCache

N_CH = 40


def _write(path, channels, times):
    counts = np.array([len(c) for c in channels], dtype=np.int64)
    fields = {"channel": ak.unflatten(np.concatenate(channels).astype(np.int32), counts),
              "time": ak.unflatten(np.concatenate(times).astype(np.float32), counts)}
    data = {"event": np.arange(len(channels), dtype=np.int64), "hit": ak.zip(fields)}
    with uproot.recreate(path) as f:
        tree = f.mktree("events", {k: (v.type.content if isinstance(v, ak.Array) else v.dtype) for k, v in data.items()})
        tree.extend(data)
    return str(path)


def _events(rng, n_events, n_ch=N_CH):
    chans, times = [], []
    for _ in range(n_events):
        k = rng.integers(0, 6)
        chans.append(rng.integers(0, n_ch, k).astype(np.int32))
        t = rng.uniform(-30, 430, k).astype(np.float32)  # some below 0 and above 400 ns
        t[rng.random(k) < 0.05] = np.nan
        times.append(t)
    return chans, times


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Five small run files: {RunId: (path, channels, times)}."""
    d = tmp_path_factory.mktemp("acc")
    rng = np.random.default_rng(5)
    out = {}
    for r in range(1, 6):
        c, t = _events(rng, 200 + 40 * r)
        out[RunId(1, r)] = (_write(d / f"r{r:05d}.root", c, t), np.concatenate(c), np.concatenate(t))
    return out


def _reference(runs, keys):
    """Numpy reference of the bucket total: occupancy, histogram, counters (NaN times dropped)."""
    ch = np.concatenate([runs[k][1] for k in keys]).astype(np.int64)
    t = np.concatenate([runs[k][2] for k in keys]).astype(np.float64)
    fin = ~np.isnan(t)
    hist = fill_channel_hist_numpy(ch, t, N_CH, 200, 0.0, 400.0)
    occ = np.bincount(ch[fin], minlength=N_CH)
    oot = int(np.count_nonzero(fin & ((t < 0.0) | (t >= 400.0))))
    return occ, hist, int(fin.sum()), int((~fin).sum()), oot


# --- kernels -------------------------------------------------------------------------------
@pytest.mark.parametrize("nthreads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint32])
def test_fused_fill_counts_out_of_range_like_numpy_twin(monkeypatch, nthreads, dtype):
    import dpnb.kernels.hist

    monkeypatch.setattr(dpnb.kernels.hist, "MIN_ENTRIES_PER_THREAD", 1)  # exercise the parallel kernel
    rng = np.random.default_rng(3)
    # 140k bins, 3.1e6 hits: the staged fill, several slot blocks per thread, wrapping slots
    n, n_ch, n_bins = 3 * 2**20 + 1234, 700, 200
    ch = rng.integers(-5, n_ch + 5, n).astype(np.int32)
    t = rng.uniform(-50.0, 450.0, n).astype(np.float32)
    t[rng.random(n) < 0.02] = np.nan
    t[:4] = [0.0, 400.0, np.nextafter(np.float32(400.0), np.float32(0)), -0.0]
    occ, hist = np.zeros(n_ch, np.int64), np.zeros((n_ch, n_bins), dtype)
    occ_ref, hist_ref = np.zeros(n_ch, np.int64), np.zeros((n_ch, n_bins), dtype)
    stats = fill_channel_occupancy_hist(ch, t, n_ch, n_bins, 0.0, 400.0, occ, hist, nthreads)
    stats_ref = fill_channel_occupancy_hist_numpy(ch, t, n_ch, n_bins, 0.0, 400.0, occ_ref, hist_ref)
    np.testing.assert_array_equal(stats, stats_ref)
    np.testing.assert_array_equal(occ, occ_ref)
    np.testing.assert_array_equal(hist, hist_ref)
    # independent counts of what the kernel reports
    valid = (ch >= 0) & (ch < n_ch)
    fin = valid & ~np.isnan(t)
    assert stats[0] == np.count_nonzero(~valid)
    assert stats[1] == np.count_nonzero(valid & np.isnan(t))
    assert stats[2] == np.count_nonzero(fin & ((t < 0) | (t >= 400)))
    assert hist.sum() + stats[2] == occ.sum() == fin.sum()
    # a second fill adds (accumulation over chunks)
    fill_channel_occupancy_hist(ch, t, n_ch, n_bins, 0.0, 400.0, occ, hist, nthreads)
    np.testing.assert_array_equal(hist, 2 * hist_ref.astype(np.int64))


def test_sparse_round_trip_and_reset():
    rng = np.random.default_rng(4)
    h = np.zeros((50, 30), np.int32)
    np.add.at(h.reshape(-1), rng.integers(0, h.size, 400), 1)
    bins, counts = sparse_from_dense(h.copy())
    b2, c2 = sparse_from_dense_numpy(h.copy())
    np.testing.assert_array_equal(bins, b2)
    np.testing.assert_array_equal(counts, c2)
    assert bins.dtype == np.int32 and np.all(np.diff(bins) > 0) and counts.sum() == 400
    back = add_sparse(np.zeros((50, 30), np.int64), bins, counts)
    np.testing.assert_array_equal(back, h)
    np.testing.assert_array_equal(add_sparse_numpy(np.zeros((50, 30), np.int64), bins, counts), h)
    scratch = h.copy()
    sparse_from_dense(scratch, max_nonzero=400, reset=True)
    assert not scratch.any()
    with pytest.raises(ValueError, match="outside a histogram of 1500 bins"):
        add_sparse(np.zeros((50, 30), np.int64), np.array([1500], np.int32), np.array([1], np.int32))


# --- one run -------------------------------------------------------------------------------
def test_compact_partial_round_trips_exactly(runs):
    key = RunId(1, 3)
    path, ch, t = runs[key]
    p = accumulate_run(path, N_CH, run=(1, 3), step_size=37)  # several chunks
    occ, hist, n_hits, n_nan, oot = _reference(runs, [key])
    assert p.time_bins.dtype == np.int32 and p.time_counts.dtype == np.int32
    assert p.time_bins.size == np.count_nonzero(hist)  # only the nonzero bins are kept
    np.testing.assert_array_equal(p.time_hist, hist)
    np.testing.assert_array_equal(p.occupancy, occ)
    assert (p.n_hits, p.n_nan_dropped, p.n_out_of_range_time) == (n_hits, n_nan, oot)
    assert p.n_events == 320 and p.runs == ((1, 3),)
    q = pickle.loads(pickle.dumps(p))  # what the partial cache stores
    np.testing.assert_array_equal(q.time_hist, hist)
    np.testing.assert_array_equal(q.time_bins, p.time_bins)
    # the thread's scratch histogram was handed back clean: a second run starts from zero
    p2 = accumulate_run(path, N_CH, run=(1, 3))
    np.testing.assert_array_equal(p2.time_hist, hist)


def test_counts_switch_to_int64_before_they_could_overflow(runs, monkeypatch):
    key = RunId(1, 2)
    monkeypatch.setattr(acc_mod, "_INT32_MAX", 100)  # pretend a run has > 2**31 hits
    p = accumulate_run(runs[key][0], N_CH, run=(1, 2), step_size=30)
    assert p.time_counts.dtype == np.int64
    np.testing.assert_array_equal(p.time_hist, _reference(runs, [key])[1])


def test_bad_channel_is_reported_and_scratch_is_not_reused_dirty(tmp_path, runs):
    bad = _write(tmp_path / "bad.root", [np.array([1, 2, 70], np.int32), np.array([99], np.int32)],
                 [np.array([1, 2, 3], np.float32), np.array([4], np.float32)])
    with pytest.raises(InputError, match=r"2 hit\(s\) with channel id outside \[0, 64\) \(observed range 1..99\)"):
        accumulate_run(bad, 64)
    path = runs[RunId(1, 1)][0]
    np.testing.assert_array_equal(accumulate_run(path, N_CH).time_hist, _reference(runs, [RunId(1, 1)])[1])


# --- a bucket ------------------------------------------------------------------------------
@pytest.mark.parametrize("overlap", [False, True])
def test_streaming_merge_equals_merge_of_all_partials(runs, overlap):
    files = {k: v[0] for k, v in runs.items()}
    acc = accumulate_bucket(files, N_CH, batch_size=2, overlap=overlap, step_size=50)
    partials = [accumulate_run(files[k], N_CH, run=(k.exp, k.run)) for k in sorted(files)]
    held = merge(partials)
    occ, hist, n_hits, n_nan, oot = _reference(runs, sorted(files))
    for total in (acc.total, held):
        np.testing.assert_array_equal(total.time_hist, hist)
        np.testing.assert_array_equal(total.occupancy, occ)
        assert (total.n_hits, total.n_nan_dropped, total.n_out_of_range_time) == (n_hits, n_nan, oot)
    assert acc.total.runs == held.runs == tuple((k.exp, k.run) for k in sorted(files))
    assert acc.total.n_events == held.n_events == sum(p.n_events for p in partials)
    assert acc.used == sorted(files) and (acc.reused, acc.computed) == (0, 5)
    # merging a total with a partial, in another order, gives the same numbers
    again = merge([merge(partials[2:]), *partials[:2]])
    np.testing.assert_array_equal(again.time_hist, hist)
    # per-run partials are loaded back one at a time
    for k, p in acc.iter_partials():
        np.testing.assert_array_equal(p.time_hist, _reference(runs, [k])[1])
    h = acc.hists()
    assert list(h)[:2] == ["all", str(sorted(files)[0])] and len(h) == 6
    np.testing.assert_array_equal(h[str(RunId(1, 4))], _reference(runs, [RunId(1, 4)])[1])


def test_cache_reuse_computes_only_new_runs(runs, tmp_path):
    files = {k: v[0] for k, v in runs.items()}
    first = {k: files[k] for k in sorted(files)[:3]}
    a = accumulate_bucket(first, N_CH, cache=PartialCache(tmp_path / "cache"))
    assert (a.reused, a.computed) == (0, 3)
    b = accumulate_bucket(files, N_CH, cache=PartialCache(tmp_path / "cache"), batch_size=2)
    assert (b.reused, b.computed) == (3, 2)
    np.testing.assert_array_equal(b.total.time_hist, _reference(runs, sorted(files))[1])
    c = accumulate_bucket(files, N_CH, cache=PartialCache(tmp_path / "cache"), overlap=False)
    assert (c.reused, c.computed) == (5, 0)
    np.testing.assert_array_equal(c.total.time_hist, b.total.time_hist)
    # other options are another content key: recomputed, not confused with the cached partials
    d = accumulate_bucket(first, N_CH, cache=PartialCache(tmp_path / "cache"), time_range_ns=(0.0, 200.0))
    assert (d.reused, d.computed) == (0, 3) and d.total.time_range_ns == (0.0, 200.0)


def test_local_processes_give_the_same_total(runs, tmp_path):
    files = {k: v[0] for k, v in runs.items()}
    seq = accumulate_bucket(files, N_CH, overlap=False)
    par = accumulate_bucket(files, N_CH, executor=ExecutorConfig(kind="local", jobs=2))
    np.testing.assert_array_equal(seq.total.time_hist, par.total.time_hist)
    np.testing.assert_array_equal(seq.total.occupancy, par.total.occupancy)
    assert seq.total.runs == par.total.runs


def test_bad_and_empty_runs_skipped_or_refused(runs, tmp_path):
    files = {k: v[0] for k, v in runs.items()}
    files[RunId(1, 7)] = _write(tmp_path / "bad.root", [np.array([1, 99], np.int32)], [np.array([1, 2], np.float32)])
    files[RunId(1, 8)] = _write(tmp_path / "empty.root", [np.array([], np.int32)] * 3, [np.array([], np.float32)] * 3)
    files[RunId(1, 9)] = str(tmp_path / "missing.root")
    with pytest.raises(InputError, match="missing.root: file not found"):
        accumulate_bucket(files, N_CH)
    del files[RunId(1, 9)]
    with pytest.raises(InputError, match=r"bad.root: branch 'hit_channel'"):
        accumulate_bucket(files, N_CH)
    files[RunId(1, 9)] = str(tmp_path / "missing.root")
    acc = accumulate_bucket(files, N_CH, on_bad_file="skip", cache=PartialCache(tmp_path / "c"))
    assert sorted(acc.skipped) == [RunId(1, 7), RunId(1, 9)] and "channel id outside" in acc.skipped[RunId(1, 7)]
    assert list(acc.empty_runs) == [RunId(1, 8)] and acc.empty_runs[RunId(1, 8)].n_events == 3
    assert acc.used == sorted(runs)
    np.testing.assert_array_equal(acc.total.time_hist, _reference(runs, sorted(runs))[1])


def test_merge_refuses_other_binning_and_empty_input(runs):
    p = accumulate_run(runs[RunId(1, 1)][0], N_CH)
    q = accumulate_run(runs[RunId(1, 1)][0], N_CH, n_bins=100)
    with pytest.raises(InputError, match="100 bins"):
        merge([p, q])
    with pytest.raises(InputError, match="no partials"):
        merge([])
    assert isinstance(merge([p]), BucketHits)


def test_pipelined_reader_skips_unreadable_and_recomputes_corrupt_cache_entries(runs, tmp_path):
    files = {k: v[0] for k, v in runs.items()}
    junk = tmp_path / "junk.root"
    junk.write_bytes(b"not a ROOT file")
    files[RunId(1, 3)] = str(junk)  # a run in the middle: the reader must go on with the next file
    cache = PartialCache(tmp_path / "cache")
    acc = accumulate_bucket(files, N_CH, on_bad_file="skip", cache=cache, step_size=40)
    good = [k for k in sorted(runs) if k != RunId(1, 3)]
    assert list(acc.skipped) == [RunId(1, 3)] and "not a readable ROOT file" in acc.skipped[RunId(1, 3)]
    np.testing.assert_array_equal(acc.total.time_hist, _reference(runs, good)[1])
    # corrupt one cached partial: it is recomputed (read directly), the others are reused
    entry = sorted((tmp_path / "cache").rglob("*.pkl"))[0]
    entry.write_bytes(b"garbage")
    again = accumulate_bucket({k: files[k] for k in good}, N_CH, on_bad_file="skip", cache=PartialCache(tmp_path / "cache"),
                              step_size=40)
    assert (again.reused, again.computed) == (len(good) - 1, 1)
    np.testing.assert_array_equal(again.total.time_hist, acc.total.time_hist)


@pytest.mark.parametrize("path", ["sparse", "dense"])
def test_split_fill_and_sparse_extraction_match_dense(monkeypatch, path):
    from dpnb.kernels import hist as hist_mod
    from dpnb.kernels.hist import (
        fill_channel_occupancy_split, fill_channel_occupancy_split_numpy, sparse_from_split,
    )

    # the path is chosen by the fill per bin: force each one
    monkeypatch.setattr(hist_mod, "STAGE_MIN_FILL", 1e9 if path == "sparse" else 0.0)
    rng = np.random.default_rng(21)
    n_ch, n_bins, n_hits = 40, 50, 100_000
    ch = rng.integers(-1, n_ch + 1, n_hits).astype(np.int32)
    t = rng.normal(20.0, 3.0, n_hits).astype(np.float32)  # a few hundred hits in the busiest bins
    t[rng.random(n_hits) < 0.01] = np.nan
    low, high = np.zeros(n_ch * n_bins, np.uint8), np.zeros(n_ch * n_bins, np.int32)
    occ = np.zeros(n_ch, np.int64)
    occ_ref, h_ref = np.zeros(n_ch, np.int64), np.zeros((n_ch, n_bins), np.int64)
    valid = (ch >= 0) & (ch < n_ch)
    fin = valid & ~np.isnan(t)
    for part in np.array_split(np.arange(n_hits), 3):  # accumulate over chunks
        st = fill_channel_occupancy_split(ch[part], t[part], n_ch, n_bins, 0.0, 40.0, occ, low, high)
        ref = fill_channel_occupancy_hist_numpy(ch[part], t[part], n_ch, n_bins, 0.0, 40.0, occ_ref, h_ref)
        np.testing.assert_array_equal(st[:3], ref)
    np.testing.assert_array_equal(occ, occ_ref)
    np.testing.assert_array_equal(low.astype(np.int64) + high, h_ref.reshape(-1))
    assert occ.sum() == fin.sum() and high.any()  # some bins passed 256 hits
    if path == "sparse":  # the sparse path is the numpy twin's, split included
        low2, high2, occ2 = np.zeros_like(low), np.zeros_like(high), np.zeros(n_ch, np.int64)
        for part in np.array_split(np.arange(n_hits), 3):
            fill_channel_occupancy_split_numpy(ch[part], t[part], n_ch, n_bins, 0.0, 40.0, occ2, low2, high2)
        np.testing.assert_array_equal(low2, low)
        np.testing.assert_array_equal(high2, high)
    bins, counts = sparse_from_split(low, high, True, reset=True)
    b_ref, c_ref = sparse_from_dense(h_ref.astype(np.int32))
    np.testing.assert_array_equal(bins, b_ref)
    np.testing.assert_array_equal(counts, c_ref)
    assert counts.dtype == np.int32 and not low.any() and not high.any()
