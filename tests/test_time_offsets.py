"""T0 fits recover injected offsets with honest errors; accumulation handles bad input."""

from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pytest
import uproot

from dpnb.calibration.accumulate import accumulate_run, merge
from dpnb.calibration.payloads import T0_MASKED, T0_NOT_ENOUGH_DATA, T0_OK, validate_payload
from dpnb.calibration.time_offsets import (
    METHOD_FALLBACK, METHOD_FIT, enough_data, fit_channel_iminuit, fit_time_offsets, pulls,
)
from dpnb.detector import DRIFT_CORE_FRACTION, DRIFT_PEAK_NS, DRIFT_SIGMA_NS, DRIFT_TAIL_NS, load_geometry
from dpnb.errors import InputError, SchemaError
from dpnb.io.events import run_file
from dpnb.kernels.hist import fill_channel_hist


def _simulate_hits(t0, hits_per_channel, noise_per_channel, seed):
    """Hits following the detector model of dpnb.detector (independent of dpnb.simulate)."""
    rng = np.random.default_rng(seed)
    n_ch = t0.size
    n = rng.poisson(hits_per_channel, n_ch)
    ch = np.repeat(np.arange(n_ch), n)
    core = rng.random(ch.size) < DRIFT_CORE_FRACTION
    drift = np.where(core, rng.normal(0.0, DRIFT_SIGMA_NS, ch.size), rng.uniform(*DRIFT_TAIL_NS, ch.size))
    t = t0[ch] + DRIFT_PEAK_NS + drift
    n_noise = int(noise_per_channel * n_ch)
    ch = np.concatenate([ch, rng.integers(0, n_ch, n_noise)])
    t = np.concatenate([t, rng.uniform(0.0, 400.0, n_noise)])
    return ch.astype(np.int32), t.astype(np.float32)


@pytest.fixture(scope="module")
def synthetic():
    rng = np.random.default_rng(11)
    t0 = rng.normal(0.0, 3.0, 600)
    ch, t = _simulate_hits(t0, 150, 10, seed=12)
    return t0, fill_channel_hist(ch, t, t0.size, 200, 0.0, 400.0, 2)


def test_pulls_have_unit_width_on_synthetic_data(synthetic):
    t0, h = synthetic
    res = fit_time_offsets(h, 0.0, 400.0, min_hits=30)
    assert res.n_calibrated == t0.size
    assert res.fit_converged_fraction >= 0.99
    p = pulls(res, t0)
    assert abs(p.mean()) < 0.1 and 0.9 < p.std(ddof=1) < 1.1
    # the error is what statistics allows: sigma / sqrt(core hits) within 20 %
    expect = DRIFT_SIGMA_NS / np.sqrt(150 * DRIFT_CORE_FRACTION)
    assert 0.8 * expect < np.median(res.t0_err_ns) < 1.2 * expect
    clean = validate_payload("ChannelT0", res.payload())
    assert np.all(clean["status"] == T0_OK)


def test_fast_fit_agrees_with_iminuit(synthetic):
    t0, h = synthetic
    res = fit_time_offsets(h, 0.0, 400.0)
    for c in (0, 17, 333):
        lo_bin = int(round(res.window_first_edge_ns[c] / res.bin_width_ns))
        counts = h[c, lo_bin:lo_bin + res.window_bins]
        vals, errs, m = fit_channel_iminuit(counts, res.window_first_edge_ns[c], res.bin_width_ns)
        assert m.valid
        # same minimum: every parameter within 2 % of its uncertainty
        assert np.all(np.abs(vals - res.params[c]) < 0.02 * errs)
        np.testing.assert_allclose(errs[1], res.errors[c, 1], rtol=0.05)


def test_status_masked_not_enough_data_and_fallback(synthetic):
    t0, h = synthetic
    h = h.copy()
    h[5] = 0
    h[6] = 0
    h[6, 50] = 10  # 10 hits: not enough
    h[7] = 0
    h[7, 49:52] = [40, 200, 40]  # a spike far narrower than the drift peak: the fit width check fails
    masked = np.zeros(t0.size, dtype=bool)
    masked[8] = True
    res = fit_time_offsets(h, 0.0, 400.0, masked=masked, min_hits=30)
    assert res.status[5] == T0_NOT_ENOUGH_DATA and res.status[6] == T0_NOT_ENOUGH_DATA
    assert res.status[8] == T0_MASKED and res.t0_ns[8] == 0.0 and np.isnan(res.t0_err_ns[8])
    assert res.status[7] == T0_OK and res.method[7] == METHOD_FALLBACK
    assert abs(res.t0_ns[7] - (101.0 - DRIFT_PEAK_NS)) < 0.1  # spike centred on bin 50: 100-102 ns
    assert res.method[0] == METHOD_FIT


