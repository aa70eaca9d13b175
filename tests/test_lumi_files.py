"""Luminosity file formats: round trips, version rules, archives, brilcalc, certification, bad input."""

import csv
import json
import math
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dpnb.errors import InputError, SchemaError
from dpnb.io import lumi_files as lf

REAL = Path(__file__).resolve().parents[2] / "shared/data/real"
LUMI_SMALL = REAL / "lumi_small.csv"
needs_real = pytest.mark.skipif(not LUMI_SMALL.is_file(), reason=f"real test file {LUMI_SMALL} not present")


def _random_columns(n, seed=0):
    rng = np.random.default_rng(seed)
    t = 1.6e9 + np.arange(n) * 60.0 + rng.integers(0, 3, n)
    stab = np.where(rng.random(n) < 0.3, rng.random(n), 1.0)
    lumi = rng.uniform(0, 2e4, n)
    return t, stab, lumi, lumi * rng.uniform(0, 0.01, n), lumi / rng.uniform(1e3, 2e3, n), rng.random(n) * 1e-3


# --- round trips --------------------------------------------------------------------
def test_massi_lumi_round_trip_is_exact(tmp_path):
    cols = _random_columns(257)
    p = lf.massi_paths(tmp_path, 7001, "TOY")
    lf.write_massi_lumi(p["lumi"], *cols, header="fill 7001 toy")
    m = lf.read_massi_lumi(p["lumi"])
    assert m.fill == 7001 and len(m) == 257 and m.bad_lines == []
    for got, want in zip((m.time_s, m.stab, m.lumi, m.dlumi, m.speclumi, m.dspeclumi), cols):
        np.testing.assert_array_equal(got, want)
    assert m.line[0] == 2 and m.line[-1] == 258  # the header comment is line 1


def test_massi_summary_round_trip_is_exact(tmp_path):
    segs = [(1.6e9, 1.6e9 + 3600.5, 12345.678901234, 3.14159e7), (1.6e9 + 4000, 1.6e9 + 9000, 0.1, 1.0 / 3)]
    path = tmp_path / "7001_summary_TOY.txt"
    lf.write_massi_summary(path, segs, header="segments")
    assert lf.read_massi_summary(path).segments() == segs


def test_version_files_round_trip(tmp_path):
    ann = {"1": "luminometer", "1 1": "T0", "1 2": "V0", "2": "processing level", "2 2": "offline",
           "_1": "afterglow correction", "_3": "ghost charge"}
    lf.write_version_files(tmp_path, "1.2._1._3", ann)
    v, got = lf.read_version_files(tmp_path)
    assert str(v) == "1.2._1._3" and v.plain == ("1", "2") and v.underscore == (1, 3)
    assert got == ann and list(got) == list(ann)
    assert lf.check_version_annotated(v, got) == []
    assert lf.check_version_annotated(lf.parse_version("1.3"), got) == []  # field 2 is annotated by "2"
    problems = lf.check_version_annotated(lf.parse_version("1.3.4._2"), got, "x")
    assert problems == ["x: version 1.3.4._2 field 3 = 4: no annotation '3' or '3 4'",
                        "x: version 1.3.4._2 uses _2: no annotation '_2'"]


def test_run_lumi_round_trip_is_exact(tmp_path):
    df = pd.DataFrame({"exp": [1, 1, 2], "run": [5, 6, 1], "run_type": ["4S", "continuum", "scan"],
                       "lumi_pb": [1 / 3, 2.5e-7, 123456.789], "stat_pb": [1e-3, 0.0, 0.1],
                       "sys_pb": [0.01, 1e-9, 7.0]})
    path = tmp_path / "run_lumi.csv"
    lf.write_run_lumi(path, df)
    pd.testing.assert_frame_equal(lf.read_run_lumi(path), df)
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write leaves no temp file


# --- comments and bad lines -----------------------------------------------------------
def test_comments_anywhere_and_bad_lines(tmp_path):
    path = tmp_path / "42_lumi_TOY.txt"
    path.write_text("# header\n100 1 5 0.1 1 0.01  # trailing comment\n\n160 1 6 0.1 1\n220 1 7 0.1 1 0.01 9\n"
                    "280 0.5 8 0.1 1 0.01\n340 1 x 0.1 1 0.01\n")
    with pytest.raises(InputError, match=r"42_lumi_TOY.txt:4: missing columns: 5 fields, expected 6"):
        lf.read_massi_lumi(path)
    m = lf.read_massi_lumi(path, on_bad_line="skip")
    np.testing.assert_array_equal(m.time_s, [100, 280])
    np.testing.assert_array_equal(m.line, [2, 6])
    assert [b.line for b in m.bad_lines] == [4, 5, 7]
    for b, start in zip(m.bad_lines, ("missing columns", "extra columns: 7 fields", "not a finite number in '340 1 x")):
        assert b.reason.startswith(start) and str(b).startswith(f"{path}:{b.line}: ")
    path.write_text("100 1 5 0.1 1 0.01\n160 1 nan 0.1 1 0.01\n")
    with pytest.raises(InputError, match=r":2: not a finite number"):
        lf.read_massi_lumi(path)
    with pytest.raises(Exception, match="expected one of"):
        lf.read_massi_lumi(path, on_bad_line="ignore")


