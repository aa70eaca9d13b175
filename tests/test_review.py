"""Reviewer sign-off log: append-only, tamper-evident, never inherited by new versions."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from dpnb.errors import InputError
from dpnb.review import ReviewLogError, append_review, bucket_approved, latest_review, read_reviews


def _version(reports, bucket, nb, v, payload):
    d = reports / bucket / nb / f"v{v}"
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(payload))
    return d


def test_append_and_read_back(tmp_path):
    _version(tmp_path, "b1", "lumi", 1, {"x": 1})
    t = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.timezone.utc)
    r = append_review(tmp_path, "b1", "lumi", 1, "approve", "Ada <script>", "ok & fine", now=t)
    assert r.time == "2026-11-23T12:00:00+00:00"
    back = read_reviews(tmp_path, "b1")
    assert back == [r]
    assert latest_review(tmp_path, "b1", "lumi", 1).by == "Ada <script>"


def test_new_version_does_not_inherit_approval(tmp_path):
    _version(tmp_path, "b1", "lumi", 1, {"x": 1})
    append_review(tmp_path, "b1", "lumi", 1, "approve", "Ada")
    ok, _ = bucket_approved(tmp_path, "b1", {"lumi": 1})
    assert ok
    _version(tmp_path, "b1", "lumi", 2, {"x": 2})
    ok, missing = bucket_approved(tmp_path, "b1", {"lumi": 2})
    assert not ok and missing == ["lumi v2: not reviewed"]
    append_review(tmp_path, "b1", "lumi", 2, "reject", "Bob", "numbers moved")
    ok, missing = bucket_approved(tmp_path, "b1", {"lumi": 2})
    assert not ok and missing == ["lumi v2: rejected by Bob"]


def test_rewriting_an_earlier_line_is_detected(tmp_path):
    _version(tmp_path, "b1", "lumi", 1, {"x": 1})
    append_review(tmp_path, "b1", "lumi", 1, "reject", "Ada")
    append_review(tmp_path, "b1", "lumi", 1, "approve", "Bob")
    log = tmp_path / "b1" / "reviews.jsonl"
    lines = log.read_text().splitlines()
    first = json.loads(lines[0])
    first["verdict"] = "approve"
    lines[0] = json.dumps(first, sort_keys=True)
    log.write_text("\n".join(lines) + "\n")
    with pytest.raises(ReviewLogError, match="reviews.jsonl:1"):
        read_reviews(tmp_path, "b1")
    # appending to a broken log is refused too: nothing hides the alteration
    with pytest.raises(ReviewLogError):
        append_review(tmp_path, "b1", "lumi", 1, "approve", "Eve")


def test_bad_input(tmp_path):
    _version(tmp_path, "b1", "lumi", 1, {})
    with pytest.raises(InputError, match=r"no report b1/lumi/v7 .*versions that exist: \['v1'\]"):
        append_review(tmp_path, "b1", "lumi", 7, "approve", "Ada")
    with pytest.raises(InputError, match="verdict"):
        append_review(tmp_path, "b1", "lumi", 1, "maybe", "Ada")
    with pytest.raises(InputError, match="reviewer's name"):
        append_review(tmp_path, "b1", "lumi", 1, "approve", " ")
    with pytest.raises(InputError, match="outside"):
        append_review(tmp_path, "../x", "lumi", 1, "approve", "Ada")


# --- through the CLI: append-only, refused when altered, shown in the index and reviews.html ------------------
def _cli(reports, *args):
    from dpnb.cli import main

    return main(["review", *args, "--reports-dir", str(reports)])


def test_cli_appends_never_edits_and_pages_show_the_latest_review_escaped(tmp_path, capsys):
    _version(tmp_path, "b1", "lumi", 1, {"x": 1})
    name, comment = "Ada <script>alert(1)</script>", "<b>ok</b> & fine"
    assert _cli(tmp_path, "b1", "lumi", "v1", "--approve", "--by", name, "--comment", comment) == 0
    log = tmp_path / "b1" / "reviews.jsonl"
    first = log.read_bytes()
    assert _cli(tmp_path, "b1", "lumi", "v1", "--reject", "--by", "Bob", "--comment", "gap in fill 8002") == 0
    assert log.read_bytes().startswith(first) and len(log.read_text().splitlines()) == 2  # appended, not edited
    index = (tmp_path / "index.html").read_text()
    assert "data-review='reject'>rejected by Bob</span>" in index
    assert "href='b1/reviews.html'" in index
    page = (tmp_path / "b1" / "reviews.html").read_text()
    assert "Ada &lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script" not in page
    assert "&lt;b&gt;ok&lt;/b&gt; &amp; fine" in page and "gap in fill 8002" in page
    assert page.index("gap in fill 8002") < page.index("&lt;b&gt;ok")  # newest first
    assert _cli(tmp_path, "b1", "lumi", "v1", "--approve", "--by", name) == 0
    index = (tmp_path / "index.html").read_text()
    assert "approved by Ada &lt;script&gt;alert(1)&lt;/script&gt;" in index and "<script" not in index
    assert len(read_reviews(tmp_path, "b1")) == 3
    capsys.readouterr()

    # a log edited by hand is refused by the CLI and nothing is appended; the pages say so
    lines = log.read_text().splitlines()
    doc = json.loads(lines[1])
    doc["verdict"] = "approve"
    lines[1] = json.dumps(doc, sort_keys=True)
    log.write_text("\n".join(lines) + "\n")
    tampered = log.read_bytes()
    assert _cli(tmp_path, "b1", "lumi", "v1", "--approve", "--by", "Eve") == 2
    assert "reviews.jsonl:2: chain hash does not match" in capsys.readouterr().err
    assert log.read_bytes() == tampered
    from dpnb.reports.index import write_index

    write_index(tmp_path)
    assert "review log altered" in (tmp_path / "index.html").read_text()
    assert "reviews.jsonl:2: chain hash does not match" in (tmp_path / "b1" / "reviews.html").read_text()


def test_cli_review_of_a_missing_version_is_refused(tmp_path, capsys):
    _version(tmp_path, "b1", "lumi", 1, {"x": 1})
    assert _cli(tmp_path, "b1", "lumi", "v3", "--approve", "--by", "Ada") == 2
    assert "no report b1/lumi/v3" in capsys.readouterr().err
    assert not (tmp_path / "b1" / "reviews.jsonl").exists() or not read_reviews(tmp_path, "b1")


def test_index_shows_review_of_latest_version_only(tmp_path):
    from dpnb.reports.index import write_index

    _version(tmp_path, "b1", "lumi", 1, {"x": 1})
    append_review(tmp_path, "b1", "lumi", 1, "approve", "Ada")
    _version(tmp_path, "b1", "lumi", 2, {"x": 2})
    _version(tmp_path, "b1", "calib", 1, {"y": 1})
    write_index(tmp_path)
    index = (tmp_path / "index.html").read_text()
    row = index[index.index("data-notebook='lumi'"):]
    row = row[:row.index("</tr>")]
    assert "data-review='none'>not reviewed</span>" in row
    assert "(v1 was approved by Ada; approvals are not inherited)" in row
    calib = index[index.index("data-notebook='calib'"):]
    assert "not reviewed" in calib[:calib.index("</tr>")] and "inherited" not in calib[:calib.index("</tr>")]
    page = (tmp_path / "b1" / "reviews.html").read_text()
    assert "id='nb-lumi'" in page and "v1 was approved by Ada" in page
