"""The conditions database: payload round trip, checksums, tag states, chains, coverage, diff, concurrency."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpnb.conditions import ConditionsDB
from dpnb.errors import ChecksumError, ConditionsError, InputError, TagStateError
from dpnb.runs import IOV, RunId

N_CH = 64
PROV = {"bucket": "demo", "step": "time_offsets", "report": "reports/demo/calibration_t0/v1", "inputs": ["a.root"]}


def t0_data(seed: int = 0, n: int = N_CH) -> dict:
    rng = np.random.default_rng(seed)
    t0 = rng.normal(20.0, 3.0, n)
    err = rng.uniform(0.1, 0.3, n)
    status = np.zeros(n, np.int8)
    status[:3] = 2  # not enough data: no constant
    t0[:3] = np.nan
    status[5] = 1
    return {"t0_ns": t0, "t0_err_ns": err, "status": status}


def gain(g: float) -> dict:
    return {"gain": g, "gain_err": 0.01}


def runs(first: int, last: int, exp: int = 1) -> list[RunId]:
    return [RunId(exp, r) for r in range(first, last + 1)]


@pytest.fixture
def db(tmp_path):
    with ConditionsDB(tmp_path / "cond" / "conditions.sqlite") as d:
        d.create_tag("gt")
        yield d


def content(db, tag):
    return [(p.name, p.iov, p.revision) for p in db.payloads(tag, with_data=False)]


# --- round trip and format ---------------------------------------------------------

def test_round_trip_keeps_values_and_dtypes(db):
    data = t0_data()
    rev = db.add_payload("gt", "ChannelT0", data, IOV(1, 1, 1, 10), PROV)
    align = {"dx_um": np.linspace(-3, 3, 16), "dy_um": np.arange(16) * 0.1, "dx_err_um": np.full(16, 0.5),
             "dy_err_um": np.full(16, 0.25), "iterations": 4}
    db.add_payload("gt", "ModuleAlignment", align, IOV(1, 1, 1, 10), PROV)
    p = db.get("ChannelT0", RunId(1, 4), ["gt"])
    assert (p.name, p.revision, p.iov, p.tag) == ("ChannelT0", rev, IOV(1, 1, 1, 10), "gt")
    assert p.provenance == PROV
    for k, v in data.items():
        assert p.data[k].dtype == v.dtype, k
        np.testing.assert_array_equal(p.data[k], v)  # exact, NaN in the same places
    a = db.get("ModuleAlignment", RunId(1, 10), "gt").data
    np.testing.assert_array_equal(a["dx_um"], align["dx_um"])
    assert a["iterations"] == 4 and np.issubdtype(type(a["iterations"]), np.integer)


def test_provenance_from_a_notebook_context(db, tmp_path):
    from types import SimpleNamespace

    from dpnb.conditions import provenance_for

    ctx = SimpleNamespace(label="demo", name="calibration_t0", output_dir=tmp_path / "v3")
    prov = provenance_for(ctx, "time_offsets", [tmp_path / "r00001.root"])
    db.add_payload("gt", "DedxGain", gain(1.0), IOV(1, 1, 1, 1), prov)
    got = db.get("DedxGain", RunId(1, 1), "gt").provenance
    assert got == {"bucket": "demo", "step": "time_offsets", "notebook": "calibration_t0",
                   "report": str(tmp_path / "v3"), "inputs": [str(tmp_path / "r00001.root")]}


def test_revision_is_content_checksum(db, tmp_path):
    r1 = db.add_payload("gt", "DedxGain", gain(1.02), IOV(1, 1, 1, 1), PROV)
    r2 = db.add_payload("gt", "DedxGain", gain(1.02), IOV(1, 2, 1, 2), {"step": "other"})
    r3 = db.add_payload("gt", "DedxGain", gain(1.0200001), IOV(1, 3, 1, 3), PROV)
    assert r1 == r2 != r3  # independent of IOV and provenance, sensitive to content
    with ConditionsDB(tmp_path / "other.sqlite") as other:
        other.create_tag("x")
        # lists and numpy arrays of the same values give the same revision in another file
        d = t0_data(3)
        listed = {"t0_ns": d["t0_ns"].tolist(), "t0_err_ns": list(d["t0_err_ns"]), "status": d["status"].tolist()}
        assert other.add_payload("x", "ChannelT0", listed, IOV(1, 1), {}) == db.add_payload(
            "gt", "ChannelT0", d, IOV(1, 1, 1, 9), {})


def test_payload_readable_without_dpnb(db):
    """The snippet of docs/conditions.md: sqlite3 + json (+ numpy) give the same arrays."""
    data = t0_data(1)
    db.add_payload("gt", "ChannelT0", data, IOV(1, 1, 1, 10), PROV)
    con = sqlite3.connect(db.path)
    try:
        row = con.execute(
            "SELECT p.data, p.provenance FROM payloads p JOIN tag_payloads t ON t.payload_id = p.id "
            "WHERE t.tag = ? AND p.name = ? AND p.exp_first = 1 AND p.run_first <= ? AND p.run_last >= ?",
            ("gt", "ChannelT0", 5, 5)).fetchone()
    finally:
        con.close()
    fields = json.loads(row[0])
    t0 = np.array(fields["t0_ns"]["data"], dtype=fields["t0_ns"]["dtype"]).reshape(fields["t0_ns"]["shape"])
    np.testing.assert_array_equal(t0, data["t0_ns"])
    assert fields["status"]["dtype"] == "int8"
    assert json.loads(row[1])["step"] == "time_offsets"


def test_bad_data_refused_naming_field_and_nothing_written(db):
    bad = [
        ({"gain": 1.0}, "gain_err"),                                 # missing
        ({"gain": 1.0, "gain_err": 0.1, "offset": 2.0}, "offset"),   # extra
        ({"gain": "1.0", "gain_err": 0.1}, "gain"),                  # string
        ({"gain": [1.0, 2.0], "gain_err": 0.1}, "gain"),             # array for a scalar
        ({"gain": True, "gain_err": 0.1}, "gain"),                   # bool is not a number here
    ]
    for data, field in bad:
        with pytest.raises(InputError) as err:
            db.add_payload("gt", "DedxGain", data, IOV(1, 1, 1, 1), PROV)
        assert "DedxGain" in str(err.value) and field in str(err.value)
    d = t0_data()
    d["status"] = d["status"].astype(float)
    with pytest.raises(InputError, match="ChannelT0.*status.*int8"):
        db.add_payload("gt", "ChannelT0", d, IOV(1, 1, 1, 1), PROV)
    d = t0_data()
    d["t0_err_ns"] = d["t0_err_ns"][:-1]
    with pytest.raises(InputError, match="t0_err_ns.*length 63"):
        db.add_payload("gt", "ChannelT0", d, IOV(1, 1, 1, 1), PROV)
    d = t0_data()
    d["status"][7] = 9
    with pytest.raises(InputError, match=r"status.*\[9\] not allowed"):
        db.add_payload("gt", "ChannelT0", d, IOV(1, 1, 1, 1), PROV)
    with pytest.raises(InputError, match="unknown payload name 'DedxGian'.*DedxGain"):
        db.add_payload("gt", "DedxGian", gain(1.0), IOV(1, 1, 1, 1), PROV)
    assert db.payloads("gt") == []


def test_bad_tag_or_provenance_refused(db):
    with pytest.raises(ConditionsError, match="no global tag 'gtt'.*'gt'"):
        db.add_payload("gtt", "DedxGain", gain(1.0), IOV(1, 1, 1, 1), PROV)
    with pytest.raises(InputError, match="provenance must be a mapping"):
        db.add_payload("gt", "DedxGain", gain(1.0), IOV(1, 1, 1, 1), ["step"])
    with pytest.raises(InputError, match="global tag name 'a b'"):
        db.create_tag("a b")
    with pytest.raises(InputError, match="IOV"):
        db.add_payload("gt", "DedxGain", gain(1.0), "1:1-5", PROV)
    assert db.payloads("gt") == [] and [t.name for t in db.list_tags()] == ["gt"]


# --- checksums ---------------------------------------------------------------------

def _tamper(path, sql, args=()):
    con = sqlite3.connect(path)
    try:
        con.execute("DROP TRIGGER payloads_no_update")  # a deliberate tamperer can do this
        con.execute(sql, args)
        con.commit()
    finally:
        con.close()


def test_payload_rows_immutable_by_trigger(db):
    db.add_payload("gt", "DedxGain", gain(1.0), IOV(1, 1, 1, 1), PROV)
    con = sqlite3.connect(db.path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="immutable"):
            con.execute("UPDATE payloads SET data = '{}'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            con.execute("DELETE FROM tag_history")
    finally:
        con.close()


def test_tampered_data_raises_checksum_error(db):
    rev = db.add_payload("gt", "DedxGain", gain(1.0), IOV(1, 1, 1, 5), PROV)
    assert db.get("DedxGain", RunId(1, 2), "gt").data["gain"] == 1.0
    _tamper(db.path, "UPDATE payloads SET data = replace(data, '1.0', '1.5')")
    with pytest.raises(ChecksumError) as err:
        db.get("DedxGain", RunId(1, 2), "gt")
    assert "DedxGain" in str(err.value) and rev[:12] in str(err.value)


def test_tampered_iov_raises_checksum_error(db):
    db.add_payload("gt", "DedxGain", gain(1.0), IOV(1, 1, 1, 5), PROV)
    _tamper(db.path, "UPDATE payloads SET run_last = 50")
    with pytest.raises(ChecksumError, match="row checksum"):
        db.get("DedxGain", RunId(1, 20), "gt")
    with pytest.raises(ChecksumError):
        db.payloads("gt", with_data=False)
    with pytest.raises(ChecksumError):
        db.runs_missing("DedxGain", runs(1, 20), "gt")


# --- idempotence, overlaps, frozen tags ---------------------------------------------

def test_identical_add_is_a_noop(db):
    r1 = db.add_payload("gt", "ChannelT0", t0_data(), IOV(1, 1, 1, 10), PROV)
    r2 = db.add_payload("gt", "ChannelT0", t0_data(), IOV(1, 1, 1, 10), {"step": "rerun"})
    assert r1 == r2
    con = sqlite3.connect(db.path)
    try:
        assert con.execute("SELECT COUNT(*) FROM payloads").fetchone()[0] == 1
        assert con.execute("SELECT COUNT(*) FROM tag_payloads").fetchone()[0] == 1
    finally:
        con.close()
    assert db.get("ChannelT0", (1, 1), "gt").provenance == PROV  # the first copy's provenance is kept


def test_overlapping_iov_refused_unless_replace(db):
    old = db.add_payload("gt", "DedxGain", gain(1.0), IOV(1, 1, 1, 10), PROV)
    with pytest.raises(ConditionsError) as err:
        db.add_payload("gt", "DedxGain", gain(1.1), IOV(1, 8, 1, 20), PROV)
    msg = str(err.value)
    assert "(1,8,1,20)" in msg and "(1,1,1,10)" in msg and old[:12] in msg
    # same content, overlapping but different IOV: also refused
    with pytest.raises(ConditionsError, match="overlaps"):
        db.add_payload("gt", "DedxGain", gain(1.0), IOV(1, 5, 1, 12), PROV)
    assert content(db, "gt") == [("DedxGain", IOV(1, 1, 1, 10), old)]
    new = db.add_payload("gt", "DedxGain", gain(1.1), IOV(1, 1, 1, 20), PROV, replace=True)
    assert content(db, "gt") == [("DedxGain", IOV(1, 1, 1, 20), new)]
    assert db.get("DedxGain", RunId(1, 3), "gt").data["gain"] == 1.1


def test_failed_write_leaves_nothing_half_done(db, monkeypatch):
    import dpnb.conditions.store as store

    old = db.add_payload("gt", "DedxGain", gain(1.0), IOV(1, 1, 1, 10), PROV)

    def broken(*args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "row_sha", broken)  # fails after the replaced payload was unlinked
    with pytest.raises(RuntimeError, match="disk on fire"):
        db.add_payload("gt", "DedxGain", gain(1.1), IOV(1, 1, 1, 20), PROV, replace=True)
    monkeypatch.undo()
    assert content(db, "gt") == [("DedxGain", IOV(1, 1, 1, 10), old)]


def _freeze(db, tag="gt"):
    db.add_payload(tag, "DedxGain", gain(1.0), IOV(1, 1, 1, 10), PROV)
    db.set_state(tag, "TESTING", runs=runs(1, 10))


def test_frozen_tag_refuses_changes_and_stays_unchanged(db):
    _freeze(db)
    before = content(db, "gt")
    with pytest.raises(TagStateError, match="'gt' is TESTING, not OPEN.*BeamEnergy"):
        db.add_payload("gt", "BeamEnergy", {"ecm_gev": 10.58, "ecm_err_gev": 0.001}, IOV(1, 1, 1, 10), PROV)
    with pytest.raises(TagStateError):
        db.add_payload("gt", "DedxGain", gain(1.5), IOV(1, 1, 1, 10), PROV, replace=True)
    with pytest.raises(TagStateError):
        db.create_tag("gt")
    # the identical payload again is still a no-op (a rerun of a finished step)
    assert db.add_payload("gt", "DedxGain", gain(1.0), IOV(1, 1, 1, 10), {}) == before[0][2]
    assert content(db, "gt") == before and db.state("gt") == "TESTING"
    con = sqlite3.connect(db.path)  # the file itself refuses, too
    try:
        with pytest.raises(sqlite3.IntegrityError, match="not OPEN"):
            con.execute("DELETE FROM tag_payloads WHERE tag = 'gt'")
    finally:
        con.close()
    assert content(db, "gt") == before


# --- states ------------------------------------------------------------------------

def test_legal_path_and_history(db):
    _freeze(db)
    assert db.set_state("gt", "VALIDATED", by="alice") == "VALIDATED"
    assert db.set_state("gt", "VALIDATED") == "VALIDATED"  # same state: no-op, not logged
    with pytest.raises(TagStateError, match="approvals"):
        db.publish("gt", by="bob", approvals_ok=False)
    assert db.state("gt") == "VALIDATED"
    assert db.publish("gt", by="bob", approvals_ok=False, override=True) == "PUBLISHED"
    assert db.set_state("gt", "INVALID", by="carol") == "INVALID"
    hist = db.history("gt")
    assert [(h["from_state"], h["to_state"]) for h in hist] == [
        (None, "OPEN"), ("OPEN", "TESTING"), ("TESTING", "VALIDATED"), ("VALIDATED", "PUBLISHED"),
        ("PUBLISHED", "INVALID")]
    assert [h["who"] for h in hist[2:]] == ["alice", "bob", "carol"]
    assert [h["override"] for h in hist] == [False, False, False, True, False]
    assert "coverage ok" in hist[1]["note"]


def test_advance_is_rerun_safe(db):
    from dpnb.conditions import tag_chain

    assert tag_chain({"global_tag": "gt", "chain": ["base", "gt"]}) == ["gt", "base"]
    db.add_payload("gt", "DedxGain", gain(1.0), IOV(1, 1, 1, 10), PROV)
    with pytest.raises(TagStateError, match="coverage"):
        db.advance("gt", "VALIDATED", runs(1, 11))
    assert db.state("gt") == "OPEN"
    assert db.advance("gt", "VALIDATED", runs(1, 10), by="shifter") == "VALIDATED"
    assert [h["to_state"] for h in db.history("gt")] == ["OPEN", "TESTING", "VALIDATED"]
    # a rerun: identical payload, same request -> nothing changes
    db.add_payload("gt", "DedxGain", gain(1.0), IOV(1, 1, 1, 10), PROV)
    assert db.advance("gt", "TESTING", runs(1, 10)) == "VALIDATED"
    assert len(db.history("gt")) == 3
    with pytest.raises(ConditionsError, match=r"already VALIDATED.*1:12"):
        db.advance("gt", "VALIDATED", runs(1, 12))  # the bucket grew: the frozen tag no longer covers it
    with pytest.raises(InputError, match="publish"):
        db.advance("gt", "PUBLISHED", runs(1, 10))


@pytest.mark.parametrize("path, target", [
    ((), "VALIDATED"), ((), "PUBLISHED"), (("TESTING",), "OPEN"), (("TESTING",), "PUBLISHED"),
    (("TESTING", "VALIDATED"), "TESTING"), (("INVALID",), "OPEN"), (("INVALID",), "TESTING"),
    (("TESTING", "VALIDATED", "PUBLISHED"), "VALIDATED"),
])
def test_illegal_transitions_refused(db, path, target):
    db.add_payload("gt", "DedxGain", gain(1.0), IOV(1, 1, 1, 10), PROV)
    for s in path:
        db.set_state("gt", s, runs=runs(1, 10))
    state, n_hist = db.state("gt"), len(db.history("gt"))
    with pytest.raises(TagStateError, match=f"{state}"):
        db.set_state("gt", target, runs=runs(1, 10))
    assert db.state("gt") == state and len(db.history("gt")) == n_hist


def test_leaving_open_needs_runs_and_coverage(db):
    db.add_payload("gt", "DedxGain", gain(1.0), IOV(1, 1, 1, 10), PROV)
    with pytest.raises(TagStateError, match="run list"):
        db.set_state("gt", "TESTING")
    with pytest.raises(TagStateError, match=r"coverage check failed.*DedxGain: 2 run\(s\).*1:11"):
        db.set_state("gt", "TESTING", runs=runs(1, 12))
    with pytest.raises(TagStateError, match="BeamEnergy"):  # a required name absent from the tag
        db.set_state("gt", "TESTING", runs=runs(1, 10), names=["DedxGain", "BeamEnergy"])
    assert db.state("gt") == "OPEN"
    db.create_tag("empty")
    with pytest.raises(TagStateError, match="no payloads"):
        db.set_state("empty", "TESTING", runs=runs(1, 10))
    with pytest.raises(InputError, match="unknown state"):
        db.set_state("gt", "FROZEN")


# --- lookup ------------------------------------------------------------------------

def test_chain_lookup_first_tag_wins(db):
    db.create_tag("base")
    db.add_payload("gt", "DedxGain", gain(1.0), IOV(1, 1, 1, 5), PROV)
    db.add_payload("base", "DedxGain", gain(2.0), IOV(1, 1, 1, 20), PROV)
    assert db.get("DedxGain", RunId(1, 3), ["gt", "base"]).data["gain"] == 1.0
    p = db.get("DedxGain", RunId(1, 8), ["gt", "base"])
    assert (p.data["gain"], p.tag) == (2.0, "base")
    assert db.get("DedxGain", RunId(1, 3), ["base", "gt"]).data["gain"] == 2.0
    with pytest.raises(ConditionsError, match=r"no payload 'DedxGain' for run 1:21.*\['gt', 'base'\]"):
        db.get("DedxGain", RunId(1, 21), ["gt", "base"])
    with pytest.raises(ConditionsError, match="no global tag 'bsae'.*base"):
        db.get("DedxGain", RunId(1, 3), ["gt", "bsae"])
    with pytest.raises(InputError, match="'DedxGian'.*nearest: 'DedxGain'"):
        db.get("DedxGian", RunId(1, 3), ["gt"])
    assert db.runs_missing("DedxGain", runs(1, 22), ["gt"]) == runs(6, 22)
    assert db.runs_missing("DedxGain", runs(1, 22), ["gt", "base"]) == runs(21, 22)


def test_open_ended_iov_and_invalid_tag_in_chain(db):
    db.add_payload("gt", "BeamEnergy", {"ecm_gev": 10.58, "ecm_err_gev": 0.002}, IOV(1, 10, -1, -1), PROV)
    assert db.get("BeamEnergy", RunId(7, 1), "gt").data["ecm_gev"] == 10.58
    assert db.runs_missing("BeamEnergy", [RunId(1, 9), RunId(1, 10), RunId(2, 1)], "gt") == [RunId(1, 9)]
    db.set_state("gt", "INVALID")
    with pytest.raises(TagStateError, match="INVALID"):
        db.get("BeamEnergy", RunId(1, 12), "gt")


# --- coverage and diff -------------------------------------------------------------

def test_coverage_finds_gaps_and_overlaps(db):
    db.add_payload("gt", "DedxGain", gain(1.0), IOV(1, 1, 1, 4), PROV)
    db.add_payload("gt", "DedxGain", gain(1.1), IOV(1, 7, 1, 10), PROV)
    db.add_payload("gt", "BeamEnergy", {"ecm_gev": 10.5, "ecm_err_gev": 0.1}, IOV(1, 1, 1, 10), PROV)
    cov = db.coverage("gt", runs(1, 10))
    assert not cov.ok
    assert cov.gaps == {"DedxGain": runs(5, 6)} and cov.overlaps == {}
    # an overlap can only come from outside this API (another tool, an old file): link one in by hand
    db.create_tag("side")
    side = db.add_payload("side", "BeamEnergy", {"ecm_gev": 10.6, "ecm_err_gev": 0.1}, IOV(1, 8, 1, 12), PROV)
    con = sqlite3.connect(db.path)
    try:
        con.execute("INSERT INTO tag_payloads (tag, payload_id, added) SELECT 'gt', payload_id, added "
                    "FROM tag_payloads WHERE tag = 'side'")
        con.commit()
    finally:
        con.close()
    cov = db.coverage("gt", runs(1, 10))
    first = db.get("BeamEnergy", RunId(1, 1), "gt").revision
    assert cov.overlaps == {"BeamEnergy": [(first, side)]}
    with pytest.raises(ConditionsError, match="2 payloads 'BeamEnergy' cover run 1:9"):
        db.get("BeamEnergy", RunId(1, 9), "gt")
    ok = db.coverage("gt", runs(1, 10), names=["DedxGain"])  # names restrict the check
    assert ok.gaps == {"DedxGain": runs(5, 6)} and ok.overlaps == {}


def test_gap_free_tag_passes_coverage(db):
    for r in range(1, 6):
        db.add_payload("gt", "DedxGain", gain(1 + r / 100), IOV(1, r, 1, r), PROV)
    cov = db.coverage("gt", runs(1, 5))
    assert cov.ok and cov.gaps == {} and cov.overlaps == {} and cov.names == ("DedxGain",)
    assert not db.coverage("gt", []).ok  # nothing to check against is not a pass


def test_diff_of_two_tags(db):
    db.create_tag("new")
    be = {"ecm_gev": 10.58, "ecm_err_gev": 0.001}
    db.add_payload("gt", "DedxGain", gain(1.0), IOV(1, 1, 1, 5), PROV)        # changed
    db.add_payload("new", "DedxGain", gain(1.1), IOV(1, 1, 1, 5), PROV)
    db.add_payload("gt", "BeamEnergy", be, IOV(1, 1, 1, 5), PROV)              # IOV changed
    db.add_payload("new", "BeamEnergy", be, IOV(1, 1, 1, 9), PROV)
    t0 = db.add_payload("gt", "ChannelT0", t0_data(), IOV(1, 1, 1, 9), PROV)   # identical
    db.add_payload("new", "ChannelT0", t0_data(), IOV(1, 1, 1, 9), PROV)
    db.add_payload("gt", "DedxGain", gain(1.2), IOV(1, 6, 1, 9), PROV)        # removed
    db.add_payload("new", "BeamSpot", {k: 0.1 for k in (
        "x_cm", "y_cm", "z_cm", "x_err_cm", "y_err_cm", "z_err_cm", "size_x_cm", "size_y_cm", "size_z_cm")},
        IOV(1, 1, 1, 9), PROV)                                                    # added
    d = db.diff("gt", "new")
    assert d.n_same == 1 and not d.identical
    assert [(e.name, e.iov_a, e.iov_b) for e in d.changed] == [("DedxGain", IOV(1, 1, 1, 5), IOV(1, 1, 1, 5))]
    assert [(e.name, e.iov_a, e.iov_b) for e in d.iov_changed] == [("BeamEnergy", IOV(1, 1, 1, 5), IOV(1, 1, 1, 9))]
    assert [(e.name, e.iov_a) for e in d.removed] == [("DedxGain", IOV(1, 6, 1, 9))]
    assert [(e.name, e.iov_b) for e in d.added] == [("BeamSpot", IOV(1, 1, 1, 9))]
    assert t0 not in {e.revision_a for e in d.entries}
    assert d.changed[0].fields == ()  # not read unless asked
    detailed = db.diff("gt", "new", fields=True).changed[0]
    assert [f for f, _ in detailed.fields] == ["gain"] and detailed.fields[0][1] == pytest.approx(0.1)
    assert db.diff("gt", "gt").identical
    rev = db.diff("new", "gt")
    assert len(rev.added) == 1 and len(rev.removed) == 1


# --- files and processes -----------------------------------------------------------

def test_missing_or_foreign_file(tmp_path):
    with pytest.raises(ConditionsError, match="no conditions database"):
        ConditionsDB(tmp_path / "absent.sqlite", create=False)
    assert not (tmp_path / "absent.sqlite").exists()
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite " * 100)
    with pytest.raises(ConditionsError, match="junk.sqlite"):
        ConditionsDB(junk)
    assert junk.read_bytes() == b"this is not sqlite " * 100  # left as it was
    with pytest.raises(ConditionsError, match="cannot|not a usable"):
        ConditionsDB(tmp_path)  # a directory
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    try:
        con.execute("CREATE TABLE runs (exp INTEGER, run INTEGER)")
        con.commit()
    finally:
        con.close()
    with pytest.raises(ConditionsError, match=r"not a dpnb conditions database \(tables \['runs'\]"):
        ConditionsDB(other)
    con = sqlite3.connect(other)
    try:  # untouched: no tables added, journal mode unchanged
        assert [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["runs"]
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        con.close()


def _writer(path: str, worker: int, n: int, start) -> None:
    start.wait(30)  # both processes begin together, so their writes interleave
    with ConditionsDB(path, timeout_s=30) as db:
        db.create_tag("shared")  # both processes race to create it
        for i in range(n):
            run = worker * 1000 + i
            db.add_payload("shared", "DedxGain", gain(1 + run / 1e5), IOV(1, run, 1, run),
                           {"step": "post_tracking", "worker": worker})


def test_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "conc.sqlite")
    n = 25
    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(path, w, n, start)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    with ConditionsDB(path) as db:
        expected = [RunId(1, w * 1000 + i) for w in (1, 2) for i in range(n)]
        assert db.coverage("shared", expected).ok
        assert len(db.payloads("shared")) == 2 * n
        for r in expected[::7]:
            assert db.get("DedxGain", r, "shared").data["gain"] == 1 + r.run / 1e5
        assert [h["to_state"] for h in db.history("shared")] == ["OPEN"]  # created once


def test_docs_snippet_reads_payload_without_dpnb(db):
    """Run the snippet of docs/conditions.md as written (only the file path replaced)."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "conditions.md").read_text()
    section = doc.split("### Reading a payload without dpnb", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(snippet.strip().splitlines()) <= 5
    db.create_tag("demo_calibration")
    data = t0_data(4)
    db.add_payload("demo_calibration", "ChannelT0", data, IOV(1, 1, 1, 40), PROV)
    ns: dict = {}
    exec(snippet.replace("data/demo/conditions.sqlite", str(db.path)), ns)  # noqa: S102
    ns["con"].close()
    assert set(ns["data"]) == set(data)
    for k in data:
        np.testing.assert_array_equal(ns["data"][k], data[k])
        assert ns["data"][k].dtype == data[k].dtype


def test_row_checksum_formula_is_the_documented_one(db):
    import hashlib

    db.add_payload("gt", "DedxGain", gain(1.0), IOV(1, 2, 1, 3), PROV)
    con = sqlite3.connect(db.path)
    try:
        name, rev, e0, r0, e1, r1, data, prov, row_sha = con.execute(
            "SELECT name, revision, exp_first, run_first, exp_last, run_last, data, provenance, row_sha256 "
            "FROM payloads").fetchone()
    finally:
        con.close()
    assert rev == hashlib.sha256(f"{name}\n{data}".encode()).hexdigest()
    text = json.dumps([name, rev, [e0, r0, e1, r1], prov], sort_keys=True, separators=(",", ":"))
    assert row_sha == hashlib.sha256(text.encode()).hexdigest()


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3), st.integers(0, 30), st.integers(-1, 3), st.integers(-1, 30)),
                max_size=8),
       st.lists(st.tuples(st.integers(1, 3), st.integers(0, 30)), max_size=20))