def test_summary_stop_before_start(tmp_path):
    path = tmp_path / "1_summary_TOY.txt"
    path.write_text("200 100 5 7\n")
    with pytest.raises(InputError, match=r"1_summary_TOY.txt:1: timestop"):
        lf.read_massi_summary(path)


# --- version rules --------------------------------------------------------------------
@pytest.mark.parametrize("text", ["1", "1.2", "1.2.3", "001.02", "1._1", "1.2._1._2", "1.2._2._1", "3.4.5._10._2._7"])
def test_valid_versions(text):
    assert str(lf.parse_version(text)) == text


@pytest.mark.parametrize("text,why", [
    ("1.2._1._1", "more than once"), ("1._01._1", "more than once"), ("1.2._1.3", "plain field"),
    ("_1", "at least one plain"), ("", "empty"), ("1..2", "field 2"), ("1.a", "field 2"), ("1.2.", "field 3"),
    ("1.-2", "field 2"), ("1.2.__1", "field 3"), ("v1.2", "field 1"), ("1 .2", "field 1"),
])
def test_invalid_versions(text, why):
    with pytest.raises(InputError, match=why):
        lf.parse_version(text, "7001/version.txt:1")


def test_version_file_with_two_lines(tmp_path):
    (tmp_path / "version.txt").write_text("1.0\n1.1\n")
    (tmp_path / "version_annotation.txt").write_text("1 : x\n")
    with pytest.raises(InputError, match="exactly one version line"):
        lf.read_version_files(tmp_path)
    (tmp_path / "version.txt").write_text("1.2._1._1\n")
    with pytest.raises(InputError, match=r"version.txt:1: invalid version"):
        lf.read_version_files(tmp_path)


def test_annotation_parsing_errors():
    assert lf.parse_annotations("1 : a\n# c\n\n1   2 : b : c\n_4: d") == {"1": "a", "1 2": "b : c", "_4": "d"}
    with pytest.raises(InputError, match=r"ann.txt:2: 'x : y' is not an annotation"):
        lf.parse_annotations("1 : a\nx : y\n", "ann.txt")
    with pytest.raises(InputError, match=r"ann.txt:2: annotation '1 1' given twice"):
        lf.parse_annotations("1 1 : a\n1  1 : b\n", "ann.txt")


def test_annotations_add_only_rule():
    a1 = {"1": "luminometer", "1 1": "T0", "_1": "afterglow"}
    a2 = {"1": "luminometer", "1 1": "T0", "1 2": "V0", "_2": "new one-off correction"}  # added, _1 dropped: fine
    assert lf.check_annotations_add_only([(100, a1), (101, a2), (102, dict(a2))]) == []
    changed = dict(a2, **{"1 1": "T0 (recalibrated)"})
    removed = {k: v for k, v in a2.items() if k != "1 2"}
    problems = lf.check_annotations_add_only([(100, a1), (101, a2), (102, changed), (103, removed)])
    assert problems == [
        "fill 102: annotation '1 1' changed from 'T0' (fill 101) to 'T0 (recalibrated)'",
        "fill 103: annotation '1 1' changed from 'T0 (recalibrated)' (fill 102) to 'T0'",
        "fill 103: annotation '1 2' ('V0' in fill 102) was removed",
    ]


# --- archives -------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".tgz", ".zip"])
def test_archive_round_trip(tmp_path, suffix):
    cols = _random_columns(20)
    p = lf.massi_paths(tmp_path / "src", 6001, "TOY")
    lf.write_massi_lumi(p["lumi"], *cols)
    lf.write_version_files(p["dir"], "1.0", {"1": "a", "1 1": "b", "2": "c", "2 0": "d"})
    deliv = tmp_path / "delivery"
    deliv.mkdir()
    lf.write_fill_archive(p["dir"], deliv / f"6001{suffix}")
    assert lf.list_fills(deliv) == {6001: deliv / f"6001{suffix}"}
    out = lf.extract_fill_archive(deliv / f"6001{suffix}", tmp_path / "x")
    assert out == tmp_path / "x" / "6001"
    np.testing.assert_array_equal(lf.read_massi_lumi(out / "6001_lumi_TOY.txt").lumi, cols[2])
    assert str(lf.read_version_files(out)[0]) == "1.0"


