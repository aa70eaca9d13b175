"""The toy experiment: schema, determinism, and that the data carries the injected truth.

All checks run on the ``tiny`` scale (a few seconds to generate). Statistical checks
compare what the files contain with ``truth.json`` within a few standard errors.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import uproot

from dpnb import detector as det
from dpnb.errors import InputError, ParameterError
from dpnb.io.lumi_files import (
    check_version_annotated,
    read_massi_lumi,
    read_massi_summary,
    read_run_lumi,
    read_version_files,
)
from dpnb.simulate import SCALES, SimConfig, make_dataset
from dpnb.simulate.kernels import make_hits, make_hits_numpy
from dpnb.simulate.truth import cross_sections_at

TINY = SCALES["tiny"]
# a cheaper configuration for tests that build several datasets
MINI = dataclasses.replace(TINY, name="mini", physics_runs=("4S", "4S"), runs_per_fill=2, run_duration_s=600, ecm_step_run=2,
                           cosmic_events_per_run=50, mc_events=20)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("sim") / "tiny", "tiny", seed=1)


@pytest.fixture(scope="module")
def truth(tiny) -> dict:
    return json.loads((tiny / "truth.json").read_text())


@pytest.fixture(scope="module")
def runs(tiny) -> pd.DataFrame:
    return pd.read_csv(tiny / "runs.csv")


@pytest.fixture(scope="module")
def events(tiny, runs) -> dict[int, dict]:
    """Every raw run as numpy arrays (jagged branches as flat values + counts)."""
    out = {}
    for run in runs.run:
        with uproot.open(tiny / "raw" / "e0001" / f"r{run:05d}.root") as f:
            out[int(run)] = _flat(f["events"])
    return out


def _flat(tree) -> dict:
    arrays = tree.arrays(library="ak")
    out = {}
    for name in tree.keys():
        col = arrays[name]
        if col.ndim == 1:
            out[name] = np.asarray(col)
        else:
            import awkward as ak

            out[name] = np.asarray(ak.flatten(col))
    return out


# --- kernels ----------------------------------------------------------------------------


def _kernel_inputs(seed=3, n_ev=40, n_layers=6, n_wires=16):
    rng = np.random.default_rng(seed)
    ntrk = rng.integers(0, 5, n_ev)
    trk_offsets = np.concatenate([[0], np.cumsum(ntrk)])
    n_trk = int(trk_offsets[-1])
    reach = rng.integers(1, n_layers + 1, n_trk)
    slot_offsets = np.concatenate([[0], np.cumsum(reach)])
    ns = int(slot_offsets[-1])
    nch = n_layers * n_wires
    nnoise = rng.integers(0, 3, n_ev)
    noise_offsets = np.concatenate([[0], np.cumsum(nnoise)])
    nn = int(noise_offsets[-1])
    dead = np.zeros(nch, bool)
    dead[rng.choice(nch, 5, replace=False)] = True
    return (
        trk_offsets, rng.uniform(-4, 4, n_trk), rng.normal(0, 1, n_trk), reach, rng.uniform(10, 60, n_trk), slot_offsets,
        rng.uniform(0, 1, ns), rng.uniform(0, 1, ns), rng.standard_normal(ns), rng.uniform(0, 1, ns),
        rng.standard_normal(ns), rng.normal(0, 3, nch), dead, noise_offsets, rng.integers(0, nch, nn).astype(np.int32),
        rng.uniform(0, 400, nn), rng.integers(1, 20, nn).astype(np.int32),
        n_layers, n_wires, 0.9, det.DRIFT_PEAK_NS, det.DRIFT_SIGMA_NS, det.DRIFT_CORE_FRACTION, *det.DRIFT_TAIL_NS,
    )  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_hit_kernel_matches_numpy_twin(seed):
    args = _kernel_inputs(seed)
    a = make_hits(*args)
    b = make_hits_numpy(*args)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    hit_offsets, channel, time, adc, nhits = a
    # hits of the tracks are on the channels of their layers, none on dead channels
    n_noise = np.diff(args[13])
    assert hit_offsets[-1] == nhits.sum() + n_noise.sum()
    signal = np.ones(len(channel), bool)
    for e in range(len(hit_offsets) - 1):
        signal[hit_offsets[e + 1] - n_noise[e] : hit_offsets[e + 1]] = False
    assert not args[12][channel[signal]].any()
    # the efficiency cut: about 90 % of the slots give a hit (minus dead channels)
    assert 0.75 < nhits.sum() / args[3].sum() <= 0.9 + 4 * np.sqrt(0.09 / args[3].sum())


# --- layout and schema ------------------------------------------------------------------


def test_layout_and_detector_json(tiny, truth):
    geom = json.loads((tiny / "detector.json").read_text())
    assert geom == det.Geometry(TINY.n_layers, TINY.n_wires_per_layer, TINY.n_modules).to_dict()
    assert det.load_geometry(tiny).n_channels == TINY.n_channels == truth["n_channels"] == len(truth["t0_ns"])
    for rel in ("runs.csv", "lumi/run_lumi.csv", "mc/samples.csv", "truth.json"):
        assert (tiny / rel).is_file(), rel
    assert not list(tiny.parent.glob(".tiny.tmp-*")), "temporary directory left behind"


def test_runs_csv(runs, truth):
    assert list(runs.columns) == ["exp", "run", "run_type", "fill", "start_time", "stop_time", "magnet_on", "dq_flag",
                                  "n_events"]
    n_phys = TINY.n_physics_runs
    assert runs.run.tolist() == list(range(1, n_phys + TINY.n_cosmic_runs + 1))
    assert runs.run_type.tolist() == list(TINY.physics_runs) + ["cosmic"] * TINY.n_cosmic_runs
    assert set(runs.run_type) <= set(det.RUN_TYPES) and set(runs.dq_flag) <= {"good", "bad"}
    cosmic = runs.run_type == "cosmic"
    assert runs.magnet_on[~cosmic].all() and not runs.magnet_on[cosmic].any()
    assert (runs.fill[cosmic] == 0).all() and runs.fill[~cosmic].nunique() == 2
    assert (runs.stop_time > runs.start_time).all() and (runs.start_time.iloc[1:].values >= runs.stop_time.iloc[:-1].values).all()
    assert (runs.n_events[cosmic] == TINY.cosmic_events_per_run).all()
    for run, n in zip(runs.run, runs.n_events):
        assert sum(truth["events_per_run_and_process"][f"1:{run}"].values()) == n


EVENT_DTYPES = {"exp": ">i4", "run": ">i4", "event": ">i8", "timestamp": ">f8", "hlt_bits": ">u4", "true_process": ">i4"}
FLOAT_BRANCHES = {"hit_time", "trk_px", "trk_py", "trk_pz", "trk_d0", "trk_z0", "trk_dedx", "trk_res_x", "trk_res_y",
                  "clus_energy", "clus_theta", "clus_phi"}


def _check_schema(path: Path, mc: bool):
    with uproot.open(path) as f:
        tree = f["events"]
        expected = (list(det.EVENT_BRANCHES) + (["weight"] if mc else []) + ["nhit", *det.HIT_BRANCHES]
                    + ["ntrk", *det.TRACK_BRANCHES] + ["nclus", *det.CLUSTER_BRANCHES])
        assert tree.keys() == expected, path
        for name, dt in EVENT_DTYPES.items():
            assert tree[name].interpretation.from_dtype == np.dtype(dt), (path, name)
        for counter, names in (("nhit", det.HIT_BRANCHES), ("ntrk", det.TRACK_BRANCHES), ("nclus", det.CLUSTER_BRANCHES)):
            assert tree[counter].interpretation.from_dtype == np.dtype(">i4")
            counts = tree[counter].array(library="np")
            for name in names:
                jag = tree[name].array()
                want = ">f4" if name in FLOAT_BRANCHES else ">i4"
                assert tree[name].interpretation.content.from_dtype == np.dtype(want), (path, name)
                np.testing.assert_array_equal(np.asarray(__import__("awkward").num(jag, axis=1)), counts)
        return tree.num_entries


def test_raw_schema_and_contents(tiny, runs, events):
    for run, n in zip(runs.run, runs.n_events):
        assert _check_schema(tiny / "raw" / "e0001" / f"r{run:05d}.root", mc=False) == n
        ev = events[int(run)]
        row = runs[runs.run == run].iloc[0]
        assert (ev["exp"] == 1).all() and (ev["run"] == run).all()
        np.testing.assert_array_equal(ev["event"], np.arange(1, n + 1))
        assert (np.diff(ev["timestamp"]) >= 0).all()
        assert ev["timestamp"].min() >= row.start_time and ev["timestamp"].max() < row.stop_time
        assert ((ev["hit_channel"] >= 0) & (ev["hit_channel"] < TINY.n_channels)).all()
        assert ((ev["hit_time"] >= 0) & (ev["hit_time"] < det.TDC_RANGE_NS)).all()
        assert ((ev["trk_module"] >= 0) & (ev["trk_module"] < TINY.n_modules)).all()
        assert (ev["trk_nhits"] <= TINY.n_layers).all()
        # hits belong to tracks (nhits per track) plus noise: a few per cent more hits than track hits
        extra = (len(ev["hit_channel"]) - ev["trk_nhits"].sum()) / max(ev["trk_nhits"].sum(), 1)
        assert 0.0 < extra < 0.6, (run, extra)
        if row.run_type == "cosmic":
            assert (ev["true_process"] == det.PROCESS_IDS["cosmic"]).all() and (ev["hlt_bits"] == 0).all()
            assert (ev["ntrk"] == 2).all() and np.abs(ev["trk_d0"]).max() > 5.0


def test_mc_samples(tiny):
    samples = pd.read_csv(tiny / "mc" / "samples.csv")
    assert list(samples.columns) == ["sample", "process", "exp", "run_first", "run_last", "n_generated"]
    assert set(samples.process) <= set(det.PROCESS_IDS)
    assert {"mixed", "charged", "uubar", "ddbar", "ssbar", "ccbar", "taupair", "mumu", "ee", "gammagamma"} <= set(samples.process)
    for row in samples.itertuples():
        path = tiny / "mc" / f"{row.sample}.root"
        assert _check_schema(path, mc=True) == row.n_generated == TINY.mc_events
        with uproot.open(path) as f:
            w = f["events"]["weight"].array(library="np")
            proc = f["events"]["true_process"].array(library="np")
            jobs = f["runs"].arrays(library="np")
            assert f["runs"]["n_generated"].interpretation.from_dtype == np.dtype(">i8")
        assert (proc == det.PROCESS_IDS[row.process]).all()
        assert jobs["n_generated"].sum() == len(w)
        assert jobs["sum_w"].sum() == pytest.approx(w.sum(), rel=1e-12)
        assert jobs["sum_w2"].sum() == pytest.approx((w * w).sum(), rel=1e-12)
        if row.sample == "taupair_nlo":
            frac_neg = (w < 0).mean()
            assert 0.05 < frac_neg < 0.16 and jobs["sum_w"].sum() < 0.9 * len(w)
        else:
            assert (w == 1.0).all()


# --- the data carries the truth ---------------------------------------------------------


def test_hot_and_dead_channels(events, truth):
    occ = np.zeros(TINY.n_channels)
    for ev in events.values():
        occ += np.bincount(ev["hit_channel"], minlength=TINY.n_channels)
    hot = np.zeros(TINY.n_channels, bool)
    hot[truth["hot_channels"]] = True
    dead = np.zeros(TINY.n_channels, bool)
    dead[truth["dead_channels"]] = True
    assert hot.any() and dead.any() and not (hot & dead).any()
    normal = ~hot & ~dead
    median = np.median(occ[normal])
    assert (occ[hot] >= 20 * median).all()
    assert (occ[dead] == 0).all()
    # every live channel has enough signal for a T0 fit, and no normal channel looks hot
    assert occ[normal].min() >= 150 and occ[normal].max() < 5 * median


def test_hit_times_carry_t0(events, truth):
    """Per channel, the median of the drift peak (hits within +-15 ns) is T0 + DRIFT_PEAK_NS."""
    ch = np.concatenate([ev["hit_channel"] for ev in events.values()])
    t = np.concatenate([ev["hit_time"] for ev in events.values()]).astype(np.float64)
    t0 = np.asarray(truth["t0_ns"])
    rel = t - t0[ch] - det.DRIFT_PEAK_NS
    sel = np.abs(rel) < 15
    # core fraction of the time distribution near the peak, as modelled
    live = np.setdiff1d(np.arange(TINY.n_channels), truth["dead_channels"] + truth["hot_channels"])
    med = np.array([np.median(t[sel & (ch == c)]) for c in live[:64]])
    np.testing.assert_allclose(med - det.DRIFT_PEAK_NS, t0[live[:64]], atol=1.5)
    # the spread of T0 itself is a few ns, so the check above is not trivially true
    assert np.std(t0) > 1.5


def test_beam_spot_from_d0_phi(events, runs, truth):
    for run in runs.run[runs.run_type != "cosmic"]:
        ev = events[int(run)]
        phi = np.arctan2(ev["trk_py"], ev["trk_px"]).astype(np.float64)
        d0 = ev["trk_d0"].astype(np.float64)
        a = np.c_[np.sin(phi), -np.cos(phi)]
        (x, y), *_ = np.linalg.lstsq(a, d0, rcond=None)
        resid = d0 - a @ np.array([x, y])
        cov = np.linalg.inv(a.T @ a) * resid.var()
        bs = truth["beam_spot"][f"1:{run}"]
        assert abs(x - bs["x_cm"]) < 5 * np.sqrt(cov[0, 0]), run
        assert abs(y - bs["y_cm"]) < 5 * np.sqrt(cov[1, 1]), run
        z0 = ev["trk_z0"].astype(np.float64)
        assert abs(np.mean(z0) - bs["z_cm"]) < 0.02


def test_module_residuals_and_dedx_gain(events, runs, truth):
    w = det.ALIGN_FIT_WEIGHT
    phys = [int(r) for r in runs.run[runs.run_type != "cosmic"]]
    mod = np.concatenate([events[r]["trk_module"] for r in phys])
    rx = np.concatenate([events[r]["trk_res_x"] for r in phys]).astype(np.float64)
    ry = np.concatenate([events[r]["trk_res_y"] for r in phys]).astype(np.float64)
    for m in range(TINY.n_modules):
        sel = mod == m
        err = det.RESIDUAL_SIGMA_UM / np.sqrt(sel.sum())
        assert sel.sum() >= 1000
        assert abs(rx[sel].mean() - (1 - w) * truth["module_shifts"]["dx_um"][m]) < 5 * err
        assert abs(ry[sel].mean() - (1 - w) * truth["module_shifts"]["dy_um"][m]) < 5 * err
    for r in phys:
        ev = events[r]
        tp = np.repeat(ev["true_process"], ev["ntrk"])
        sel = tp == det.PROCESS_IDS["mumu"]
        p = np.sqrt(ev["trk_px"] ** 2 + ev["trk_py"] ** 2 + ev["trk_pz"] ** 2).astype(np.float64)[sel]
        ratio = ev["trk_dedx"][sel] / det.expected_dedx(p, det.MUON_MASS_GEV)
        err = det.DEDX_RESOLUTION / np.sqrt(sel.sum())
        assert abs(ratio.mean() - truth["dedx_gain"][f"1:{r}"]) < 5 * err * truth["dedx_gain"][f"1:{r}"]


def _mumu_mass(ev):
    sel = np.repeat(ev["true_process"] == det.PROCESS_IDS["mumu"], ev["ntrk"])
    px, py, pz = (ev[k][sel].astype(np.float64).reshape(-1, 2) for k in ("trk_px", "trk_py", "trk_pz"))
    e = np.sqrt(px**2 + py**2 + pz**2 + det.MUON_MASS_GEV**2).sum(axis=1)
    return np.sqrt(e**2 - px.sum(1) ** 2 - py.sum(1) ** 2 - pz.sum(1) ** 2)


def test_mumu_mass_peak_follows_ecm(events, runs, truth):
    """Mass peak per E_cm level (4S runs before / after the step) vs the injected E_cm."""
    step = int(truth["ecm_step_run"].split(":")[1])
    levels = {"before": [], "after": []}
    for r in runs.run[runs.run_type == "4S"]:
        levels["before" if r < step else "after"].append(int(r))
    means = {}
    for name, rs in levels.items():
        ecm = np.array([truth["ecm_gev"][f"1:{r}"] for r in rs])
        assert np.ptp(ecm) == 0  # one level
        m = np.concatenate([_mumu_mass(events[r]) for r in rs])
        core = m[np.abs(m - ecm[0]) < 0.1]
        means[name] = core.mean()
        err = core.std() / np.sqrt(len(core))
        assert abs(core.mean() - ecm[0]) < 5 * err + 0.003, name  # + ISR leak into the window
    true_step = truth["ecm_gev"][f"1:{levels['after'][0]}"] - truth["ecm_gev"][f"1:{levels['before'][0]}"]
    assert abs(true_step) >= 0.003
    assert abs((means["after"] - means["before"]) - true_step) < 0.004


def test_event_counts_follow_lumi_times_cross_section(events, runs, truth, tiny):
    lumi = read_run_lumi(tiny / "lumi" / "run_lumi.csv").set_index("run")
    observed = {p: 0 for p in truth["cross_sections_nb"]}
    expected = dict.fromkeys(observed, 0.0)
    for r in runs.run[runs.run_type != "cosmic"]:
        ev = events[int(r)]
        xs = cross_sections_at(truth["ecm_gev"][f"1:{r}"])
        assert xs == pytest.approx(truth["cross_sections_nb_per_run"][f"1:{r}"])
        for p in observed:
            observed[p] += int((ev["true_process"] == det.PROCESS_IDS[p]).sum())
            expected[p] += xs[p] * truth["prescales"][p] * 1e3 * lumi.loc[r, "lumi_pb"]
    chi2 = 0.0
    for p in observed:
        assert expected[p] > 50, p
        assert abs(observed[p] - expected[p]) < 5 * np.sqrt(expected[p]), (p, observed[p], expected[p])
        chi2 += (observed[p] - expected[p]) ** 2 / expected[p]
    assert chi2 < 35  # 10 processes: p ~ 1e-4
    # continuum runs (below the BB threshold) have no B pairs
    for r in runs.run[runs.run_type == "continuum"]:
        tp = events[int(r)]["true_process"]
        assert not np.isin(tp, [det.PROCESS_IDS["mixed"], det.PROCESS_IDS["charged"]]).any()


def test_hlt_bits(events, runs):
    bits = det.HLT_BITS
    tp = np.concatenate([events[int(r)]["true_process"] for r in runs.run[runs.run_type != "cosmic"]])
    hlt = np.concatenate([events[int(r)]["hlt_bits"] for r in runs.run[runs.run_type != "cosmic"]])
    ntrk = np.concatenate([events[int(r)]["ntrk"] for r in runs.run[runs.run_type != "cosmic"]])

    def frac(proc, bit):
        sel = tp == det.PROCESS_IDS[proc]
        return ((hlt[sel] >> bits[bit]) & 1).mean()

    assert frac("mumu", "hlt_mumu_2trk") > 0.8 and frac("uubar", "hlt_mumu_2trk") < 0.01
    assert frac("ee", "hlt_bhabha") > 0.9 and frac("mumu", "hlt_bhabha") < 0.01
    assert frac("gammagamma", "hlt_gamma_gamma") > 0.9
    assert (ntrk[tp == det.PROCESS_IDS["gammagamma"]] == 0).all()
    assert frac("mixed", "hlt_hadron") > 0.95 and frac("ee", "hlt_hadron") == 0


def test_lumi_files_match_run_table(tiny, runs, truth):
    lumi_dir = tiny / "lumi"
    table = read_run_lumi(lumi_dir / "run_lumi.csv").set_index("run")
    assert table.loc[runs.run[runs.run_type == "cosmic"], "lumi_pb"].eq(0).all()
    fills = sorted(int(p.name) for p in lumi_dir.iterdir() if p.is_dir())
    assert fills == sorted(runs.fill[runs.fill > 0].unique().tolist())
    n_segments = 0
    for fill in fills:
        lf = read_massi_lumi(lumi_dir / str(fill) / f"{fill}_lumi_TOY.txt")
        sf = read_massi_summary(lumi_dir / str(fill) / f"{fill}_summary_TOY.txt")
        version, ann = read_version_files(lumi_dir / str(fill))
        assert str(version) == "1.0" and check_version_annotated(version, ann) == []
        dt = np.diff(lf.time_s)
        assert (dt == TINY.lumi_bin_s).all()
        assert ((lf.stab >= 0) & (lf.stab <= 1)).all()
        frac = (lf.stab > 0) & (lf.stab < 1)
        assert frac.sum() >= 2  # fractional bins at segment edges
        on = lf.lumi[lf.lumi > 0]
        assert (np.diff(on) < 0).all()  # decaying within the fill
        integral = lf.stab * lf.lumi * TINY.lumi_bin_s
        for a, b, peak, lui in sf.segments():
            sel = (lf.time_s + TINY.lumi_bin_s > a) & (lf.time_s < b)
            assert lui == pytest.approx(integral[sel].sum(), rel=1e-12)
            assert peak == pytest.approx(lf.lumi[sel].max(), rel=1e-12)
            n_segments += 1
        assert sum(s[3] for s in sf.segments()) == pytest.approx(integral.sum(), rel=1e-12)
        for r in runs[runs.fill == fill].itertuples():
            sel = (lf.time_s >= r.start_time) & (lf.time_s < r.stop_time)
            assert (lf.stab[sel] == 1).all()
            assert table.loc[r.run, "lumi_pb"] == pytest.approx(integral[sel].sum() * 1e-6, rel=1e-12)
            assert table.loc[r.run, "stat_pb"] > 0 and table.loc[r.run, "sys_pb"] > table.loc[r.run, "stat_pb"]
    assert n_segments > len(fills)  # one fill loses stable beams: two segments


# --- determinism and bad input ------------------------------------------------------------


def test_same_seed_identical_arrays(tiny, tmp_path, events):
    again = make_dataset(tmp_path / "again", "tiny", seed=1)
    for run, ev in events.items():
        with uproot.open(again / "raw" / "e0001" / f"r{run:05d}.root") as f:
            ev2 = _flat(f["events"])
        assert ev.keys() == ev2.keys()
        for k in ev:
            np.testing.assert_array_equal(ev[k], ev2[k], err_msg=f"run {run} branch {k}")
    for sample in ("mumu", "taupair_nlo"):
        with uproot.open(tiny / "mc" / f"{sample}.root") as f1, uproot.open(again / "mc" / f"{sample}.root") as f2:
            for k in ("weight", "hit_time", "trk_px"):
                np.testing.assert_array_equal(f1["events"][k].array(library="np").tolist() if k == "weight" else
                                              np.concatenate(f1["events"][k].array(library="np")),
                                              f2["events"][k].array(library="np").tolist() if k == "weight" else
                                              np.concatenate(f2["events"][k].array(library="np")))
    t1 = json.loads((tiny / "truth.json").read_text())
    t2 = json.loads((again / "truth.json").read_text())
    t1["generator"].pop("seconds"), t2["generator"].pop("seconds")
    assert t1 == t2
    for rel in ("runs.csv", "lumi/run_lumi.csv", "lumi/8001/8001_lumi_TOY.txt", "mc/samples.csv", "detector.json"):
        assert (tiny / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_other_seed_differs(tmp_path):
    a = make_dataset(tmp_path / "a", MINI, seed=5)
    b = make_dataset(tmp_path / "b", MINI, seed=6)
    ta, tb = (json.loads((d / "truth.json").read_text()) for d in (a, b))
    assert ta["t0_ns"] != tb["t0_ns"] and ta["beam_spot"] != tb["beam_spot"]
    with uproot.open(a / "raw/e0001/r00001.root") as fa, uproot.open(b / "raw/e0001/r00001.root") as fb:
        assert fa["events"].num_entries != fb["events"].num_entries or not np.array_equal(
            fa["events"]["timestamp"].array(library="np"), fb["events"]["timestamp"].array(library="np"))


def _write_t0(path: Path, values, channels=None, header="channel,t0_ns"):
    channels = range(len(values)) if channels is None else channels
    path.write_text(header + "\n" + "".join(f"{c},{v}\n" for c, v in zip(channels, values)))
    return path


def test_t0_table_is_used(tmp_path):
    t0 = np.round(np.linspace(-6.0, 6.0, MINI.n_channels), 3)
    out = make_dataset(tmp_path / "d", MINI, seed=2, truth_table=_write_t0(tmp_path / "t0.csv", t0))
    truth = json.loads((out / "truth.json").read_text())
    assert truth["t0_source"] == "table"
    np.testing.assert_array_equal(truth["t0_ns"], t0)
    ch, t = [], []
    for r in (1, 2, 3):
        with uproot.open(out / f"raw/e0001/r{r:05d}.root") as f:
            ch.append(np.concatenate(f["events"]["hit_channel"].array(library="np")))
            t.append(np.concatenate(f["events"]["hit_time"].array(library="np")))
    ch, t = np.concatenate(ch), np.concatenate(t)
    normal = ~np.isin(ch, truth["hot_channels"])
    rel = t - t0[ch] - det.DRIFT_PEAK_NS
    assert np.mean(np.abs(rel[normal]) < 15) > 0.8  # the table's T0s are in the hits
    # per-channel peak position follows the table with slope 1 (hits near 100 ns + T0 only)
    near = normal & (np.abs(t - det.DRIFT_PEAK_NS) < 25)
    live = np.unique(ch[near])
    peak = np.array([np.median(t[near & (ch == c)]) for c in live]) - det.DRIFT_PEAK_NS
    slope = np.polyfit(t0[live], peak, 1)[0]
    assert 0.9 < slope < 1.1


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ({"values": [0.0] * 10}, "expected exactly 512"),
        ({"values": ["abc"] + [0.0] * 511}, r"line 2.*expected an integer channel and a number"),
        ({"values": ["nan"] + [0.0] * 511}, "not finite"),
        ({"values": [0.0] * 512, "channels": [0] * 512}, "appears twice"),
        ({"values": [0.0] * 512, "channels": range(1, 513)}, "out of range"),
        ({"values": [0.0] * 512, "header": "chan,t0"}, "lacks 'channel'"),
    ],
)
def test_bad_t0_table_fails_before_writing(tmp_path, rows, match):
    table = _write_t0(tmp_path / "t0.csv", rows["values"], rows.get("channels"), rows.get("header", "channel,t0_ns"))
    out = tmp_path / "out" / "data"
    with pytest.raises(InputError, match=match) as info:
        make_dataset(out, "tiny", seed=1, truth_table=table)
    assert str(table) in str(info.value)
    assert not (tmp_path / "out").exists()


def test_bad_scale_and_counts_fail_before_writing(tmp_path):
    out = tmp_path / "out" / "data"
    with pytest.raises(ParameterError, match="unknown simulation scale 'huge'"):
        make_dataset(out, "huge")
    with pytest.raises(ParameterError, match="mc_events = -1"):
        make_dataset(out, dataclasses.replace(TINY, mc_events=-1))
    with pytest.raises(ParameterError, match="cosmic_events_per_run = -5"):
        make_dataset(out, dataclasses.replace(TINY, cosmic_events_per_run=-5))
    with pytest.raises(ParameterError, match="seed"):
        make_dataset(out, "tiny", seed=-1)
    with pytest.raises(InputError, match="no such file"):
        make_dataset(out, "tiny", truth_table=tmp_path / "missing.csv")
    assert not (tmp_path / "out").exists()


def test_existing_dataset_is_kept_or_replaced_atomically(tmp_path, monkeypatch):
    import dpnb.simulate.dataset as ds

    out = make_dataset(tmp_path / "d", MINI, seed=3)
    truth_before = (out / "truth.json").read_bytes()
    mtime = (out / "truth.json").stat().st_mtime_ns
    # same config and seed: returned untouched
    assert make_dataset(out, MINI, seed=3) == out
    assert (out / "truth.json").stat().st_mtime_ns == mtime
    # another seed without overwrite: refused, nothing changed
    with pytest.raises(InputError, match="overwrite"):
        make_dataset(out, MINI, seed=4)
    assert (out / "truth.json").read_bytes() == truth_before

    # a failure half way through a replacement leaves the old dataset complete
    def boom(*args, **kwargs):
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(ds, "write_mc", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        make_dataset(out, MINI, seed=4, overwrite=True)
    assert (out / "truth.json").read_bytes() == truth_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no temporary directory left
    monkeypatch.undo()

    make_dataset(out, MINI, seed=4, overwrite=True)
    assert json.loads((out / "truth.json").read_text())["seed"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_cli(tmp_path, capsys):
    from dpnb.cli import main

    out = tmp_path / "cli"
    assert main(["simulate", "--scale", "huge", "--out", str(out)]) == 2
    assert "unknown scale" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--scale", "tiny", "--out", str(out), "--mc-events", "-3"])
    assert info.value.code == 2
    assert "negative" in capsys.readouterr().err
    bad = _write_t0(tmp_path / "t0.csv", [1.0, 2.0])
    assert main(["simulate", "--scale", "tiny", "--out", str(out), "--t0-table", str(bad)]) == 2
    assert "expected exactly 512" in capsys.readouterr().err
    assert not out.exists()
    assert main(["simulate", "--scale", "tiny", "--out", str(out), "--mc-events", "10", "--cosmic-events", "20"]) == 0
    assert "events" in capsys.readouterr().out
    assert pd.read_csv(out / "mc" / "samples.csv").n_generated.eq(10).all()
    # existing directory of another configuration: refused without --force, replaced with it
    # the same command again finds the dataset complete; another seed is refused without --force
    mtime = (out / "truth.json").stat().st_mtime_ns
    assert main(["simulate", "--scale", "tiny", "--out", str(out), "--mc-events", "10", "--cosmic-events", "20"]) == 0
    assert (out / "truth.json").stat().st_mtime_ns == mtime
    assert main(["simulate", "--scale", "tiny", "--out", str(out), "--seed", "2", "--mc-events", "10"]) == 2
    assert "--force" in capsys.readouterr().err
    assert json.loads((out / "truth.json").read_text())["seed"] == 1


def test_scales_are_exposed():
    assert set(SCALES) == {"tiny", "demo", "large"}
    assert all(isinstance(c, SimConfig) for c in SCALES.values())
    demo = SCALES["demo"]
    assert demo.n_channels == det.N_CHANNELS and demo.n_modules == det.N_MODULES
    assert demo.physics_runs.count("4S") > 25 and {"continuum", "scan"} <= set(demo.physics_runs)
    assert demo.n_cosmic_runs >= 3 and demo.n_physics_runs == 40


def test_zero_counts_give_empty_trees_with_full_schema(tmp_path):
    cfg = dataclasses.replace(MINI, name="zero", peak_lumi_hz_per_ub=0.0, cosmic_events_per_run=0, mc_events=0)
    out = make_dataset(tmp_path / "z", cfg, seed=1)
    runs = pd.read_csv(out / "runs.csv")
    assert (runs.n_events == 0).all()
    assert read_run_lumi(out / "lumi" / "run_lumi.csv").lumi_pb.eq(0).all()
    assert _check_schema(out / "raw" / "e0001" / "r00001.root", mc=False) == 0
    assert _check_schema(out / "mc" / "mumu.root", mc=True) == 0
