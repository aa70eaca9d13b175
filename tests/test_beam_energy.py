"""Beam energy: mass-peak fits, change-point scan (step and no step), IOVs, tiny data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dpnb.calibration.beam_energy import energy_iovs, fit_mass_peak, run_group, scan_change_point
from dpnb.calibration.dedx import DIMUON_BRANCHES, DimuonSelection, select_dimuons
from dpnb.calibration.timeline import pull_summary
from dpnb.errors import InputError
from dpnb.io.events import iterate_chunks, run_file
from dpnb.runs import RunId


def _masses(rng, ecm, n, sigma=0.03, f_isr=0.15, tau_frac=0.02):
    e = np.full(n, ecm)
    isr = rng.uniform(size=n) < f_isr
    e[isr] *= 1 - np.minimum(rng.exponential(tau_frac, isr.sum()), 0.5)
    return e * (1 + sigma / ecm * rng.standard_normal(n))


def test_mass_peak_unbiased_despite_isr_tail():
    rng = np.random.default_rng(41)
    truth = rng.uniform(10.50, 10.62, 25)
    fits = [fit_mass_peak(_masses(rng, t, 600)) for t in truth]
    assert all(f.status == "OK" for f in fits)
    ps = pull_summary([f.mu for f in fits], [f.mu_err for f in fits], truth)
    assert ps["max_abs"] < 3.5 and 0.7 < ps["width"] < 1.3 and abs(ps["mean"]) < 0.5
    # a plain mean would be pulled down by the ISR tail by many sigma
    assert np.mean([np.mean(_masses(rng, 10.58, 600)) for _ in range(5)]) < 10.58 - 0.02
    assert np.median([f.sigma for f in fits]) == pytest.approx(0.03, rel=0.1)
    assert fit_mass_peak(_masses(rng, 10.58, 10)).status == "NOT_ENOUGH_DATA"


def _demo_like(step_mev, rng, err_gev=0.0015):
    types = ["4S"] * 40
    for r in (8, 9, 27, 28, 29):
        types[r - 1] = "continuum"
    for r in (17, 35):
        types[r - 1] = "scan"
    runs = [RunId(1, r) for r in range(1, 41)]
    nominal = {"4S": 10.58, "continuum": 10.52}
    truth = []
    for r, t in zip(runs, types):
        base = nominal.get(t, 10.57 if r.run == 17 else 10.60)
        truth.append(base + 0.001 + (step_mev / 1000.0 if r.run >= 21 else 0.0))
    truth = np.array(truth)
    vals = truth + err_gev * rng.standard_normal(truth.size)
    groups = [run_group(t, r) for t, r in zip(types, runs)]
    return runs, vals, np.full(truth.size, err_gev), groups, truth


def test_change_point_found_at_injected_run_with_levels_within_three_sigma():
    rng = np.random.default_rng(42)
    runs, vals, errs, groups, truth = _demo_like(4.0, rng)
    res = scan_change_point(runs, vals, errs, groups, min_delta_chi2=16.0)
    assert res.found and abs(res.step_run.run - 21) <= 1
    assert res.delta_chi2 > 16.0
    lv = res.levels(truth={str(r): t for r, t in zip(runs, truth)})
    main = lv[lv["group"] == "4S"]
    assert list(main["range"]) == ["before step", "after step"]
    assert (np.abs(main["pull"]) < 3).all()
    step, step_err = res.final.step
    assert abs(step - 0.004) < 3 * step_err
    # the scan table has one row per identifiable candidate and its minimum is the chosen run
    assert res.scan.loc[res.scan["chi2"].idxmin(), "run"] == res.step_run.run


def test_no_step_is_not_detected():
    rng = np.random.default_rng(43)
    false_positives = 0
    deltas = []
    for _ in range(40):
        runs, vals, errs, groups, _ = _demo_like(0.0, rng)
        res = scan_change_point(runs, vals, errs, groups, min_delta_chi2=16.0)
        false_positives += res.found
        deltas.append(res.delta_chi2)
    assert false_positives <= 1
    assert 0.5 < np.median(deltas) < 8  # the look-elsewhere max of chi2(1) terms, not 0
    runs, vals, errs, groups, truth = _demo_like(0.0, rng)
    res = scan_change_point(runs, vals, errs, groups, min_delta_chi2=16.0)
    if not res.found:
        lv = res.levels(truth={str(r): t for r, t in zip(runs, truth)})
        assert list(lv[lv["group"] == "4S"]["range"]) == ["all"]


def test_bad_values_are_refused():
    runs = [RunId(1, r) for r in range(1, 4)]
    with pytest.raises(InputError, match="1:2"):
        scan_change_point(runs, [10.58, np.nan, 10.58], [0.001] * 3, ["4S"] * 3)


def test_energy_iovs_cover_all_runs_without_overlap():
    rng = np.random.default_rng(44)
    runs, vals, errs, groups, _ = _demo_like(6.0, rng)
    measured = [i for i in range(40) if i not in (4, 16)]  # run 5 (4S) and scan run 17 unmeasured
    res = scan_change_point([runs[i] for i in measured], vals[measured], errs[measured],
                            [groups[i] for i in measured])
    items = energy_iovs(runs, dict(zip(runs, groups)), res)
    covered = [r for _, rs, _ in items for r in rs]
    assert covered == runs
    for (a, _, _), (b, _, _) in zip(items, items[1:]):
        assert not a.overlaps(b)
    by_run = {r: d for _, rs, d in items for r in rs}
    assert by_run[runs[4]] == by_run[runs[3]]  # unmeasured 4S run takes the 4S level
    assert by_run[runs[16]] == by_run[runs[15]]  # unmeasured scan run joins the previous IOV
    assert by_run[runs[25]]["ecm_gev"] - by_run[runs[10]]["ecm_gev"] == pytest.approx(res.final.step[0])
    assert len(items) < 40


def test_tiny_dataset_levels_within_three_sigma(tiny_dataset):
    truth = json.loads((tiny_dataset / "truth.json").read_text())
    runs = [RunId(1, r) for r in range(1, 7)]
    import pandas as pd

    reg = pd.read_csv(tiny_dataset / "runs.csv")
    rtype = {RunId(int(e), int(r)): t for e, r, t in zip(reg["exp"], reg["run"], reg["run_type"])}
    sel = DimuonSelection()
    vals, errs = [], []
    for r in runs:
        ms = []
        for ch in iterate_chunks([run_file(tiny_dataset / "raw", 1, r.run)], DIMUON_BRANCHES):
            ms += [select_dimuons(ch, sel)[0], select_dimuons(ch, sel.bhabha())[0]]
        f = fit_mass_peak(np.concatenate(ms))
        assert f.status == "OK" and f.n > 100
        vals.append(f.mu)
        errs.append(f.mu_err)
    ps = pull_summary(vals, errs, [truth["ecm_gev"][str(r)] for r in runs])
    assert ps["max_abs"] < 3.0
    res = scan_change_point(runs, vals, errs, [run_group(rtype[r], r) for r in runs], min_delta_chi2=16.0)
    lv = res.levels(truth=truth["ecm_gev"])
    assert (np.abs(lv["pull"]) < 3).all()
    if res.found:  # the tiny step (~5 MeV) is below the threshold's reach with ~200 pairs per run
        assert abs(res.step_run.run - int(truth["ecm_step_run"].split(":")[1])) <= 1


def _db_with_all_payloads(path, runs, tag="gt"):
    from dpnb.conditions import ConditionsDB
    from dpnb.runs import IOV

    db = ConditionsDB(path)
    db.create_tag(tag)
    iov = IOV(runs[0].exp, runs[0].run, runs[-1].exp, runs[-1].run)
    n = 4
    data = {
        "ChannelMask": {"status": np.zeros(n, np.int8), "occupancy": np.ones(n)},
        "ChannelT0": {"t0_ns": np.zeros(n), "t0_err_ns": np.ones(n), "status": np.zeros(n, np.int8)},
        "ModuleAlignment": {"dx_um": np.zeros(n), "dy_um": np.zeros(n), "dx_err_um": np.ones(n),
                            "dy_err_um": np.ones(n), "iterations": 3},
        "DedxGain": {"gain": 1.0, "gain_err": 0.01},
        "BeamEnergy": {"ecm_gev": 10.58, "ecm_err_gev": 0.001},
    }
    for name, d in data.items():
        db.add_payload(tag, name, d, iov, {"step": "test"})
    return db


def test_global_tag_validated_only_with_coverage_and_passing_gates(tmp_path):
    from dpnb.calibration.beam_energy import validate_global_tag
    from dpnb.calibration.payloads import PAYLOAD_NAMES
    from dpnb.errors import TagStateError
    from dpnb.runs import IOV

    runs = [RunId(1, r) for r in range(1, 5)]
    db = _db_with_all_payloads(tmp_path / "c.sqlite", runs)
    gates = {"calibration_beam_energy": {"coverage_ok": "pass"}, "calibration_alignment": {"converged": "pass"}}
    # BeamSpot is missing: coverage fails and the tag stays OPEN
    cov, failing, state = validate_global_tag(db, "gt", runs, gates, PAYLOAD_NAMES)
    assert not cov.ok and "BeamSpot" in cov.gaps and state == "OPEN" and failing == []
    bs = {k: 0.0 for k in ("x_cm", "y_cm", "z_cm", "size_x_cm", "size_y_cm", "size_z_cm")}
    bs.update(x_err_cm=0.001, y_err_cm=0.001, z_err_cm=0.001)
    for r in runs:
        db.add_payload("gt", "BeamSpot", bs, IOV.single(r), {})
    # a failing gate anywhere blocks the transition
    bad = {**gates, "calibration_t0": {"truth_pull_width": "fail"}}
    cov, failing, state = validate_global_tag(db, "gt", runs, bad, PAYLOAD_NAMES)
    assert cov.ok and failing == ["calibration_t0:truth_pull_width"] and state == "OPEN"
    cov, failing, state = validate_global_tag(db, "gt", runs, gates, PAYLOAD_NAMES)
    assert state == "VALIDATED" == db.state("gt")
    # frozen: an identical payload is a no-op, a different one is refused
    rev = db.add_payload("gt", "BeamSpot", bs, IOV.single(runs[0]), {})
    assert rev == db.get("BeamSpot", runs[0], ["gt"]).revision
    with pytest.raises(TagStateError):
        db.add_payload("gt", "BeamSpot", {**bs, "x_cm": 0.1}, IOV(1, 9, 1, 9), {})


@pytest.mark.slow
def test_notebooks_03_to_05_on_tiny_dataset(tiny_dataset, tmp_path, monkeypatch):
    """Run the three notebooks with papermill on the tiny bucket; assert on their recorded results."""
    import papermill as pm

    from dpnb.conditions import ConditionsDB
    from dpnb.runs import IOV

    work = tmp_path / "w"
    work.mkdir()
    (work / "tiny.yaml").write_text(
        f'label: tiny\nruns: ["1:1-7"]\nrun_types: ["4S", "continuum", "scan"]\n'
        f"data:\n  root: {tiny_dataset}\nconditions:\n  db: {work / 'c.sqlite'}\nreports_dir: {work / 'reports'}\n")
    db = ConditionsDB(work / "c.sqlite")
    db.create_tag("tiny_calibration")
    n = 512  # upstream steps 1-2 are not under test here: their payloads are given
    db.add_payload("tiny_calibration", "ChannelMask", {"status": np.zeros(n, np.int8), "occupancy": np.ones(n)},
                   IOV(1, 1, 1, 6), {})
    db.add_payload("tiny_calibration", "ChannelT0", {"t0_ns": np.zeros(n), "t0_err_ns": np.ones(n),
                                                     "status": np.zeros(n, np.int8)}, IOV(1, 1, 1, 6), {})
    monkeypatch.setenv("DPNB_BUCKET_FILE", str(work / "tiny.yaml"))
    monkeypatch.setenv("MPLBACKEND", "agg")
    repo = Path(__file__).resolve().parents[1]
    results = {}
    for nb in ("03_alignment", "04_beam_spot_dedx", "05_beam_energy"):
        out = work / nb
        pm.execute_notebook(str(repo / "notebooks" / "calibration" / f"{nb}.ipynb"), str(work / f"{nb}.ipynb"),
                            parameters={"output_dir": str(out)}, cwd=str(repo), progress_bar=False)
        results[nb] = json.loads((out / "results.json").read_text())
    a, p, e = (results[k] for k in ("03_alignment", "04_beam_spot_dedx", "05_beam_energy"))
    assert a["gates"]["converged"]["verdict"] == "pass"
    assert a["values"]["pull_max_abs"]["value"] < 3.0 and 0.8 <= a["values"]["pull_width"]["value"] <= 1.2
    assert p["gates"]["truth_beam_spot_max_abs_pull"]["verdict"] == "pass"
    assert p["gates"]["truth_gain_max_abs_pull"]["verdict"] == "pass"
    assert p["values"]["n_iovs_BeamSpot"]["value"] == 6
    assert e["gates"]["coverage_ok"]["verdict"] == "pass"
    assert e["gates"]["truth_level_max_abs_pull"]["verdict"] == "pass"
    # tiny: ~200 pairs per run cannot resolve the ~5 MeV step, so the truth gate fails and the tag stays OPEN
    assert (e["values"]["global_tag_state"]["value"] == "VALIDATED") == (e["values"]["gates_failing"]["value"] == [])
    assert len(db.payloads("tiny_calibration", "BeamSpot")) == 6