def test_archive_directory_must_match_fill(tmp_path):
    src = tmp_path / "6002"
    src.mkdir()
    (src / "6002_lumi_TOY.txt").write_text("1 1 1 0 0 0\n")
    with tarfile.open(tmp_path / "6003.tgz", "w:gz") as tf:
        tf.add(src, arcname="6002")
    with pytest.raises(InputError, match=r"6003.tgz: member '6002' is not inside directory '6003/'"):
        lf.extract_fill_archive(tmp_path / "6003.tgz", tmp_path / "x")
    assert not (tmp_path / "x" / "6002").exists()
    with zipfile.ZipFile(tmp_path / "6004.zip", "w") as zf:
        zf.writestr("6004/../../evil.txt", "x")
    with pytest.raises(InputError, match="not inside directory '6004/'"):
        lf.extract_fill_archive(tmp_path / "6004.zip", tmp_path / "x")
    (tmp_path / "6005.tgz").write_bytes(b"not a tar file")
    with pytest.raises(InputError, match="6005.tgz: cannot read archive"):
        lf.extract_fill_archive(tmp_path / "6005.tgz", tmp_path / "x")


# --- brilcalc and certification -------------------------------------------------------
def _independent_lumi_small():
    rows = []
    with LUMI_SMALL.open() as fh:
        for r in csv.reader(fh):
            if r and not r[0].startswith("#"):
                rows.append(r)
    return rows


@needs_real
def test_real_brilcalc_totals_against_csv_module():
    df = lf.read_brilcalc_csv(LUMI_SMALL)
    rows = _independent_lumi_small()
    assert len(df) == len(rows) == 998
    assert df.recorded_pb.sum() == pytest.approx(math.fsum(float(r[6]) for r in rows), rel=1e-12)
    assert df.delivered_pb.sum() == pytest.approx(math.fsum(float(r[5]) for r in rows), rel=1e-12)
    assert df.recorded_pb.iloc[:10].sum() == pytest.approx(1.539941814, abs=5e-10)
    assert set(df.beamstatus) == {"STABLE BEAMS"} and set(df.source) == {"HFET"}
    assert sorted(df.run.unique()) == [297050, 297056, 297057]
    assert df.time_s.iloc[0] == 1497646544.0  # 06/16/17 20:55:44 UTC
    assert df.avgpu.iloc[0] == 40.3 and df.line.iloc[0] == 3


@needs_real
def test_real_brilcalc_certification_mask(tmp_path):
    df = lf.read_brilcalc_csv(LUMI_SMALL)
    cert_path = tmp_path / "cert.json"
    cert_path.write_text(json.dumps({"297050": [[12, 20], [30, 31]], "297057": [[1, 1000]], "1": [[1, 5]]}))
    cert = lf.read_certification_json(cert_path)
    mask = lf.certified_mask(df.run, df.ls, cert)
    want = math.fsum(float(r[6]) for r in _independent_lumi_small()
                     if (r[0].startswith("297050:") and (12 <= int(r[1].split(":")[0]) <= 20
                                                         or 30 <= int(r[1].split(":")[0]) <= 31))
                     or r[0].startswith("297057:"))
    assert df.recorded_pb[mask].sum() == pytest.approx(want, rel=1e-12)
    assert mask[:9].all() and not mask[9]  # ls 12..20 certified, ls 21 not
    assert 0 < mask.sum() < len(df)


def test_brilcalc_units_and_bad_lines(tmp_path):
    p = tmp_path / "b.csv"
    head = "#run:fill,ls,time,beamstatus,E(GeV),delivered(/ub),recorded(/ub),avgpu,source\n"
    p.write_text(head + "1:2,3:3,06/16/17 20:55:44,STABLE BEAMS,6500,1500,1000,40,HFET\n1:2,4:4,bad\n")
    with pytest.raises(InputError, match=r"b.csv:3: 3 fields, expected 9"):
        lf.read_brilcalc_csv(p)
    df = lf.read_brilcalc_csv(p, on_bad_line="skip")
    assert df.recorded_pb.tolist() == [1000e-6] and df.delivered_pb.tolist() == [1500e-6]
    assert [b.line for b in df.attrs["bad_lines"]] == [3]
    p.write_text(head.replace("(/ub)", "(/barn-ish)", 1))
    with pytest.raises(InputError,
                       match=r"b.csv:1: column 'delivered\(/barn-ish\)': unknown integrated-luminosity unit"):
        lf.read_brilcalc_csv(p)
    p.write_text("1:2,3:3\n")
    with pytest.raises(InputError, match="b.csv:1: data before the header"):
        lf.read_brilcalc_csv(p)