def test_uncovered_runs_match_brute_force(raw_iovs, raw_runs):
    from dpnb.conditions.compare import uncovered_runs

    ivs = []
    for e0, r0, de, r1 in raw_iovs:
        if de == -1:
            ivs.append(IOV(e0, r0))
        elif r1 == -1:
            ivs.append(IOV(e0, r0, e0 + de, -1))
        elif (e0 + de, r1) >= (e0, r0):
            ivs.append(IOV(e0, r0, e0 + de, r1))
    rs = sorted({RunId(e, r) for e, r in raw_runs})
    assert uncovered_runs(rs, ivs) == [r for r in rs if not any(iv.contains(r) for iv in ivs)]


def _add_from_child(db, run):
    db.add_payload("gt", "DedxGain", gain(2.0), IOV(1, run, 1, run), {"from": "child"})


def test_forked_and_pickled_handles_reopen_the_file(db):
    import pickle
    import threading

    db.add_payload("gt", "DedxGain", gain(1.0), IOV(1, 1, 1, 1), PROV)
    child = multiprocessing.get_context("fork").Process(target=_add_from_child, args=(db, 2))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    db.add_payload("gt", "DedxGain", gain(1.0), IOV(1, 3, 1, 3), PROV)  # the parent's connection still works
    clone = pickle.loads(pickle.dumps(db))
    try:
        assert clone.get("DedxGain", RunId(1, 2), "gt").provenance == {"from": "child"}
    finally:
        clone.close()
    errors = []

    def reader():
        try:
            for r in (1, 2, 3):
                db.get("DedxGain", RunId(1, r), "gt")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and db.runs_missing("DedxGain", runs(1, 4), "gt") == [RunId(1, 4)]


def test_field_changes_ignore_equal_nans():
    from dpnb.conditions.compare import field_changes

    a = {"t0_ns": np.array([1.0, np.nan, 3.0]), "status": np.array([0, 2, 0], np.int8)}
    b = {"t0_ns": np.array([1.0, np.nan, 3.5]), "status": np.array([0, 2, 0], np.int8)}
    assert field_changes(a, b) == (("t0_ns", 0.5),)
    b["t0_ns"] = np.array([1.0, 2.0, 3.0])  # NaN -> number: changed, no finite size
    assert field_changes(a, b) == (("t0_ns", float("inf")),)
    assert field_changes(a, {"t0_ns": np.zeros(4), "status": a["status"]}) == (("t0_ns", float("inf")),)
