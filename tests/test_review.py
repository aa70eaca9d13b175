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
