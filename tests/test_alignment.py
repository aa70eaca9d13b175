"""Alignment: shifts recovered from residuals with honest errors, iteration, bad input, dependencies."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dpnb.calibration.alignment import accumulate_residuals, align_modules, check_dependencies, ensure_tag
from dpnb.calibration.timeline import pull_summary
from dpnb.detector import ALIGN_FIT_WEIGHT, RESIDUAL_SIGMA_UM
from dpnb.errors import ConditionsError, InputError, SchemaError
from dpnb.io.events import run_file
from dpnb.kernels.tracks import module_residual_sums_numpy
from dpnb.runs import IOV, RunId


def _synthetic_sums(rng, dx, dy, n_per_module):
    """Residual sums of tracks following the detector model (stored residual = (1-w) shift + noise)."""
    n_mod = dx.size
    module = np.repeat(np.arange(n_mod), n_per_module)
    rx = (1 - ALIGN_FIT_WEIGHT) * dx[module] + rng.normal(0, RESIDUAL_SIGMA_UM, module.size)
    ry = (1 - ALIGN_FIT_WEIGHT) * dy[module] + rng.normal(0, RESIDUAL_SIGMA_UM, module.size)
    return module_residual_sums_numpy(module, rx, ry, n_mod, 1000.0)


def test_shifts_recovered_with_unit_pulls():
    rng = np.random.default_rng(7)
    dx, dy = rng.normal(0, 60, 150), rng.normal(0, 60, 150)
    res = align_modules(_synthetic_sums(rng, dx, dy, 400), tolerance_um=0.01, max_iterations=50)
    assert res.converged and res.status == "OK"
    pulls = pull_summary(np.r_[res.dx_um, res.dy_um], np.r_[res.dx_err_um, res.dy_err_um], np.r_[dx, dy])
    assert pulls["max_abs"] < 4.0
    assert 0.85 < pulls["width"] < 1.15
    assert abs(pulls["mean"]) < 0.2
    # the error is the standard error of the mean residual scaled by 1/(1-w)
    expected = RESIDUAL_SIGMA_UM / np.sqrt(400) / (1 - ALIGN_FIT_WEIGHT)
    assert np.median(res.dx_err_um) == pytest.approx(expected, rel=0.05)


def test_iteration_count_follows_geometric_convergence():
    rng = np.random.default_rng(8)
    dx, dy = rng.normal(0, 60, 6), rng.normal(0, 60, 6)
    sums = _synthetic_sums(rng, dx, dy, 1000)
    res = align_modules(sums, tolerance_um=0.1, max_iterations=30)
    raw = np.abs(np.r_[sums[:, 1], sums[:, 3]] / np.r_[sums[:, 0], sums[:, 0]]).max()
    # the change in iteration k is w**(k-1) * (largest raw mean residual)
    expected = next(k for k in range(1, 100) if ALIGN_FIT_WEIGHT ** (k - 1) * raw < 0.1)
    assert res.iterations == expected
    np.testing.assert_allclose(res.max_change_um, raw * ALIGN_FIT_WEIGHT ** np.arange(expected), rtol=1e-9)
    assert res.max_change_um[-1] < 0.1 <= res.max_change_um[-2]


def test_iteration_limit_gives_iterate_status():
    rng = np.random.default_rng(9)
    sums = _synthetic_sums(rng, rng.normal(0, 60, 4), rng.normal(0, 60, 4), 500)
    res = align_modules(sums, tolerance_um=1e-6, max_iterations=3)
    assert res.iterations == 3 and not res.converged and res.status == "ITERATE"
    # after 3 iterations the correction is (1 - w**3) of the converged value
    full = align_modules(sums, tolerance_um=1e-9, max_iterations=100)
    np.testing.assert_allclose(res.dx_um, full.dx_um * (1 - ALIGN_FIT_WEIGHT**3), rtol=1e-6)


def test_module_without_tracks_is_not_enough_data():
    rng = np.random.default_rng(10)
    sums = _synthetic_sums(rng, np.array([10.0, -20.0, 30.0]), np.zeros(3), 300)
    sums[1] = 0.0
    res = align_modules(sums, min_tracks=50)
    assert res.status == "NOT_ENOUGH_DATA"
    assert res.dx_um[1] == 0.0 and np.isnan(res.dx_err_um[1])
    assert np.isfinite(res.dx_err_um[[0, 2]]).all()
    assert abs(res.dx_um[2] - 30.0) < 5 * res.dx_err_um[2]


def _write_tree(path, **branches):
    import awkward as ak
    import uproot

    with uproot.recreate(path) as f:
        f["events"] = {k: ak.Array(v) for k, v in branches.items()}


def test_bad_module_id_and_missing_branch(tmp_path):
    good = tmp_path / "r1.root"
    _write_tree(good, trk_module=[[0, 5], [1]], trk_res_x=[[1.0, 2.0], [3.0]], trk_res_y=[[0.0, 0.0], [0.0]])
    with pytest.raises(InputError, match=r"r1\.root.*trk_module.*\[5\].*expected 0\.\.3"):
        accumulate_residuals({RunId(1, 1): good}, 4)
    bad = tmp_path / "r2.root"
    _write_tree(bad, trk_module=[[0]], trk_res_x=[[1.0]])
    with pytest.raises(SchemaError, match=r"r2\.root.*trk_res_y.*branches that exist.*trk_res_x"):
        accumulate_residuals({RunId(1, 2): bad}, 4)


def test_dependency_missing_for_some_runs(tmp_path):
    from dpnb.conditions import ConditionsDB

    db = ConditionsDB(tmp_path / "c.sqlite")
    ensure_tag(db, "gt")
    n = 8
    t0 = {"t0_ns": np.zeros(n), "t0_err_ns": np.ones(n), "status": np.zeros(n, np.int8)}
    db.add_payload("gt", "ChannelT0", t0, IOV(1, 1, 1, 3), {"step": "test"})
    runs = [RunId(1, r) for r in range(1, 6)]
    with pytest.raises(ConditionsError, match=r"ChannelT0: 2 run\(s\) 1:4, 1:5"):
        check_dependencies(db, "alignment", runs, ["gt"], "fail")
    use, skipped = check_dependencies(db, "alignment", runs, ["gt"], "skip")
    assert use == runs[:3] and sorted(skipped) == runs[3:]
    assert "ChannelT0" in skipped[RunId(1, 4)]
    with pytest.raises(InputError, match="on_missing_dependency"):
        check_dependencies(db, "alignment", runs, ["gt"], "ignore")


@pytest.fixture(scope="module")
def tiny_alignment(tiny_dataset):
    truth = json.loads((tiny_dataset / "truth.json").read_text())
    runs = [RunId(1, r) for r in range(1, 7)]
    files = {r: run_file(tiny_dataset / "raw", r.exp, r.run) for r in runs}
    sums = accumulate_residuals(files, int(truth["n_modules"]))
    return truth, sums


def test_tiny_dataset_shifts_within_three_sigma(tiny_alignment):
    truth, sums = tiny_alignment
    res = align_modules(list(sums.values()), tolerance_um=0.1, max_iterations=20)
    assert res.converged and res.iterations > 3
    tx, ty = np.array(truth["module_shifts"]["dx_um"]), np.array(truth["module_shifts"]["dy_um"])
    pulls = pull_summary(np.r_[res.dx_um, res.dy_um], np.r_[res.dx_err_um, res.dy_err_um], np.r_[tx, ty])
    assert pulls["n"] == 2 * tx.size
    assert pulls["max_abs"] < 3.0
    # 8 pulls: the sample width is itself uncertain by ~25 %
    assert 0.5 < pulls["width"] < 1.6
    # per-run sums add up to the bucket's sums
    total = np.sum(list(sums.values()), axis=0)
    assert total[:, 0].sum() > 1000 and np.all(total[:, 0] > 100)


def test_timeline_frame_bounds_pulls_and_plot():
    from dpnb.calibration.timeline import plot_timeline, timeline_frame, truth_by_run

    runs = [RunId(1, r) for r in (3, 4, 7)]
    truth = truth_by_run({"1:3": {"g": 1.0}, "1:7": {"g": 1.2}}, runs, "g")
    assert np.isnan(truth[1]) and truth[2] == 1.2
    tl = timeline_frame(runs, "gain", [1.01, 0.5, 1.25], [0.01, 0.02, 0.1], "", 0.8, 1.2, truth=truth)
    assert list(tl["in_bounds"]) == [True, False, False]
    np.testing.assert_allclose(tl["pull"].to_numpy(), [1.0, np.nan, 0.5], equal_nan=True)
    fig = plot_timeline(tl, title="t")
    assert fig.axes[0].get_ylabel() == "gain"
    lo, hi = fig.axes[0].get_ylim()
    assert lo < 0.5 and hi > 1.25  # every point with its error bar is in view
    import matplotlib.pyplot as plt

    plt.close(fig)
    with pytest.raises(ValueError, match="3 runs but 2 values"):
        timeline_frame(runs, "gain", [1.0, 1.0], [0.1, 0.1])
    ps = pull_summary([1.0, 2.0, np.nan], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0])
    assert ps["n"] == 2 and ps["mean"] == 1.5 and ps["max_abs"] == 2.0
