"""Chunked event reading on real public ROOT files."""

from __future__ import annotations

import numpy as np
import pytest
import uproot

from dpnb.errors import InputError, SchemaError
from dpnb.io.events import iterate_chunks, read_branches


def test_flat_branches_chunked_equal_whole_read(real_data):
    path = real_data / "uproot-Zmumu.root"
    whole = uproot.open(path)["events"].arrays(["Run", "Event", "M"], library="np")
    chunks = list(iterate_chunks([path], ["run", "event", "mass"], step_size=700,
                                 schema={"run": "Run", "event": "Event", "mass": "M"}))
    assert [c.n_events for c in chunks] == [700, 700, 700, 204]
    runs = np.concatenate([c["run"] for c in chunks])
    mass = np.concatenate([c["mass"] for c in chunks])
    np.testing.assert_array_equal(runs, whole["Run"])
    np.testing.assert_array_equal(mass, whole["M"])
    # known facts of this file: two runs, 500 distinct (Run, Event)
    events = np.concatenate([c["event"] for c in chunks])
    assert set(np.unique(runs)) == {148029, 148031}
    assert len(set(zip(runs.tolist(), events.tolist()))) == 500


def test_jagged_values_and_offsets(real_data):
    path = real_data / "uproot-HZZ.root"
    ref = uproot.open(path)["events"]["Muon_Px"].array(library="ak")
    chunks = list(iterate_chunks([path], ["Muon_Px"], step_size=1000))
    assert sum(c.n_events for c in chunks) == 2421
    total = 0
    for c in chunks:
        values, offsets = c.jagged("Muon_Px")
        assert offsets[0] == 0 and offsets[-1] == len(values) and len(offsets) == c.n_events + 1
        part = ref[c.entry_start : c.entry_stop]
        np.testing.assert_allclose(values, np.concatenate([np.asarray(x) for x in part.tolist()] or [[]]))
        total += len(values)
    import awkward as ak

    assert total == int(ak.sum(ak.num(ref)))


def test_missing_branch_lists_existing(real_data):
    with pytest.raises(SchemaError) as exc:
        read_branches(real_data / "uproot-Zmumu.root", ["Runn"])
    msg = str(exc.value)
    assert "uproot-Zmumu.root" in msg and "'Runn'" in msg and "Run" in msg and "branches that exist" in msg


def test_missing_tree_and_file(real_data, tmp_path):
    with pytest.raises(SchemaError, match="no tree 'evts'"):
        read_branches(real_data / "uproot-Zmumu.root", ["Run"], tree="evts")
    with pytest.raises(InputError, match="file not found"):
        read_branches(tmp_path / "nope.root", ["Run"])
    bad = tmp_path / "bad.root"
    bad.write_bytes(b"not a root file at all")
    with pytest.raises(InputError, match="not a readable ROOT file"):
        read_branches(bad, ["Run"])


def test_skip_policy_records_bad_files(real_data, tmp_path):
    bad = tmp_path / "bad.root"
    bad.write_bytes(b"junk")
    skipped = []
    chunks = list(iterate_chunks([bad, real_data / "uproot-Zmumu.root"], ["Run"], on_bad_file="skip", skipped=skipped))
    assert sum(c.n_events for c in chunks) == 2304
    assert len(skipped) == 1 and skipped[0].path == str(bad)


def test_prefetch_yields_the_same_chunks_and_reraises_in_place(real_data, tmp_path):
    import threading

    from dpnb.io.events import prefetch

    path = real_data / "uproot-Zmumu.root"
    plain = list(iterate_chunks([path], ["M"], step_size=500))
    ahead = list(prefetch(iterate_chunks([path], ["M"], step_size=500)))
    assert [(c.entry_start, c.entry_stop) for c in ahead] == [(c.entry_start, c.entry_stop) for c in plain]
    assert all(np.array_equal(a["M"], b["M"]) for a, b in zip(ahead, plain))
    # a bad second file: the first file's chunks come first, then its error, in this thread
    bad = tmp_path / "bad.root"
    bad.write_bytes(b"not a root file")
    seen = []
    with pytest.raises(InputError, match="bad.root: not a readable ROOT file"):
        for c in prefetch(iterate_chunks([path, bad], ["M"], step_size=1000)):
            seen.append(c.n_events)
    assert seen == [1000, 1000, 304]
    # leaving early stops the reader thread and closes the source
    before = {t.ident for t in threading.enumerate()}
    it = prefetch(iterate_chunks([path], ["M"], step_size=100))
    assert next(it).n_events == 100
    it.close()
    assert not [t for t in threading.enumerate() if t.name == "dpnb-prefetch" and t.ident not in before]


def test_file_streams_hand_out_files_in_order_with_their_errors(real_data, tmp_path):
    from dpnb.io.events import FileStreams

    z = real_data / "uproot-Zmumu.root"
    bad = tmp_path / "bad.root"
    bad.write_bytes(b"not a root file")
    streams = FileStreams([z, bad, z, z], ["M"], step_size=1000)
    try:
        first = streams.chunks(0)
        assert next(first).entry_start == 0  # leave file 0 after one chunk: the rest is dropped
        with pytest.raises(InputError, match="bad.root: not a readable ROOT file"):
            list(streams.chunks(1))
        assert [c.n_events for c in streams.chunks(2)] == [1000, 1000, 304]
        whole = np.concatenate([c["M"] for c in streams.chunks(3)])
        np.testing.assert_array_equal(whole, uproot.open(z)["events"]["M"].array(library="np"))
    finally:
        streams.close()