def test_enough_data_criterion(synthetic):
    _, h = synthetic
    assert enough_data(h, min_hits=30)
    assert not enough_data(h // 10, min_hits=30)


# --- accumulation from ROOT files -------------------------------------------------
def _write(path, channels, times, with_time=True):
    counts = np.array([len(c) for c in channels], dtype=np.int64)
    fields = {"channel": ak.unflatten(np.concatenate(channels).astype(np.int32), counts)}
    if with_time:
        fields["time"] = ak.unflatten(np.concatenate(times).astype(np.float32), counts)
    data = {"event": np.arange(len(channels), dtype=np.int64), "hit": ak.zip(fields)}
    with uproot.recreate(path) as f:
        tree = f.mktree("events", {k: (v.type.content if isinstance(v, ak.Array) else v.dtype) for k, v in data.items()})
        tree.extend(data)
    return path


def _events(rng, n_events, n_ch):
    chans, times = [], []
    for _ in range(n_events):
        k = rng.integers(0, 6)
        chans.append(rng.integers(0, n_ch, k).astype(np.int32))
        times.append(rng.uniform(0, 420, k).astype(np.float32))
    return chans, times


def test_accumulate_matches_direct_fill_and_merge_is_exact(tmp_path):
    rng = np.random.default_rng(1)
    files = []
    for r in range(3):
        c, t = _events(rng, 300, 40)
        files.append((_write(tmp_path / f"r{r}.root", c, t), np.concatenate(c), np.concatenate(t)))
    parts = [accumulate_run(p, 40, run=(1, i), step_size=70, nthreads=2) for i, (p, _, _) in enumerate(files)]
    total = merge(parts)
    ch = np.concatenate([f[1] for f in files])
    t = np.concatenate([f[2] for f in files])
    np.testing.assert_array_equal(total.time_hist, fill_channel_hist(ch, t, 40, 200, 0.0, 400.0, 1))
    np.testing.assert_array_equal(total.occupancy, np.bincount(ch, minlength=40))
    assert total.n_events == 900 and total.n_hits == ch.size
    assert total.n_out_of_range_time == np.count_nonzero(t >= 400.0)
    assert total.runs == ((1, 0), (1, 1), (1, 2))
    # merging in another order gives the same numbers
    np.testing.assert_array_equal(merge(parts[::-1]).time_hist, total.time_hist)


def test_channel_out_of_range_names_file_count_and_range(tmp_path):
    path = _write(tmp_path / "bad.root", [np.array([1, 2, 70], np.int32), np.array([99], np.int32)],
                  [np.array([1, 2, 3], np.float32), np.array([4], np.float32)])
    with pytest.raises(InputError) as exc:
        accumulate_run(path, 64)
    msg = str(exc.value)
    assert "bad.root" in msg and "hit_channel" in msg and "2 hit(s)" in msg and "[0, 64)" in msg and "1..99" in msg


def test_nan_times_dropped_or_refused(tmp_path):
    path = _write(tmp_path / "nan.root", [np.array([1, 2, 3], np.int32)],
                  [np.array([10.0, np.nan, 30.0], np.float32)])
    part = accumulate_run(path, 8, on_nan="drop")
    assert part.n_nan_dropped == 1 and part.n_hits == 2 and part.time_hist.sum() == 2
    with pytest.raises(InputError, match=r"nan.root: branch 'hit_time'.*1 NaN"):
        accumulate_run(path, 8, on_nan="fail")


def test_missing_branch_lists_existing(tmp_path):
    path = _write(tmp_path / "nohittime.root", [np.array([1], np.int32)], [np.array([1.0], np.float32)],
                  with_time=False)
    with pytest.raises(SchemaError, match=r"no branch 'hit_time'.*branches that exist.*hit_channel"):
        accumulate_run(path, 8)


def test_run_without_hits_gives_empty_partial(tmp_path):
    path = _write(tmp_path / "empty.root", [np.array([], np.int32)] * 5, [np.array([], np.float32)] * 5)
    part = accumulate_run(path, 8, run=(1, 9))
    assert part.n_events == 5 and part.n_hits == 0 and part.occupancy.sum() == 0
    assert not enough_data(part.time_hist)


# --- the tiny simulated dataset ----------------------------------------------------
def test_tiny_dataset_t0_pulls(tiny_dataset):
    from dpnb.calibration.masking import find_bad_channels

    geo = load_geometry(tiny_dataset)
    truth = json.loads((tiny_dataset / "truth.json").read_text())
    parts = [accumulate_run(run_file(tiny_dataset / "raw", 1, r), geo.n_channels, run=(1, r), nthreads=2)
             for r in range(1, 7)]
    total = merge(parts)
    mask = find_bad_channels(total.occupancy, total.n_events, geo.n_layers, geo.n_wires_per_layer)
    res = fit_time_offsets(total.time_hist, *total.time_range_ns, masked=mask.status != 0)
    assert np.all(res.status[np.asarray(truth["dead_channels"])] == T0_MASKED)
    assert res.fit_converged_fraction >= 0.99
    p = pulls(res, truth["t0_ns"])
    assert p.size >= 0.95 * geo.n_channels
    assert abs(p.mean()) < 0.1 and 0.9 < p.std(ddof=1) < 1.1


# --- the ChannelMask dependency read from the conditions database -------------------
def test_missing_mask_payload_fails_or_skips_naming_runs(tmp_path):
    from dpnb.calibration.time_offsets import mask_from_db, runs_with_dependency
    from dpnb.conditions import ConditionsDB
    from dpnb.errors import ConditionsError
    from dpnb.runs import IOV, RunId

    db = ConditionsDB(tmp_path / "c.sqlite")
    db.create_tag("gt")
    status = np.zeros(16, dtype=np.int8)
    status[[3, 7]] = [1, 2]
    db.add_payload("gt", "ChannelMask", {"status": status, "occupancy": np.ones(16)}, IOV(1, 1, 1, 4), {"step": "t"})
    status2 = np.zeros(16, dtype=np.int8)
    status2[9] = 1
    db.add_payload("gt", "ChannelMask", {"status": status2, "occupancy": np.ones(16)}, IOV(1, 5, 1, 5), {"step": "t"})
    runs = [RunId(1, r) for r in range(1, 8)]
    with pytest.raises(ConditionsError, match=r"'ChannelMask' is missing for 2 of 7 run\(s\).*1:6, 1:7"):
        runs_with_dependency(db, "ChannelMask", runs, ["gt"], "fail")
    ok, skipped = runs_with_dependency(db, "ChannelMask", runs, ["gt"], "skip")
    assert ok == runs[:5] and sorted(skipped) == [RunId(1, 6), RunId(1, 7)]
    masked, revs = mask_from_db(db, ok, ["gt"], 16)
    assert np.flatnonzero(masked).tolist() == [3, 7, 9] and len(revs) == 2
    masked, _ = mask_from_db(db, runs[:2], ["gt"], 16)
    assert np.flatnonzero(masked).tolist() == [3, 7]
    with pytest.raises(InputError, match="has 16 channels; expected 32"):
        mask_from_db(db, runs[:1], ["gt"], 32)


def test_aligned_peak_shift_is_zero_for_true_t0_and_sees_a_drift(synthetic):
    from dpnb.calibration.time_offsets import aligned_peak_shift

    t0, h = synthetic
    res = fit_time_offsets(h, 0.0, 400.0)
    s, e, n = aligned_peak_shift(h, res.t0_ns, res.status == T0_OK, 0.0, 400.0)
    assert abs(s / e) < 3 and e < 0.05 and n > 50_000
    # the same hits 2 ns later: the residual shift sees it
    late = np.roll(h, 1, axis=1)
    s2, e2, _ = aligned_peak_shift(late, res.t0_ns, res.status == T0_OK, 0.0, 400.0)
    assert abs(s2 - s - 2.0) < 4 * e2


# --- both notebooks under papermill on the tiny dataset -----------------------------
@pytest.mark.slow
def test_notebooks_on_tiny_data(tiny_dataset, tmp_path, monkeypatch):
    pm = pytest.importorskip("papermill")
    from pathlib import Path

    bucket = tmp_path / "tiny.yaml"
    bucket.write_text(f"label: tiny\nruns: ['1:1-7']\ndata:\n  root: {tiny_dataset}\n"
                      f"conditions:\n  db: {tmp_path / 'cond.sqlite'}\nreports_dir: {tmp_path / 'reports'}\n")
    monkeypatch.setenv("DPNB_BUCKET_FILE", str(bucket))
    monkeypatch.setenv("MPLBACKEND", "agg")
    nbdir = Path(__file__).resolve().parents[1] / "notebooks" / "calibration"
    results = {}
    for name, nb in (("mask", "01_channel_masking.ipynb"), ("t0", "02_time_offsets.ipynb")):
        out = tmp_path / name
        pm.execute_notebook(str(nbdir / nb), str(tmp_path / f"{name}.ipynb"), kernel_name="python3",
                            progress_bar=False, parameters={"output_dir": str(out), "interactive": False})
        results[name] = json.loads((out / "results.json").read_text())
    truth = json.loads((tiny_dataset / "truth.json").read_text())
    m = {k: v["value"] for k, v in results["mask"]["values"].items()}
    assert m["n_true_hot_found"] == m["n_true_hot"] == len(truth["hot_channels"])
    assert m["n_true_dead_found"] == m["n_true_dead"] == len(truth["dead_channels"])
    assert m["false_positive_fraction"] < 0.001 and m["masked_fraction"] < 0.05
    assert m["n_runs"] == 6 and results["mask"]["status"] == "pass"
    t = {k: v["value"] for k, v in results["t0"]["values"].items()}
    assert t["payload_ChannelMask_revisions_used"] == [m["payload_ChannelMask_revision"]]
    assert t["n_masked_channels"] == m["n_hot"] + m["n_dead"]
    assert t["fit_converged_fraction"] >= 0.99
    assert abs(t["pull_mean"]) < 0.1 and 0.9 <= t["pull_width"] <= 1.1
    assert t["n_calibrated"] == t["n_pulls"] >= 0.95 * (truth["n_channels"] - t["n_masked_channels"])
    assert results["t0"]["status"] == "pass"
    # both notebooks record the runs they used (read by the bucket summary's consistency check)
    used = [(r["exp"], r["run"]) for r in results["mask"]["tables"]["runs_used"]]
    assert len(used) == m["n_runs"] == 6 and used == sorted(used)
    assert [(r["exp"], r["run"]) for r in results["t0"]["tables"]["runs_used"]] == used
    assert sum(r["events"] for r in results["mask"]["tables"]["runs_used"]) == m["n_events"]

    # a re-run once the tag is VALIDATED: identical payloads are a no-op, the numbers are the same
    from dpnb.conditions import ConditionsDB
    from dpnb.runs import RunId

    db = ConditionsDB(tmp_path / "cond.sqlite")
    (tag,) = [t.name for t in db.list_tags()]
    assert db.advance(tag, "VALIDATED", [RunId(*r) for r in used], names=["ChannelMask", "ChannelT0"]) == "VALIDATED"
    n_payloads = len(db.payloads(tag, with_data=False))
    for name, nb in (("mask", "01_channel_masking.ipynb"), ("t0", "02_time_offsets.ipynb")):
        out = tmp_path / f"{name}-again"
        pm.execute_notebook(str(nbdir / nb), str(tmp_path / f"{name}-again.ipynb"), kernel_name="python3",
                            progress_bar=False, parameters={"output_dir": str(out), "interactive": False})
        again = json.loads((out / "results.json").read_text())
        assert again["values"] == results[name]["values"] and again["tables"] == results[name]["tables"], name
    assert db.state(tag) == "VALIDATED" and len(db.payloads(tag, with_data=False)) == n_payloads
    # a different mask is refused by the database, naming the tag and its state; the tag is unchanged
    with pytest.raises(pm.PapermillExecutionError, match=r"TagStateError.*is VALIDATED, not OPEN: refusing to add"):
        pm.execute_notebook(str(nbdir / "01_channel_masking.ipynb"), str(tmp_path / "mask-other.ipynb"),
                            kernel_name="python3", progress_bar=False,
                            parameters={"output_dir": str(tmp_path / "mask-other"), "interactive": False,
                                        "dead_factor": 0.95, "p_value": 0.5})
    assert len(db.payloads(tag, with_data=False)) == n_payloads
