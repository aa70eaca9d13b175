"""Acceptance on the demo bucket: the whole DAG through `dpnb run`, then assertions on the
recorded results against the injected truth and against independent computations.

This is the expensive end-to-end test (the demo dataset: 14,336 channels, 40 runs): it
runs once per session and every test below reads its reports.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from dpnb.cli import main

pytestmark = pytest.mark.slow

CALIBRATION = (
    "calibration_masking", "calibration_t0", "calibration_alignment",
    "calibration_post_tracking", "calibration_beam_energy",
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from dpnb.simulate import make_dataset

    base = tmp_path_factory.mktemp("demo")
    data = make_dataset(base / "data", scale="demo", seed=1)
    bucket = yaml.safe_load((Path(__file__).resolve().parents[1] / "parameters/buckets/demo.yaml").read_text())
    bucket["data"] = {"root": str(data)}
    bucket["conditions"] = {"db": str(base / "conditions.sqlite")}
    bucket["cache_dir"] = str(base / "cache")
    bucket_file = base / "demo.yaml"
    bucket_file.write_text(yaml.safe_dump(bucket))
    reports = base / "reports"
    rc = main(["run", str(bucket_file), "--reports-dir", str(reports), "--jobs", "2", "--no-progress"])
    return {"rc": rc, "data": data, "reports": reports, "bucket_file": bucket_file, "db": base / "conditions.sqlite"}


def results(demo, notebook: str, version: int = 1) -> dict:
    return json.loads((demo["reports"] / "demo" / notebook / f"v{version}" / "results.json").read_text())


def value(res: dict, name: str):
    return res["values"][name]["value"]


def test_every_notebook_ran(demo):
    assert demo["rc"] == 0
    for nb in (*CALIBRATION, "luminosity_summary", "mc_normalization", "skim_validation", "bucket_summary"):
        manifest = json.loads((demo["reports"] / "demo" / nb / "v1" / "manifest.json").read_text())
        assert manifest["status"] not in ("FAILED", "SKIPPED"), nb
        assert (demo["reports"] / "demo" / nb / "v1" / "report.html").stat().st_size > 10_000
    assert (demo["reports"] / "index.html").exists()


def test_masks_find_every_injected_channel(demo):
    truth = json.loads((demo["data"] / "truth.json").read_text())
    res = results(demo, "calibration_masking")
    assert value(res, "n_true_hot_found") == len(truth["hot_channels"])
    assert value(res, "n_true_dead_found") == len(truth["dead_channels"])
    assert value(res, "false_positive_fraction") < 0.001


def test_t0_pulls(demo):
    res = results(demo, "calibration_t0")
    assert abs(value(res, "pull_mean")) < 0.1
    assert 0.9 <= value(res, "pull_width") <= 1.1
    assert value(res, "n_pulls") > 0.95 * 14336


@pytest.mark.parametrize(
    ("notebook", "pulls"),
    [
        ("calibration_alignment", [("pull_max_abs", "pull_width")]),
        ("calibration_post_tracking", [("pull_x_max_abs", "pull_x_width"), ("pull_y_max_abs", "pull_y_width"),
                                       ("pull_z_max_abs", "pull_z_width"), ("pull_gain_max_abs", "pull_gain_width")]),
    ],
)
def test_constants_within_three_sigma(demo, notebook, pulls):
    res = results(demo, notebook)
    for max_abs, width in pulls:
        assert value(res, max_abs) < 3.0, max_abs
        assert 0.8 <= value(res, width) <= 1.2, width


def test_beam_energy_step_found_at_injected_run(demo):
    truth = json.loads((demo["data"] / "truth.json").read_text())
    res = results(demo, "calibration_beam_energy")
    assert value(res, "ecm_step_found")
    step_run = value(res, "ecm_step_run")
    true_run = int(truth["ecm_step_run"].split(":")[1])  # read from truth.json, not from the notebook
    assert abs(int(step_run) - true_run) <= 1
    assert int(value(res, "true_step_run")) == true_run
    assert res["gates"]["truth_level_max_abs_pull"]["value"] < 3.0


def test_global_tag_validated_and_covering_the_bucket(demo):
    from dpnb.bucket import select_runs
    from dpnb.conditions import ConditionsDB
    from dpnb.notebook import notebook_context

    ctx = notebook_context("bucket_summary", {"dpnb_resolved": False, "label": "demo",
                                              "data": {"root": str(demo["data"])}})
    runs = select_runs(ctx).selected
    assert len(runs) == 39  # 40 physics runs, run 13 flagged bad
    with ConditionsDB(demo["db"]) as db:
        assert db.state("demo_calibration") == "VALIDATED"
        cov = db.coverage("demo_calibration", runs)
        assert cov.ok, (cov.gaps, cov.overlaps)
        for name in ("ChannelMask", "ChannelT0", "ModuleAlignment", "BeamSpot", "DedxGain", "BeamEnergy"):
            assert db.runs_missing(name, runs, ["demo_calibration"]) == []


def test_luminosity_total_equals_independent_sum(demo):
    res = results(demo, "luminosity_summary")
    table = pd.read_csv(demo["data"] / "lumi" / "run_lumi.csv")
    reg = pd.read_csv(demo["data"] / "runs.csv")
    good = reg[(reg.run_type.isin(["4S", "continuum", "scan"])) & (reg.dq_flag == "good") & (reg.run <= 40)]
    expected = table[table.run.isin(good.run)].lumi_pb.sum()
    runs_table = pd.read_csv(demo["reports"] / "demo" / "luminosity_summary" / "v1" / "runs_lumi.csv")
    assert sorted(runs_table.run) == sorted(good.run)
    assert runs_table.recorded_pb.sum() == pytest.approx(expected, rel=1e-9)
    assert value(res, "recorded_pb") == pytest.approx(expected, rel=1e-9)
    assert value(res, "recorded_fb") == pytest.approx(expected / 1000, rel=1e-9)
    by_type = sum(value(res, f"recorded_pb_{t}") for t in ("4S", "continuum", "scan"))
    assert by_type == pytest.approx(expected, rel=1e-9)


def test_cached_rerun_executes_nothing(demo):
    before = sorted(p.name for p in (demo["reports"] / "demo").glob("*/v*"))
    rc = main(["run", str(demo["bucket_file"]), "--reports-dir", str(demo["reports"]), "--no-progress"])
    assert rc == 0
    after = sorted(p.name for p in (demo["reports"] / "demo").glob("*/v*"))
    assert after == before


def test_forced_rerun_gives_identical_payloads_and_results(demo):
    steps = ["calibration_alignment", "calibration_post_tracking"]
    rc = main(["run", str(demo["bucket_file"]), "--reports-dir", str(demo["reports"]), "--no-progress",
               "--force", "--only", *steps])
    assert rc == 0
    for nb in steps:
        v1 = demo["reports"] / "demo" / nb / "v1" / "results.json"
        v2 = demo["reports"] / "demo" / nb / "v2" / "results.json"
        assert v1.read_bytes() == v2.read_bytes(), nb
    revs = [k for k in results(demo, "calibration_post_tracking")["values"] if k.startswith("payload_")]
    assert revs  # the revisions are part of the byte-identical results


def _good_bucket_runs(demo, run_types=("4S", "continuum", "scan")):
    reg = pd.read_csv(demo["data"] / "runs.csv")
    return reg[reg.run_type.isin(run_types) & (reg.dq_flag == "good") & (reg.run <= 40)]


def test_mc_normalization_counts_match_independent_sums(demo):
    res = results(demo, "mc_normalization")
    # the control distribution's data are the good 4S + continuum runs (scan runs are not in the MC request)
    assert value(res, "control_data_events") == _good_bucket_runs(demo, ("4S", "continuum")).n_events.sum()
    per_process = sum(v["value"] for k, v in res["values"].items() if k.startswith("expected_events."))
    assert value(res, "expected_events_total") == pytest.approx(per_process, rel=1e-12)
    assert res["gates"]["control_chi2_pvalue"]["verdict"] == "pass"
    assert res["gates"]["lumi_from_luminosity_summary"]["verdict"] == "pass"


def test_mc_expectation_at_the_measured_beam_energy(demo):
    # every requested run has a BeamEnergy payload; the expectation is recomputed here with the
    # generator's own sigma(E) (dpnb.simulate.truth) at those E_cm and the per-run luminosity
    from dpnb.conditions import ConditionsDB
    from dpnb.simulate.config import PRESCALES
    from dpnb.simulate.truth import cross_sections_at

    res = results(demo, "mc_normalization")
    assert value(res, "ecm_source") == "conditions"
    assert res["gates"]["ecm_runs_measured"]["verdict"] == "pass"
    runs = pd.read_csv(demo["reports"] / "demo" / "mc_normalization" / "v1" / "mc_weights_runs.csv")
    lumi = runs.drop_duplicates("run").set_index("run")
    req = _good_bucket_runs(demo, ("4S", "continuum"))
    assert set(lumi.index) == set(req.run)
    db = ConditionsDB(demo["db"])
    try:
        ecm = {r: db.get("BeamEnergy", (1, int(r)), ["demo_calibration"]).data["ecm_gev"] for r in req.run}
    finally:
        db.close()
    assert lumi["ecm_gev"].to_dict() == pytest.approx(ecm, rel=1e-15)
    table = {r["run"]: r for r in res["tables"]["ecm_per_run"]}
    assert set(table) == set(req.run)
    for r in req.run:
        nominal = 10.58 if req.set_index("run").loc[r, "run_type"] == "4S" else 10.52
        assert table[r]["ecm_gev"] == ecm[r] and table[r]["nominal_gev"] == nominal
        assert table[r]["shift_mev"] == pytest.approx(1000.0 * (ecm[r] - nominal), abs=1e-9)
    expected = sum(sigma * PRESCALES.get(p, 1.0) * 1000.0 * lumi.loc[r, "lumi_pb"]
                   for r in req.run for p, sigma in cross_sections_at(ecm[r]).items())
    assert value(res, "expected_events_total") == pytest.approx(expected, rel=1e-9)
    # the data agree with the corrected expectation (the nominal one was 2.1 sigma high)
    n_data = value(res, "control_data_events")
    assert abs(n_data - expected) < 1.5 * np.sqrt(expected)
    assert value(res, "expected_events_total_nominal_ecm") - expected > 300


def test_skim_statistics_match_the_files(demo):
    import uproot

    res = results(demo, "skim_validation")
    n_input = _good_bucket_runs(demo).n_events.sum()
    rows = [r for r in res["tables"]["skim_statistics"] if r["sample"] == "data"]
    assert {r["skim"] for r in rows} == {"hadronic", "dimuon", "bhabha", "tau_pair", "gamma_gamma", "low_multiplicity"}
    skims_dir = demo["reports"] / "demo" / "skim_validation" / "v1" / "skims"
    cap = yaml.safe_load((Path(__file__).resolve().parents[1] / "parameters/defaults/skim_validation.yaml")
                         .read_text())["max_output_rows"]
    for r in rows:
        assert r["n_input_events"] == n_input
        assert r["retention"] == pytest.approx(r["n_selected_events"] / n_input, rel=1e-12)
        with uproot.open(skims_dir / f"{r['skim']}_data.root") as f:
            # outputs are capped at max_output_rows; sizes are scaled from the written rows
            assert f["events"].num_entries == r["n_written_rows"] == min(r["n_selected_rows"], cap)
    assert "cpu_ms_per_event" not in json.dumps(res)  # timings live in skim_timings.json
