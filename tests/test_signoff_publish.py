"""Publishing a bucket's global tag needs the approval of the latest version of each of its reports."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from dpnb.cli import main
from dpnb.conditions import ConditionsDB
from dpnb.review import append_review
from dpnb.runs import IOV, RunId

REPO = Path(__file__).resolve().parent.parent


def _version(reports: Path, nb: str, v: int, x: float) -> None:
    d = reports / "b" / nb / f"v{v}"
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps({"schema": 1, "status": "pass", "values": {"x": {"value": x}},
                                                "gates": {}, "tables": {}, "notes": []}))
    (d / "manifest.json").write_text(json.dumps({"status": "PASS", "version": v, "parameters": {}, "inputs": []}))


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    """Project with a DAG of two notebooks (lumi, calib), one version each, and a VALIDATED tag."""
    monkeypatch.setenv("DPNB_ROOT", str(tmp_path))
    (tmp_path / "parameters" / "buckets").mkdir(parents=True)
    shutil.copy(REPO / "parameters" / "defaults.yaml", tmp_path / "parameters" / "defaults.yaml")
    (tmp_path / "parameters" / "pipeline.yaml").write_text(yaml.safe_dump({"notebooks": {
        "lumi": {"path": "notebooks/lumi.ipynb"}, "calib": {"path": "notebooks/calib.ipynb"}}}))
    (tmp_path / "data").mkdir()
    reports, db = tmp_path / "reports", tmp_path / "cond.sqlite"
    bfile = tmp_path / "parameters" / "buckets" / "b.yaml"
    bfile.write_text(yaml.safe_dump({"label": "b", "runs": ["1:1-5"], "data": {"root": str(tmp_path / "data")},
                                     "conditions": {"db": str(db), "global_tag": "b_calibration"},
                                     "reports_dir": str(reports)}))
    for nb in ("lumi", "calib"):
        _version(reports, nb, 1, 1.0)
    with ConditionsDB(db) as c:
        c.create_tag("b_calibration")
        c.add_payload("b_calibration", "DedxGain", {"gain": 1.0, "gain_err": 0.01}, IOV(1, 1, 1, 5), {})
        c.set_state("b_calibration", "TESTING", runs=[RunId(1, r) for r in range(1, 6)])
        c.set_state("b_calibration", "VALIDATED")
    return {"file": bfile, "reports": reports, "db": db}


def publish(b, *extra):
    return main(["gt", "--bucket", str(b["file"]), "publish", "b_calibration", "--yes", *extra])


def _state(b):
    with ConditionsDB(b["db"]) as c:
        return c.state("b_calibration"), c.history("b_calibration")[-1]


def test_publish_refused_until_every_latest_version_is_approved(bucket, capsys):
    assert publish(bucket, "--by", "ann") == 2
    err = capsys.readouterr().err
    assert "refusing to publish 'b_calibration'" in err
    assert "calib v1: not reviewed" in err and "lumi v1: not reviewed" in err
    assert _state(bucket)[0] == "VALIDATED"

    append_review(bucket["reports"], "b", "lumi", 1, "approve", "Ann")
    append_review(bucket["reports"], "b", "calib", 1, "reject", "Bob", "offsets drift")
    assert publish(bucket, "--by", "ann") == 2
    err = capsys.readouterr().err
    assert "calib v1: rejected by Bob" in err and "lumi v1" not in err

    append_review(bucket["reports"], "b", "calib", 1, "approve", "Bob")
    # a new version of lumi appears: the approval of v1 is not inherited
    _version(bucket["reports"], "lumi", 2, 2.0)
    assert publish(bucket, "--by", "ann") == 2
    assert "lumi v2: not reviewed" in capsys.readouterr().err
    assert _state(bucket)[0] == "VALIDATED"

    append_review(bucket["reports"], "b", "lumi", 2, "approve", "Ann")
    assert publish(bucket, "--by", "ann") == 0
    state, last = _state(bucket)
    assert state == "PUBLISHED" and last["who"] == "ann" and not last["override"]
    assert last["note"] == "approved: calib v1 by Bob, lumi v2 by Ann"


def test_override_is_explicit_and_recorded(bucket, capsys):
    assert publish(bucket, "--override-approval") == 2
    assert "--override-approval needs --by NAME" in capsys.readouterr().err
    assert _state(bucket)[0] == "VALIDATED"
    assert publish(bucket, "--override-approval", "--by", "Carol") == 0
    assert "published without approvals (override by Carol recorded)" in capsys.readouterr().out
    state, last = _state(bucket)
    assert state == "PUBLISHED" and last["who"] == "Carol" and last["override"]
    assert "not approved: calib v1: not reviewed; lumi v1: not reviewed" in last["note"]
    assert main(["gt", "--db", str(bucket["db"]), "show", "b_calibration"]) == 0
    assert "by Carol [override]" in capsys.readouterr().out


def test_publish_checks_the_right_bucket_and_needs_one(bucket, capsys):
    with ConditionsDB(bucket["db"]) as c:
        c.create_tag("other")
    assert main(["gt", "--bucket", str(bucket["file"]), "publish", "other", "--yes"]) == 2
    assert "is OPEN: only a VALIDATED tag can be published" in capsys.readouterr().err
    with ConditionsDB(bucket["db"]) as c:
        c.add_payload("other", "DedxGain", {"gain": 1.0, "gain_err": 0.01}, IOV(1, 1, 1, 5), {})
        c.set_state("other", "TESTING", runs=[RunId(1, 1)])
        c.set_state("other", "VALIDATED")
    assert main(["gt", "--bucket", str(bucket["file"]), "publish", "other", "--yes"]) == 2
    assert "bucket 'b' has global tag 'b_calibration', not 'other'" in capsys.readouterr().err
    # with --db only, approvals cannot be checked: refused unless overridden
    assert main(["gt", "--db", str(bucket["db"]), "publish", "other", "--yes"]) == 2
    assert "approvals not checked: no --bucket given" in capsys.readouterr().err
    with ConditionsDB(bucket["db"]) as c:
        assert c.state("other") == "VALIDATED"