@pytest.mark.parametrize("content,match", [
    ("[1, 2]", "expected an object"),
    ('{"abc": [[1, 2]]}', "key 'abc' is not a run number"),
    ('{"1": [1, 2]}', r"run 1\[0\]: 1 is not a \[ls_first, ls_last\] pair"),
    ('{"1": [[5, 2]]}', r"run 1\[0\]: \[5, 2\]"),
    ('{"1": [[1, 2, 3]]}', r"run 1\[0\]"),
    ('{"1": {"a": 1}}', "run 1: expected a list"),
    ('{"1": [[1, 2]]', r"cert.json:1: invalid JSON"),
])
def test_bad_certification_json(tmp_path, content, match):
    p = tmp_path / "cert.json"
    p.write_text(content)
    with pytest.raises(InputError, match=match):
        lf.read_certification_json(p)


def test_bad_run_lumi(tmp_path):
    p = tmp_path / "run_lumi.csv"
    p.write_text("exp,run,lumi_pb\n1,2,3\n")
    with pytest.raises(SchemaError, match=r"missing columns \['run_type', 'stat_pb', 'sys_pb'\]"):
        lf.read_run_lumi(p)
    p.write_text("exp,run,run_type,lumi_pb,stat_pb,sys_pb\n1,2,4S,3,0.1,0.1\n1,3,4S,-3,0.1,0.1\n")
    with pytest.raises(InputError, match=r"run_lumi.csv:3: lumi_pb, stat_pb, sys_pb must be finite and >= 0"):
        lf.read_run_lumi(p)
    p.write_text("exp,run,run_type,lumi_pb,stat_pb,sys_pb\n1,2,4S,3,0.1,0.1\n1,2,4S,3,0.1,0.1\n")
    with pytest.raises(InputError, match=r"run_lumi.csv:3: run 1:2 already given on line 2"):
        lf.read_run_lumi(p)
    p.write_text("exp,run,run_type,lumi_pb,stat_pb,sys_pb\n1,2,4S,three,0.1,0.1\n")
    with pytest.raises(InputError, match=r"run_lumi.csv:2: could not convert"):
        lf.read_run_lumi(p)


@pytest.mark.parametrize("variant", ["plain", "header", "tabs", "double_space", "trailing_space", "crlf", "blank_lines",
                                     "leading_space"])
def test_whitespace_variants_read_the_same(tmp_path, variant):
    """The fast path (single spaces) and the general path give the same numbers and lines."""
    rows = [f"{1000 + 60 * i} 1 {0.1 * i!r} 0.5 2 0.25" for i in range(6)]
    lines = list(rows)
    first_line = 1
    if variant == "header":
        lines = ["# a header", "# second"] + lines
        first_line = 3
    elif variant == "tabs":
        lines = [r.replace(" ", "\t") for r in lines]
    elif variant == "double_space":
        lines = [r.replace(" ", "  ") for r in lines]
    elif variant == "trailing_space":
        lines = [r + " " for r in lines]
    elif variant == "leading_space":
        lines = ["  " + r for r in lines]
    sep = "\r\n" if variant == "crlf" else "\n"
    text = sep.join(lines) + sep
    if variant == "blank_lines":
        text = "\n" + "\n\n".join(lines) + "\n"
    path = tmp_path / "3_lumi_TOY.txt"
    path.write_bytes(text.encode())
    m = lf.read_massi_lumi(path)
    np.testing.assert_array_equal(m.time_s, [1000 + 60 * i for i in range(6)])
    np.testing.assert_array_equal(m.lumi, [0.1 * i for i in range(6)])
    want_lines = [2 + 2 * i for i in range(6)] if variant == "blank_lines" else list(range(first_line, first_line + 6))
    np.testing.assert_array_equal(m.line, want_lines)


@pytest.mark.parametrize("bad,reason", [
    ("1300 1 5 0.1 1", "missing columns"), ("1300 1 5 0.1 1 0.01 7", "extra columns"),
    ("1300 1 5 0.1 1 abc", "not a finite number"), ("1300 1 5 inf 1 0", "not a finite"),
])
def test_bad_line_without_comments(tmp_path, bad, reason):
    lines = [f"{1000 + 60 * i} 1 5 0.1 1 0.01" for i in range(4)]
    lines.insert(2, bad)
    path = tmp_path / "3_lumi_TOY.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=rf"3_lumi_TOY.txt:3: {reason}"):
        lf.read_massi_lumi(path)
    m = lf.read_massi_lumi(path, on_bad_line="skip")
    np.testing.assert_array_equal(m.line, [1, 2, 4, 5])
    assert [b.line for b in m.bad_lines] == [3]
