"""Cross-domain consistency gates: each passes on a consistent bucket and fails on a broken one.

The upstream reports are written by hand into a tmp reports tree (results.json plus the
artifacts the real notebooks write), so no notebook runs here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import uproot
import yaml

from dpnb import consistency as C
from dpnb.conditions import ConditionsDB
from dpnb.notebook import NotebookContext
from dpnb.runs import IOV

EVENTS = {1: 3, 2: 4, 3: 5, 4: 6, 5: 7, 6: 8}  # run -> n_events (run 4: DQ bad, run 5: scan)
LUMI = {1: 1.0, 2: 2.0, 3: 0.5, 5: 0.25, 6: 4.0}  # recorded_pb of the bucket's runs
SELECTED = [1, 2, 3, 5, 6]
MC_RUNS = [1, 2, 3, 6]  # MC normalises 4S runs only
STEPS = ("luminosity_summary", "calibration_masking", "calibration_alignment", "calibration_post_tracking",
         "mc_normalization", "skim_validation")


def _write_results(vdir: Path, values=None, tables=None, status="pass"):
    vdir.mkdir(parents=True, exist_ok=True)
    values = {k: {"value": v} for k, v in (values or {}).items()}
    (vdir / "results.json").write_text(json.dumps({"schema": 1, "status": status, "values": values, "gates": {},
                                                   "tables": tables or {}, "notes": []}))


def _csv(path: Path, header: str, rows) -> None:
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))


class Bucket:
    """A consistent bucket; tests break one thing and rebuild the context."""

    def __init__(self, root: Path):
        self.root = root
        data = root / "data"
        (data / "raw" / "e0001").mkdir(parents=True)
        lines = []
        for run, n in EVENTS.items():
            with uproot.recreate(data / "raw" / "e0001" / f"r{run:05d}.root") as f:
                f["events"] = {"x": np.arange(n, dtype=np.int32)}
            lines.append((1, run, "scan" if run == 5 else "4S", 1, 0, 1, True, "bad" if run == 4 else "good", n))
        _csv(data / "runs.csv", "exp,run,run_type,fill,start_time,stop_time,magnet_on,dq_flag,n_events", lines)
        (root / "parameters").mkdir()
        (root / "parameters" / "pipeline.yaml").write_text(yaml.safe_dump({"notebooks": {
            n: {"path": f"notebooks/{n}.ipynb"} for n in (*STEPS, "bucket_summary")}}))
        self.reports = root / "reports"
        self.db = root / "cond.sqlite"
        self.v = {n: self.reports / "b" / n / "v1" for n in STEPS}
        self.write_all()

    def write_all(self):
        v = self.v
        _write_results(v["luminosity_summary"], {"n_runs": 5})
        self.write_lumi(LUMI)
        timeline = [{"exp": 1, "run": r, "quantity": q, "value": 1.0} for r in SELECTED for q in ("a", "b")]
        excluded = [{"exp": 1, "run": 4, "reason": "data-quality flag 'bad'"}]
        total = sum(EVENTS[r] for r in SELECTED)
        _write_results(v["calibration_masking"], {"n_runs": 5, "n_events": total},
                       {"timeline": timeline, "runs_excluded": excluded})
        _write_results(v["calibration_alignment"], {"n_runs": 5, "n_events": total}, {"excluded_runs": excluded})
        _write_results(v["calibration_post_tracking"], {"n_runs": 5, "n_events": total},
                       {"per_run": [{"exp": 1, "run": r, "events": EVENTS[r]} for r in SELECTED],
                        "excluded_runs": excluded})
        mc_lumi = sum(LUMI[r] for r in MC_RUNS)
        _write_results(v["mc_normalization"],
                       {"lumi_requested": mc_lumi, "lumi_source": str(v["luminosity_summary"] / "runs_lumi.csv")},
                       {"runs_excluded": excluded + [{"exp": 1, "run": 5, "reason": "run type 'scan' not in ['4S']"}]})
        self.write_mc_weights({"uubar": mc_lumi, "mumu": mc_lumi})
        _csv(v["mc_normalization"] / "mc_weights_runs.csv", "process,exp,run,lumi_pb",
             [("uubar", 1, r, LUMI[r]) for r in MC_RUNS])
        _write_results(v["skim_validation"], {}, {"skim_statistics": [
            {"sample": "data", "skim": "hadronic", "n_input_events": total},
            {"sample": "data", "skim": "dimuon", "n_input_events": total},
            {"sample": "uubar", "skim": "hadronic", "n_input_events": 100}]})
        self.write_tag(IOV(1, 1, 1, 6))

    def write_lumi(self, lumi: dict):
        _csv(self.v["luminosity_summary"] / "runs_lumi.csv",
             "exp,run,run_type,fill,delivered_pb,recorded_pb,stat_pb,sys_pb",
             [(1, r, "4S", 1, x, "" if x is None else x, 0.01, 0.01) for r, x in sorted(lumi.items())])

    def write_mc_weights(self, per_process: dict):
        _csv(self.v["mc_normalization"] / "mc_weights.csv", "process,sample,sigma_nb,lumi_pb,exp,run_first,run_last",
             [(p, p, 1.0, x, 1, 1, 6) for p, x in per_process.items()])

    def write_tag(self, *iovs):
        self.db.unlink(missing_ok=True)
        with ConditionsDB(self.db) as c:
            c.create_tag("b_calibration")
            for iov in iovs:
                c.add_payload("b_calibration", "DedxGain", {"gain": 1.0, "gain_err": 0.01}, iov, {})

    def results(self, nb) -> dict:
        return json.loads((self.v[nb] / "results.json").read_text())

    def set_results(self, nb, fn):
        doc = self.results(nb)
        fn(doc)
        (self.v[nb] / "results.json").write_text(json.dumps(doc))

    def ctx(self, upstream=None, **options):
        params = {
            "label": "b", "runs": ["1:1-6"], "run_types": ["4S", "continuum", "scan"], "exclude_runs": [],
            "data": {"root": str(self.root / "data"), "raw": str(self.root / "data" / "raw"),
                     "run_registry": str(self.root / "data" / "runs.csv")},
            "conditions": {"db": str(self.db), "global_tag": "b_calibration", "chain": []},
            "reports_dir": str(self.reports),
            "notebooks": {"bucket_summary": dict(C.DEFAULT_OPTIONS, max_failing=0, **options),
                          "mc_normalization": {"lumi_column": "recorded_pb", "run_types": ["4S"]}},
        }
        ups = {n: str(d) for n, d in self.v.items() if d.exists()} if upstream is None else upstream
        return NotebookContext("bucket_summary", params, self.root / "out", ups, True)

    def checks(self, **options) -> dict:
        return {c.name: c for c in C.run_checks(self.ctx(**options), options)}


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    monkeypatch.setenv("DPNB_ROOT", str(tmp_path))
    return Bucket(tmp_path)


def _rows(check):
    return [(r["run"], r["source"], r["issue"]) for r in check.rows]


def test_consistent_bucket_passes_every_gate_and_says_where_run_lists_come_from(bucket):
    checks = bucket.checks()
    assert {n: c.verdict for n, c in checks.items()} == {
        "run_sets": "pass", "mc_luminosity": "pass", "skim_events": "pass", "excluded_runs": "pass"}
    assert all(not c.rows for c in checks.values()), {n: c.rows for n, c in checks.items()}
    how = {s["source"]: s["how"] for s in checks["run_sets"].sources}
    assert how["calibration_masking"] == "recorded: results table 'timeline'"
    assert how["calibration_post_tracking"] == "recorded: results table 'per_run'"
    assert how["calibration_alignment"].startswith("derived: records no run list")
    assert "IOV coverage of payloads DedxGain" in how["global tag b_calibration"]
    assert checks["mc_luminosity"].value == pytest.approx(0.0, abs=1e-12)
    skim_how = {s["source"]: s["how"] for s in checks["skim_events"].sources}
    assert skim_how["event files"] == "entries counted: 27" and "no per-run counts" in skim_how["skim_validation"]
    # record: one gate per check, the differences and sources as tables
    ctx = bucket.ctx()
    assert C.record_checks(ctx, checks.values()) == {n: "pass" for n in checks}
    assert ctx.results.gates["consistency.run_sets"]["value"] == 0
    assert ctx.results.tables["consistency_differences"] == []
    assert len(ctx.results.tables["consistency_sources"]) >= 8


def test_run_sets_fail_on_luminosity_calibration_and_global_tag_differences(bucket):
    lumi = dict(LUMI)
    del lumi[6]
    lumi[4] = 0.3  # the DQ-bad run has luminosity in the table
    bucket.write_lumi(lumi)
    bucket.set_results("calibration_masking", lambda d: d["tables"].__setitem__(
        "timeline", [r for r in d["tables"]["timeline"] if r["run"] != 3]))
    bucket.set_results("calibration_alignment", lambda d: d["values"].__setitem__("n_runs", {"value": 4}))
    bucket.write_tag(IOV(1, 1, 1, 4))
    c = bucket.checks()["run_sets"]
    assert c.verdict == "fail"
    rows = _rows(c)
    assert ("1:4", "luminosity_summary",
            "in the luminosity table but not a bucket run (data-quality flag 'bad')") in rows
    assert ("1:6", "luminosity_summary", "bucket run missing from the luminosity table") in rows
    assert ("1:3", "calibration_masking", "bucket run not used by the calibration step") in rows
    assert ("", "calibration_masking", "records n_runs = 5 but its run table 'timeline' lists 4 runs") in rows
    assert any(s == "calibration_alignment" and "records n_runs = 4 but the bucket has 5 runs" in i
               for _, s, i in rows)
    assert ("1:5", "global tag b_calibration", "no DedxGain payload covers this bucket run") in rows
    assert ("1:6", "global tag b_calibration", "no DedxGain payload covers this bucket run") in rows
    # runs 3, 4, 5, 6 plus alignment's count and masking's n_runs vs its table
    assert c.value == 6


def test_run_sets_fail_on_an_empty_tag_and_warn_without_a_database(bucket):
    bucket.write_tag()
    c = bucket.checks()["run_sets"]
    assert c.verdict == "fail" and _rows(c) == [("", "global tag b_calibration", "the tag holds no payloads")]
    bucket.db.unlink()
    c = bucket.checks()["run_sets"]
    assert c.verdict == "warn" and "conditions database" in c.not_run and "does not exist" in c.not_run


def test_mc_luminosity_fails_when_mc_used_another_luminosity(bucket):
    mc_lumi = sum(LUMI[r] for r in MC_RUNS)
    bucket.set_results("mc_normalization", lambda d: d["values"].__setitem__(
        "lumi_requested", {"value": mc_lumi * 1.01}))
    bucket.write_mc_weights({"uubar": mc_lumi, "mumu": mc_lumi * 0.5})
    c = bucket.checks()["mc_luminosity"]
    assert c.verdict == "fail"
    assert c.value == pytest.approx(0.5)
    issues = [i for _, _, i in _rows(c)]
    assert any(i.startswith("lumi_requested = 7.575 pb^-1 but the luminosity summary gives 7.5 pb^-1") for i in issues)
    assert any(i.startswith("lumi_pb of process 'mumu' (mc_weights.csv) = 3.75 pb^-1") for i in issues)
    assert not any("'uubar'" in i for i in issues)
    # the tolerance is an option: a 1 % difference passes a 2 % tolerance, not the 50 % one
    bucket.write_mc_weights({"uubar": mc_lumi, "mumu": mc_lumi})
    assert bucket.checks(lumi_tolerance=0.02)["mc_luminosity"].verdict == "pass"
    assert bucket.checks()["mc_luminosity"].verdict == "fail"


def test_mc_luminosity_fails_on_runs_without_luminosity_and_another_source(bucket):
    _csv(bucket.v["mc_normalization"] / "mc_weights_runs.csv", "process,exp,run,lumi_pb",
         [("uubar", 1, r, 1.0) for r in (*MC_RUNS, 9)])
    bucket.set_results("mc_normalization", lambda d: d["values"].__setitem__(
        "lumi_source", {"value": "/data/lumi/run_lumi.csv"}))
    c = bucket.checks()["mc_luminosity"]
    assert c.verdict == "fail" and c.value == float("inf")
    rows = _rows(c)
    assert ("1:9", "mc_normalization", "MC requested a run that is not in the luminosity table") in rows
    assert any("normalised with /data/lumi/run_lumi.csv, not the luminosity summary version" in i for _, _, i in rows)
    ctx = bucket.ctx()
    C.record_checks(ctx, [c])
    assert ctx.results.gates["consistency.mc_luminosity"]["verdict"] == "fail"


def test_skim_events_fail_on_skim_file_and_calibration_counts(bucket):
    bucket.set_results("skim_validation", lambda d: d["tables"]["skim_statistics"][1].__setitem__(
        "n_input_events", 26))
    c = bucket.checks()["skim_events"]
    assert c.verdict == "fail" and c.value == 1
    assert _rows(c) == [("", "skim_validation", "skim 'dimuon': 26 input events, but the bucket's runs hold 27 "
                                                "(run registry n_events)")]
    bucket.write_all()
    path = bucket.root / "data" / "raw" / "e0001" / "r00002.root"
    with uproot.recreate(path) as f:
        f["events"] = {"x": np.arange(3, dtype=np.int32)}
    bucket.set_results("calibration_post_tracking", lambda d: d["tables"]["per_run"][0].__setitem__("events", 2))
    c = bucket.checks()["skim_events"]
    assert c.verdict == "fail"
    rows = _rows(c)
    assert ("1:2", "event files", f"{path} holds 3 events, the run registry says 4") in rows
    assert ("1:1", "calibration_post_tracking", "processed 2 events of this run, the registry says 3") in rows
    assert bucket.checks(count_file_events=False)["skim_events"].value == 1  # only the per-run calibration row


def test_excluded_runs_fail_when_used_elsewhere_or_excluded_inconsistently(bucket):
    # MC's own run types (scan run 5) are a legitimate MC-only exclusion: the consistent bucket passes
    assert bucket.checks()["excluded_runs"].verdict == "pass"
    lumi = {**LUMI, 4: 0.3}
    bucket.write_lumi(lumi)
    bucket.set_results("calibration_alignment", lambda d: d["tables"]["excluded_runs"].append(
        {"exp": 1, "run": 2, "reason": "event file missing: r00002.root"}))
    c = bucket.checks()["excluded_runs"]
    assert c.verdict == "fail" and c.value == 2
    rows = _rows(c)
    assert any(run == "1:4" and src == "luminosity_summary" and i.startswith("used here but excluded by bucket: "
                                                                               "data-quality flag 'bad'")
               for run, src, i in rows)
    assert ("1:2", "calibration_alignment",
            "excluded here (event file missing: r00002.root) but selected by the bucket") in rows
    # a run without luminosity that MC still uses
    bucket.write_all()
    bucket.write_lumi({**LUMI, 3: None})
    c = bucket.checks()["excluded_runs"]
    assert c.verdict == "fail"
    assert any(run == "1:3" and src == "mc_normalization" and "luminosity_summary: no luminosity" in i
               for run, src, i in _rows(c))


def test_missing_or_failed_upstreams_say_not_run_and_warn(bucket):
    ctx = bucket.ctx(upstream={})
    for nb in STEPS:  # nothing on disk either
        (bucket.v[nb] / "results.json").unlink()
    checks = C.run_checks(ctx, {})
    assert all(c.not_run for c in checks), [(c.name, c.not_run) for c in checks]
    assert C.record_checks(ctx, checks) == {c.name: "warn" for c in checks}
    assert ctx.results.gates["consistency.skim_events"]["description"].startswith(
        "not run: skim_validation has no report for bucket 'b'")
    assert ctx.results.status == "warn"

    bucket.write_all()
    _write_results(bucket.v["mc_normalization"], status="failed")
    c = {c.name: c for c in C.run_checks(bucket.ctx(), {})}
    assert c["mc_luminosity"].verdict == "warn"
    assert "mc_normalization v1 FAILED" in c["mc_luminosity"].not_run
    assert c["run_sets"].verdict == "pass"


def test_no_run_registry_is_not_a_crash(bucket):
    (bucket.root / "data" / "runs.csv").unlink()
    checks = C.run_checks(bucket.ctx(), {})
    assert [c.verdict for c in checks] == ["warn"] * 4
    assert "run registry not found" in checks[0].not_run
