"""MC normalization (dpnb.mcnorm): tables, inventory, weights, POT mode, data/MC χ² gate."""

from __future__ import annotations

import math
from pathlib import Path

import awkward as ak
import numpy as np
import pandas as pd
import pytest
import uproot
from hypothesis import given, settings
from hypothesis import strategies as st

from dpnb.errors import InputError, ParameterError, SchemaError
from dpnb.mcnorm import (
    WEIGHTS_COLUMNS,
    chi2_test,
    expected_counts,
    fill_histogram,
    load_cross_sections,
    load_pot_constants,
    merge_bins,
    normalize,
    parse_cross_sections,
    plot_stack,
    pot_both,
    prepare_lumi,
    read_inventory,
    read_sample,
    write_csv_atomic,
)
from dpnb.mcnorm.compare import event_values
from dpnb.notebook import gate_verdict
from dpnb.runs import RunId

REPO = Path(__file__).resolve().parents[1]
REAL = Path(__file__).resolve().parents[2] / "shared/data/real"

NANO_SCHEMA = {"events_tree": "Events", "runs_tree": "Runs", "n_generated": "genEventCount_",
               "sum_w": "genEventSumw_", "sum_w2": "genEventSumw2_", "weight": "genWeight"}
HZZ_SCHEMA = {"events_tree": "events", "runs_tree": "", "weight": "EventWeight"}


def _real(name: str) -> Path:
    path = REAL / name
    if not path.is_file():
        pytest.skip(f"real public file {path} not found (shared/data/real absent)")
    return path


# --- small ROOT files like the toy's MC ------------------------------------------------
def write_mc(path, ntrk, weights, jobs, true_process=0):
    """An MC file: events (trk_px jagged with ``ntrk[i]`` entries, weight, true_process) and a
    runs tree with one entry per job ``(n_generated, sum_w, sum_w2)``."""
    ntrk = np.asarray(ntrk, dtype=np.int64)
    px = ak.unflatten(np.linspace(0.1, 1.0, int(ntrk.sum())).astype(np.float32), ntrk)
    with uproot.recreate(path) as f:
        f.mktree("events", {"trk_px": "var * float32", "weight": "float64", "true_process": "int32"})
        f["events"].extend({"trk_px": px, "weight": np.asarray(weights, dtype=np.float64),
                            "true_process": np.full(len(ntrk), true_process, dtype=np.int32)})
        f.mktree("runs", {"n_generated": "int64", "sum_w": "float64", "sum_w2": "float64"})
        f["runs"].extend({"n_generated": np.array([j[0] for j in jobs], dtype=np.int64),
                          "sum_w": np.array([j[1] for j in jobs], dtype=np.float64),
                          "sum_w2": np.array([j[2] for j in jobs], dtype=np.float64)})
    return Path(path)


def make_table(entries, unit="nb", name="t", version=1):
    raw = {"name": name, "version": version, "unit": unit, "source": "test", "processes": entries}
    return parse_cross_sections(raw, "test.yaml")


def lumi_frame(rows):
    df = pd.DataFrame(rows, columns=["exp", "run", "run_type", "recorded_pb"])
    return prepare_lumi(df, source="runs_lumi.csv")


def sample(name, process, n, sum_w=None, sum_w2=None, exp=-1, first=-1, last=-1):
    from dpnb.mcnorm import Sample

    sw = float(n if sum_w is None else sum_w)
    sw2 = float(n if sum_w2 is None else sum_w2)
    return Sample(name, process, f"{name}.root", n, sw, sw2, exp=exp, run_first=first, run_last=last)


# --- cross-section tables --------------------------------------------------------------
def test_belle2_table_values_and_version():
    t = load_cross_sections("belle2_generic_4S", 1, root=REPO)
    expected = {"mixed": 0.555, "charged": 0.555, "ccbar": 1.3, "uubar": 1.61, "ddbar": 0.40, "ssbar": 0.38,
                "taupair": 0.91}
    assert t.tag == "belle2_generic_4S_v1"
    assert {p: t[p].sigma_nb for p in t.processes} == expected
    assert all(t[p].source for p in t.processes)


def test_toy_table_matches_the_generator():
    from dpnb.simulate.config import CROSS_SECTIONS_NB, PRESCALES
    from dpnb.simulate.truth import cross_sections_at

    t = load_cross_sections("toy_generator", 1, root=REPO)
    assert set(t.processes) == set(CROSS_SECTIONS_NB)
    cont = cross_sections_at(10.52)
    for p, sigma in CROSS_SECTIONS_NB.items():
        assert t[p].sigma_nb == pytest.approx(sigma, rel=1e-12)
        assert t[p].prescale == PRESCALES.get(p, 1.0)
        assert t[p].sigma_for("continuum") == pytest.approx(cont[p], rel=1e-9, abs=1e-12)
        assert t[p].sigma_for("4S") == t[p].sigma_nb


def test_table_units_convert_to_nb_and_unknown_unit_fails():
    t = make_table({"a": {"sigma": 555.0}, "b": {"sigma": 2.0, "unit": "fb"}}, unit="pb")
    assert t["a"].sigma_nb == pytest.approx(0.555)
    assert t["b"].sigma_nb == pytest.approx(2.0e-6)
    with pytest.raises(InputError, match=r"test.yaml: processes.a.*unknown cross-section unit 'barn'"):
        make_table({"a": {"sigma": 1.0, "unit": "barn"}})
    with pytest.raises(InputError, match="missing keys"):
        parse_cross_sections({"name": "x", "version": 1, "processes": {}}, "x.yaml")
    with pytest.raises(InputError, match="expected a cross section >= 0"):
        make_table({"a": {"sigma": -1.0}})


def test_missing_table_names_the_tables_present():
    with pytest.raises(ParameterError, match=r"toy_generatr_v1\.yaml does not exist.*toy_generator_v1"):
        load_cross_sections("toy_generatr", 1, root=REPO)


# --- inventory from real files -----------------------------------------------------------
def test_nano_dy_runs_tree_sums_through_schema():
    path = _real("nano_dy.root")
    with uproot.open(path) as f:
        runs = f["Runs"].arrays(["genEventCount_", "genEventSumw_", "genEventSumw2_"], library="np")
        gw = f["Events"]["genWeight"].array(library="np").astype(np.float64)
    s = read_sample(path, "dy", schema=NANO_SCHEMA)
    assert s.n_generated == int(runs["genEventCount_"].sum()) == 850098
    assert s.sum_w == pytest.approx(float(runs["genEventSumw_"].sum()), rel=1e-15)
    assert s.sum_w2 == pytest.approx(float(runs["genEventSumw2_"].sum()), rel=1e-15)
    n_eff = float(runs["genEventSumw_"].sum()) ** 2 / float(runs["genEventSumw2_"].sum())
    assert s.n_eff == pytest.approx(n_eff, rel=1e-12)
    assert s.n_eff < s.n_generated  # negative weights cost statistics
    assert s.weighted
    # stored events: 40, of which a fraction have negative weights (counted independently)
    assert s.n_stored == len(gw) == 40
    assert s.n_negative == int(sum(1 for w in gw.tolist() if w < 0))
    assert s.negative_fraction == pytest.approx(9 / 40)


def test_nano_dy_weight_is_sigma_lumi_over_sum_w():
    s = read_sample(_real("nano_dy.root"), "dy", schema=NANO_SCHEMA)
    table = make_table({"dy": {"sigma": 6077.22, "unit": "pb"}})
    lumi = prepare_lumi(pd.DataFrame({"exp": [1], "run": [1], "run_type": ["4S"], "recorded_fb": [59.7]}),
                        column="recorded_fb", unit="/fb")
    norm = normalize([s], table, lumi)
    row = norm.samples.iloc[0]
    sigma_pb_times_lumi_pb = 6077.22 * 59.7e3  # pb × pb^-1, by hand
    assert row["expected_events"] == pytest.approx(sigma_pb_times_lumi_pb, rel=1e-12)
    assert row["weight"] == pytest.approx(sigma_pb_times_lumi_pb / s.sum_w, rel=1e-12)
    assert row["lumi_ratio"] == pytest.approx(s.sum_w / sigma_pb_times_lumi_pb, rel=1e-12)
    assert row["lumi_ratio_eff"] == pytest.approx(s.n_eff / sigma_pb_times_lumi_pb, rel=1e-12)


def test_hzz_event_weight_sums_without_run_tree():
    path = _real("uproot-HZZ.root")
    with uproot.open(path) as f:
        w = f["events"]["EventWeight"].array(library="np").astype(np.float64)
    s = read_sample(path, "hzz", schema=HZZ_SCHEMA, step_size=1000)  # 3 chunks
    assert s.n_generated == 2421 == len(w)
    assert s.sum_w == pytest.approx(math.fsum(w.tolist()), rel=1e-12)
    assert s.sum_w2 == pytest.approx(math.fsum((x * x for x in w.tolist())), rel=1e-12)
    assert s.n_negative == 0
    assert s.n_eff == pytest.approx(math.fsum(w.tolist()) ** 2 / math.fsum(x * x for x in w.tolist()), rel=1e-12)


def test_real_file_with_wrong_schema_names_existing_branches():
    with pytest.raises(SchemaError, match=r"no branch 'genEventSumW_' \(nearest: genEventSumw_"):
        read_sample(_real("nano_dy.root"), "dy", schema={**NANO_SCHEMA, "sum_w": "genEventSumW_"})


# --- inventory from toy-like files ---------------------------------------------------------
def _write_inventory(tmp_path, rows, files):
    mc = tmp_path / "mc"
    mc.mkdir()
    for name, kw in files.items():
        write_mc(mc / f"{name}.root", **kw)
    pd.DataFrame(rows, columns=["sample", "process", "exp", "run_first", "run_last", "n_generated"]).to_csv(
        mc / "samples.csv", index=False)
    return mc


def test_inventory_reads_jobs_and_cross_checks_samples_csv(tmp_path):
    mc = _write_inventory(
        tmp_path,
        [("uubar_s0", "uubar", 1, 1, 4, 30), ("mumu_s0", "mumu", 1, 1, 4, 10)],
        {"uubar_s0": dict(ntrk=[2, 3, 4], weights=[1, 1, 1], jobs=[(20, 20, 20), (10, 10, 10)]),
         "mumu_s0": dict(ntrk=[2, 2], weights=[1.5, -0.5], jobs=[(10, 8.0, 12.0)])},
    )
    inv = {s.sample: s for s in read_inventory(mc)}
    assert inv["uubar_s0"].n_generated == 30 and inv["uubar_s0"].sum_w == 30 and not inv["uubar_s0"].weighted
    assert inv["mumu_s0"].n_eff == pytest.approx(8.0**2 / 12.0)
    assert inv["mumu_s0"].negative_fraction == 0.5
    assert (inv["mumu_s0"].exp, inv["mumu_s0"].run_first, inv["mumu_s0"].run_last) == (1, 1, 4)


def test_inventory_count_mismatch_names_file_and_sample(tmp_path):
    mc = _write_inventory(tmp_path, [("uubar_s0", "uubar", 1, 1, 4, 31)],
                          {"uubar_s0": dict(ntrk=[1], weights=[1], jobs=[(30, 30, 30)])})
    with pytest.raises(InputError, match=r"uubar_s0\.root: 30 generated events.*n_generated = 31"):
        read_inventory(mc)


@pytest.mark.parametrize(
    ("jobs", "pattern"),
    [([(0, 0.0, 0.0)], "0 generated events; expected a positive count"),
     ([(10, -3.0, 5.0)], r"sum of weights = -3\.0; expected > 0"),
     ([(10, 0.0, 5.0)], r"sum of weights = 0\.0; expected > 0")],
)
def test_zero_generated_and_nonpositive_sum_w(tmp_path, jobs, pattern):
    path = write_mc(tmp_path / "bad.root", ntrk=[1], weights=[1.0], jobs=jobs)
    with pytest.raises(InputError, match=pattern) as exc:
        read_sample(path, "uubar")
    assert "bad.root" in str(exc.value) and "'runs'" in str(exc.value)


def test_sum_w_from_events_nonpositive(tmp_path):
    path = write_mc(tmp_path / "neg.root", ntrk=[1, 1], weights=[1.0, -2.0], jobs=[(2, 1, 1)])
    with pytest.raises(InputError, match=r"neg\.root: tree 'events' branch 'weight': sum of weights = -1\.0"):
        read_sample(path, "x", schema={"runs_tree": ""})


def test_inventory_missing_file(tmp_path):
    mc = _write_inventory(tmp_path, [("a", "uubar", 1, 1, 2, 5)], {})
    with pytest.raises(InputError, match=r"sample 'a' \(process 'uubar'\) has no file .*a\.root"):
        read_inventory(mc)


# --- normalisation ------------------------------------------------------------------------
def test_normalize_against_hand_computation():
    table = make_table({
        "uubar": {"sigma": 1.61, "by_run_type": {"continuum": 1.63}},
        "mixed": {"sigma": 0.555, "by_run_type": {"continuum": 0.0}},
        "ee": {"sigma": 74.4, "prescale": 0.02},
    })
    lumi = lumi_frame([(1, 1, "4S", 0.5), (1, 2, "continuum", 0.25), (1, 3, "4S", 1.0), (1, 4, "4S", 2.0)])
    samples = [
        sample("uubar_a", "uubar", 3000, exp=1, first=1, last=3),
        sample("uubar_b", "uubar", 1000, exp=1, first=1, last=3),  # a second stream of the same range
        sample("mixed", "mixed", 1200, exp=1, first=1, last=3),
        sample("ee_w", "ee", 50, sum_w=40.0, sum_w2=80.0, exp=1, first=1, last=3),
    ]
    req = [RunId(1, 1), RunId(1, 2), RunId(1, 3)]
    norm = normalize(samples, table, lumi, req, min_lumi_ratio=1.0)
    rows = norm.samples.set_index("sample")
    # plain arithmetic: 1 nb × 1 pb^-1 = 1000 events
    n_uubar = 1000 * (1.61 * 0.5 + 1.63 * 0.25 + 1.61 * 1.0)
    n_mixed = 1000 * (0.555 * 0.5 + 0.0 + 0.555 * 1.0)
    n_ee = 1000 * 74.4 * 1.75
    assert rows.loc["uubar_a", "lumi_pb"] == pytest.approx(1.75)
    assert rows.loc["uubar_a", "expected_events"] == pytest.approx(n_uubar)
    assert rows.loc["uubar_a", "weight"] == pytest.approx(n_uubar / 4000)  # both streams combined
    assert rows.loc["uubar_b", "weight"] == pytest.approx(n_uubar / 4000)
    assert rows.loc["uubar_a", "sigma_nb"] == pytest.approx(n_uubar / 1750)  # lumi-weighted σ
    assert rows.loc["uubar_a", "lumi_ratio"] == pytest.approx(3000 / n_uubar)
    assert rows.loc["uubar_a", "streams"] == math.floor(3000 / n_uubar) == 1
    assert rows.loc["uubar_b", "streams"] == 0
    assert rows.loc["mixed", "expected_events"] == pytest.approx(n_mixed)
    assert rows.loc["mixed", "weight"] == pytest.approx(n_mixed / 1200)
    assert rows.loc["ee_w", "expected_events"] == pytest.approx(0.02 * n_ee)
    assert rows.loc["ee_w", "produced_events"] == pytest.approx(n_ee)
    assert rows.loc["ee_w", "weight"] == pytest.approx(0.02 * n_ee / 40.0)
    # the prescaled trigger recorded 2 % of the luminosity: L_MC / (0.02 L)
    assert rows.loc["ee_w", "lumi_ratio"] == pytest.approx((40.0 / 74.4e3) / (0.02 * 1.75))
    assert rows.loc["ee_w", "lumi_ratio_eff"] == pytest.approx((40.0**2 / 80.0) / (0.02 * n_ee))
    assert bool(rows.loc["ee_w", "low_stats"]) and not bool(rows.loc["uubar_a", "low_stats"])
    assert any("'ee'" in w and "below the threshold 1.0" in w for w in norm.warnings)
    # per run: the continuum run has no B pairs
    runs = norm.runs.set_index(["process", "run"])
    assert runs.loc[("mixed", 2), "expected_events"] == 0.0
    assert runs.loc[("uubar", 2), "expected_events"] == pytest.approx(1000 * 1.63 * 0.25)
    assert norm.runs.groupby("process")["expected_events"].sum()["uubar"] == pytest.approx(n_uubar)
    procs = norm.processes.set_index("process")
    assert procs.loc["uubar", "streams"] == math.floor(4000 / n_uubar)
    assert procs.loc["uubar", "n_generated"] == 4000
    assert norm.min_lumi_ratio_eff == pytest.approx(20.0 / (0.02 * n_ee))
    assert norm.table == "t_v1"


def test_run_dependent_ranges_and_uncovered_runs():
    table = make_table({"uubar": {"sigma": 2.0}})
    lumi = lumi_frame([(1, r, "4S", 0.1 * r) for r in range(1, 7)])
    samples = [sample("early", "uubar", 5000, exp=1, first=1, last=3),
               sample("late", "uubar", 9000, exp=1, first=4, last=5)]
    norm = normalize(samples, table, lumi)  # all six runs requested; run 6 has no MC
    rows = norm.samples.set_index("sample")
    assert rows.loc["early", "lumi_pb"] == pytest.approx(0.6)
    assert rows.loc["late", "lumi_pb"] == pytest.approx(0.9)
    assert rows.loc["early", "weight"] == pytest.approx(2000 * 0.6 / 5000)
    assert rows.loc["late", "streams"] == math.floor(9000 / 1800) == 5
    assert norm.uncovered == {"uubar": [RunId(1, 6)]}
    assert norm.processes.set_index("process").loc["uubar", "runs_without_mc"] == 1


def test_exact_whole_streams_survive_rounding():
    table = make_table({"x": {"sigma": 0.1}})
    lumi = lumi_frame([(1, 1, "4S", 0.1), (1, 2, "4S", 0.2)])
    norm = normalize([sample("s", "x", 90)], table, lumi)  # 0.1 nb × 0.3 /pb = 30 events (as 30.000000000000004)
    assert norm.samples.iloc[0]["streams"] == 3


def test_process_missing_from_table_is_named_with_nearest():
    table = load_cross_sections("belle2_generic_4S", 1, root=REPO)
    lumi = lumi_frame([(1, 1, "4S", 1.0)])
    with pytest.raises(InputError) as exc:
        normalize([sample("a", "uubar", 10), sample("b", "chargd", 10)], table, lumi)
    msg = str(exc.value)
    assert "MC inventory" in msg and "'chargd'" in msg and "nearest: charged" in msg and "belle2_generic_4S_v1" in msg
    with pytest.raises(InputError, match=r"data \(true_process\).*'mumu'"):
        table.check_processes(["uubar", "mumu"], "data (true_process)")


def test_requested_run_without_lumi_is_named():
    table = make_table({"x": {"sigma": 1.0}})
    lumi = lumi_frame([(1, 1, "4S", 1.0)])
    with pytest.raises(InputError, match=r"runs_lumi\.csv: no luminosity for run 1:7 of the MC request"):
        normalize([sample("s", "x", 10)], table, lumi, [RunId(1, 1), RunId(1, 7)])


def test_overlapping_ranges_of_one_process_fail():
    table = make_table({"x": {"sigma": 1.0}})
    lumi = lumi_frame([(1, r, "4S", 1.0) for r in range(1, 5)])
    with pytest.raises(InputError, match=r"process 'x' run 1:3 is covered by samples \['a'\] and \['b'\]"):
        normalize([sample("a", "x", 10, exp=1, first=1, last=3), sample("b", "x", 10, exp=1, first=3, last=4)],
                  table, lumi)


def test_lumi_table_problems():
    df = pd.DataFrame({"exp": [1, 1], "run": [1, 2], "run_type": ["4S", "4S"], "recorded_pb": [1.0, -0.1]})
    with pytest.raises(InputError, match=r"L\.csv: run 1:2: recorded_pb = '-0\.1'"):
        prepare_lumi(df, source="L.csv")
    with pytest.raises(SchemaError, match=r"lacks columns \['delivered_pb'\]"):
        prepare_lumi(df, column="delivered_pb")
    with pytest.raises(InputError, match="unknown integrated-luminosity unit 'pb'"):
        prepare_lumi(df.iloc[:1], unit="pb")
    dup = pd.DataFrame({"exp": [1, 1], "run": [1, 1], "run_type": ["4S", "4S"], "recorded_pb": [1.0, 1.0]})
    with pytest.raises(InputError, match="run 1:1 appears more than once"):
        prepare_lumi(dup)
    ub = prepare_lumi(df.iloc[:1], unit="/ub")
    assert ub["lumi_pb"].iloc[0] == pytest.approx(1.0e-6)


def test_weights_csv_columns_and_atomic_write(tmp_path):
    table = make_table({"x": {"sigma": 1.0}})
    norm = normalize([sample("s", "x", 10)], table, lumi_frame([(1, 1, "4S", 1.0)]))
    out = write_csv_atomic(norm.samples, tmp_path / "mc_weights.csv")
    back = pd.read_csv(out)
    assert list(back.columns[: len(WEIGHTS_COLUMNS)]) == list(WEIGHTS_COLUMNS)
    assert back["weight"].iloc[0] == pytest.approx(1000.0 / 10)
    assert [p.name for p in tmp_path.iterdir()] == ["mc_weights.csv"]  # no temporary left behind


# --- POT mode ------------------------------------------------------------------------------
def test_pot_spill_and_cycle_by_hand():
    c = load_pot_constants("mu2e_normalization", 1, root=REPO)
    t = 1000.0  # s on spill
    one = pot_both(t, c.mode("1BB"))
    two = pot_both(t, c.mode("2BB"))
    # constants written out by hand from Mu2e/Production constants.py
    assert one["pot_spill"] == pytest.approx(1000.0 / 1.695e-6 * 1.58e7, rel=1e-12)
    assert one["pot_cycle"] == pytest.approx(1000.0 / (1.33 * 0.323) * 4e12, rel=1e-12)
    assert two["pot_spill"] == pytest.approx(1000.0 / 1.695e-6 * 3.93e7, rel=1e-12)
    assert two["pot_cycle"] == pytest.approx(1000.0 / (1.4 * 0.246) * 8e12, rel=1e-12)
    for r in (one, two):
        assert r["difference"] == pytest.approx(r["pot_cycle"] - r["pot_spill"], rel=1e-12)
        assert abs(r["relative_difference"]) < 0.002  # the two methods agree to 0.2 %
    assert one["wall_time_s"] == pytest.approx(1000.0 / 0.323)
    counts = expected_counts(one, [{"process": "dio", "rate_per_pot": 1.59e-3, "fraction": "dio_per_stopped_muon"},
                                   {"process": "stops", "rate_per_pot": 1.59e-3, "fraction": ""}], c)
    counts = counts.set_index("process")
    assert counts.loc["dio", "expected_spill"] == pytest.approx(one["pot_spill"] * 1.59e-3 * 0.391, rel=1e-12)
    assert counts.loc["dio", "expected_cycle"] == pytest.approx(one["pot_cycle"] * 1.59e-3 * 0.391, rel=1e-12)
    assert counts.loc["stops", "expected_spill"] == pytest.approx(one["pot_spill"] * 1.59e-3, rel=1e-12)
    assert c.fraction("captures_per_stopped_muon") + c.fraction("dio_per_stopped_muon") == pytest.approx(1.0)


def test_pot_bad_inputs():
    c = load_pot_constants("mu2e_normalization", 1, root=REPO)
    with pytest.raises(ParameterError, match=r"no beam mode '3BB'"):
        c.mode("3BB")
    with pytest.raises(ParameterError, match=r"fraction 'dio_per_stoped_muon'.*nearest: \['dio_per_stopped_muon'"):
        expected_counts(pot_both(1.0, c.mode("1BB")), [{"process": "d", "rate_per_pot": 1e-3,
                                                        "fraction": "dio_per_stoped_muon"}], c)
    with pytest.raises(InputError, match="on-spill time = -1.0 s"):
        pot_both(-1.0, c.mode("1BB"))


# --- data/MC comparison ----------------------------------------------------------------------
def test_event_values_against_python_loop():
    counts = [0, 3, 1, 0, 2]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    values = np.arange(6, dtype=np.float64) * 0.5
    assert event_values(values, offsets, "count").tolist() == counts
    sums = [sum(values[offsets[i]:offsets[i + 1]].tolist()) for i in range(len(counts))]
    assert event_values(values, offsets, "sum").tolist() == pytest.approx(sums)


def test_fill_histogram_weights_and_overflow(tmp_path):
    path = write_mc(tmp_path / "m.root", ntrk=[0, 1, 1, 2, 15], weights=[1.0, 2.0, 0.5, 1.0, 3.0],
                    jobs=[(5, 7.5, 15.25)], true_process=6)
    edges = np.arange(-0.5, 4.0, 1.0)  # 0..3 tracks; 15 tracks overflows into the last bin
    h = fill_histogram([path], "ntrk", edges, weight_branch="weight", scale=2.0, collect_processes=True,
                       step_size=2)
    assert h.sumw.tolist() == pytest.approx([2.0, 5.0, 2.0, 6.0])
    assert h.sumw2.tolist() == pytest.approx([4.0, 4 * (4.0 + 0.25), 4.0, 36.0])
    assert h.n_events == 5 and h.processes == {"mumu"}
    with pytest.raises(ParameterError, match=r"control variable 'ntrks'.*nearest"):
        fill_histogram([path], "ntrks", edges)


def test_chi2_against_plain_python():
    data = np.array([12, 30, 41, 20, 3, 1], dtype=float)
    mc = np.array([10.0, 33.0, 38.0, 22.0, 2.5, 1.0])
    var = np.array([1.0, 2.0, 2.0, 1.0, 0.2, 0.1])
    r = chi2_test(data, mc, var, min_expected=5.0)
    # bins 4 and 5 (2.5 + 1.0 < 5) join the last full group
    groups = [[0], [1], [2], [3, 4, 5]]
    chi2 = sum((sum(data[g]) - sum(mc[g])) ** 2 / (sum(mc[g]) + sum(var[g])) for g in groups)
    assert r["ndf"] == 4 and r["chi2"] == pytest.approx(chi2)
    from scipy.stats import chi2 as chi2_dist

    assert r["pvalue"] == pytest.approx(chi2_dist.sf(chi2, 4))
    assert [g.tolist() for g in merge_bins(mc, 5.0)] == groups


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 20, allow_nan=False), min_size=1, max_size=30), st.floats(0.5, 30))
def test_merge_bins_partitions_and_reaches_threshold(expected, threshold):
    groups = merge_bins(np.array(expected), threshold)
    flat = np.concatenate(groups).tolist()
    assert flat == list(range(len(expected)))
    sums = [sum(expected[i] for i in g) for g in groups]
    if sum(expected) >= threshold:
        assert all(s >= threshold * (1 - 1e-12) for s in sums)
    else:
        assert len(groups) == 1


def _sample_ntrk(rng, n, mean):
    return rng.poisson(mean, size=n)


def test_chi2_gate_passes_on_same_shape_and_fails_on_distortion(tmp_path):
    rng = np.random.default_rng(7)
    edges = np.arange(-0.5, 13.0, 1.0)
    # MC: 20000 unit-weight events, normalised to 4000 expected; data: 4000 events of the same law
    mc_path = write_mc(tmp_path / "mc.root", ntrk=_sample_ntrk(rng, 20000, 4.0), weights=np.ones(20000),
                       jobs=[(20000, 20000, 20000)])
    scale = 4000 / 20000
    mc = fill_histogram([mc_path], "ntrk", edges, weight_branch="weight", scale=scale)
    good = write_mc(tmp_path / "good.root", ntrk=_sample_ntrk(rng, 4000, 4.0), weights=np.ones(4000),
                    jobs=[(4000, 4000, 4000)])
    d_good = fill_histogram([good], "ntrk", edges)
    r_good = chi2_test(d_good.sumw, mc.sumw, mc.sumw2)
    assert mc.sumw.sum() == pytest.approx(4000.0)
    assert gate_verdict(r_good["pvalue"], 0.01, ">=") == "pass"
    # distorted data: one track lost in 30 % of the events
    ntrk = _sample_ntrk(rng, 4000, 4.0)
    lose = rng.random(4000) < 0.3
    bad = write_mc(tmp_path / "bad.root", ntrk=np.maximum(ntrk - lose, 0), weights=np.ones(4000),
                   jobs=[(4000, 4000, 4000)])
    r_bad = chi2_test(fill_histogram([bad], "ntrk", edges).sumw, mc.sumw, mc.sumw2)
    assert r_bad["pvalue"] < 1e-6
    assert gate_verdict(r_bad["pvalue"], 0.01, ">=") == "fail"
    fig = plot_stack(d_good, {"uubar": mc}, "ntrk", result=r_good)
    ax = fig.axes[0]
    assert "p =" in ax.get_title() and fig.axes[1].get_xlabel() == "track multiplicity" and fig.dpi <= 90
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_chi2_data_where_mc_is_zero_fails():
    r = chi2_test(np.array([3.0, 0.0]), np.array([0.0, 0.0]))
    assert r["pvalue"] == 0.0 and math.isinf(r["chi2"])


# --- the notebook on the tiny toy dataset -----------------------------------------------------
@pytest.mark.slow
def test_notebook_on_tiny_dataset(tiny_dataset, tmp_path, monkeypatch):
    """Runs the notebook under papermill with the luminosity_summary's table injected, and checks
    its numbers against the generator's cross sections and the files, read independently."""
    import json

    import papermill as pm

    from dpnb.simulate.config import CROSS_SECTIONS_NB, PRESCALES
    from dpnb.simulate.truth import cross_sections_at

    reg = pd.read_csv(tiny_dataset / "runs.csv")
    run_lumi = pd.read_csv(tiny_dataset / "lumi" / "run_lumi.csv")
    lumi_dir = tmp_path / "luminosity_summary" / "v1"
    lumi_dir.mkdir(parents=True)
    # the luminosity_summary contract: recorded 95 % of delivered
    pd.DataFrame({"exp": run_lumi.exp, "run": run_lumi.run, "run_type": run_lumi.run_type, "fill": 1,
                  "delivered_pb": run_lumi.lumi_pb / 0.95, "recorded_pb": run_lumi.lumi_pb,
                  "stat_pb": run_lumi.stat_pb, "sys_pb": run_lumi.sys_pb}).to_csv(lumi_dir / "runs_lumi.csv",
                                                                                  index=False)
    bucket = tmp_path / "tiny.yaml"
    bucket.write_text(f"label: tinytest\nruns: ['1:1-100']\ndata:\n  root: {tiny_dataset}\n"
                      f"reports_dir: {tmp_path / 'reports'}\n")
    monkeypatch.setenv("DPNB_BUCKET_FILE", str(bucket))
    monkeypatch.setenv("MPLBACKEND", "agg")
    out = tmp_path / "out"
    pm.execute_notebook(str(REPO / "notebooks" / "mc_normalization.ipynb"), str(tmp_path / "run.ipynb"),
                        parameters={"output_dir": str(out), "upstream": {"luminosity_summary": str(lumi_dir)}},
                        cwd=str(REPO / "notebooks"), progress_bar=False, kernel_name="python3")
    res = json.loads((out / "results.json").read_text())
    assert res["values"]["cross_section_table"]["value"] == "toy_generator_v2"
    gates = {k: v["verdict"] for k, v in res["gates"].items()}
    assert gates["lumi_from_luminosity_summary"] == "pass"
    # no beam-energy calibration for this bucket: nominal E_cm everywhere, and the gate says so
    assert gates["ecm_runs_measured"] == "warn" and res["gates"]["ecm_runs_measured"]["value"] == 0.0
    assert res["values"]["expected_events_total"]["value"] == res["values"]["expected_events_total_nominal_ecm"]["value"]
    assert gates["control_chi2_pvalue"] == "pass"  # MC and data come from the same generator
    assert gates["pot_method_difference"] == "pass"

    # independent expectation: good physics runs of type 4S / continuum, σ from the generator
    req = reg[reg.run_type.isin(["4S", "continuum"]) & (reg.dq_flag == "good")]
    lumi = run_lumi.set_index("run")["lumi_pb"]
    weights = pd.read_csv(out / "mc_weights.csv")
    samples = pd.read_csv(tiny_dataset / "mc" / "samples.csv")
    for process, sigma in CROSS_SECTIONS_NB.items():
        expected = sum(
            (sigma if t == "4S" else cross_sections_at(10.52)[process]) * 1000.0 * lumi[r] * PRESCALES.get(process, 1.0)
            for r, t in zip(req.run, req.run_type))
        rows = weights[weights.process == process]
        assert rows["expected_events"].iloc[0] == pytest.approx(expected, rel=1e-9)
        sum_w = 0.0
        for name in samples[samples.process == process]["sample"]:
            with uproot.open(tiny_dataset / "mc" / f"{name}.root") as f:
                sum_w += float(f["runs"]["sum_w"].array(library="np").sum())
        assert rows["weight"].to_numpy() == pytest.approx(expected / sum_w, rel=1e-9)
        assert res["values"][f"expected_events.{process}"]["value"] == pytest.approx(expected, rel=1e-9)
    # every data event of the requested runs is in the control histogram
    assert res["values"]["control_data_events"]["value"] == int(req.n_events.sum())
    assert res["values"]["lumi_requested"]["value"] == pytest.approx(float(lumi[req.run].sum()))
    # on-spill time = wall time of the requested runs × the one-batch duty factor
    wall_s = float((req.stop_time - req.start_time).sum())
    assert res["values"]["on_spill_time"]["value"] == pytest.approx(wall_s * 0.323)
    runs_csv = pd.read_csv(out / "mc_weights_runs.csv")
    assert set(runs_csv.run) == set(req.run)


# --- bucket inputs of the notebook ------------------------------------------------------------
def _ctx(tmp_path, upstream=None):
    from dpnb.notebook import NotebookContext

    data = tmp_path / "data"
    (data / "lumi").mkdir(parents=True, exist_ok=True)
    params = {"label": "t", "runs": ["1:1-9"], "run_types": ["4S"], "reports_dir": str(tmp_path / "reports"),
              "data": {"root": str(data), "lumi": str(data / "lumi"), "raw": str(data / "raw"),
                       "run_registry": str(data / "runs.csv"), "mc": str(data / "mc")}}
    return NotebookContext("mc_normalization", params, tmp_path / "out", upstream or {}, False)


def test_bucket_lumi_sources(tmp_path):
    from dpnb.errors import PipelineError
    from dpnb.mcnorm.bucket_inputs import load_bucket_lumi, mc_request, on_spill_time_s, samples_csv_path

    opts = {"lumi_table": "", "lumi_column": "recorded_pb", "lumi_unit": "pb^-1", "lumi_fallback_to_dataset": False}
    ctx = _ctx(tmp_path)
    with pytest.raises(PipelineError, match="needs the results of 'luminosity_summary'"):
        load_bucket_lumi(ctx, opts)
    pd.DataFrame({"exp": [1], "run": [2], "run_type": ["4S"], "lumi_pb": [0.5]}).to_csv(
        tmp_path / "data" / "lumi" / "run_lumi.csv", index=False)
    df, src, upstream = load_bucket_lumi(ctx, {**opts, "lumi_fallback_to_dataset": True})
    assert not upstream and src.endswith("run_lumi.csv") and df["lumi_pb"].tolist() == [0.5]
    up = tmp_path / "lumi_report"
    up.mkdir()
    pd.DataFrame({"exp": [1], "run": [2], "run_type": ["4S"], "fill": [1], "delivered_pb": [2000.0],
                  "recorded_pb": [1900.0], "stat_pb": [1.0], "sys_pb": [2.0]}).to_csv(up / "runs_lumi.csv", index=False)
    df, src, upstream = load_bucket_lumi(_ctx(tmp_path, {"luminosity_summary": str(up)}),
                                         {**opts, "lumi_column": "delivered_pb", "lumi_unit": "/nb"})
    assert upstream and df["lumi_pb"].tolist() == [pytest.approx(2.0)]
    assert samples_csv_path(ctx, {"samples_csv": ""}) == tmp_path / "data" / "mc" / "samples.csv"
    assert samples_csv_path(ctx, {"samples_csv": "/x/s.csv"}) == Path("/x/s.csv")
    with pytest.raises(ParameterError, match="shares no run type with the bucket's run_types"):
        mc_request(ctx, ["continuum"])
    from dpnb.bucket import BucketRuns

    assert on_spill_time_s({"time_source": "fixed", "on_spill_time_s": 12.5}, BucketRuns(selected=[]), 0.3) == 12.5
    with pytest.raises(ParameterError, match="time_source = 'wall'"):
        on_spill_time_s({"time_source": "wall", "on_spill_time_s": 0.0}, BucketRuns(selected=[]), 0.3)


def test_data_process_missing_from_table_is_named(tmp_path):
    data = write_mc(tmp_path / "r00001.root", ntrk=[2, 4], weights=[1.0, 1.0], jobs=[(2, 2, 2)], true_process=10)
    seen = fill_histogram([data], "ntrk", np.arange(-0.5, 6.0), collect_processes=True).processes
    assert seen == {"cosmic"}
    table = load_cross_sections("toy_generator", 1, root=REPO)
    with pytest.raises(InputError, match=r"data of run 1:1: process 'cosmic' .*not in cross-section table toy_generator_v1"):
        table.check_processes(seen, "data of run 1:1")


# --- cross sections at the measured E_cm ------------------------------------------------------
@pytest.mark.parametrize("ecm", [10.52, 10.5588, 10.57, 10.5763, 10.5794, 10.58, 10.5823, 10.61])
def test_toy_v2_energy_dependence_matches_the_generator(ecm):
    # the generator's own σ(E) (dpnb.simulate.truth) is the independent reference
    from dpnb.simulate.truth import cross_sections_at

    t = load_cross_sections("toy_generator", 2, root=REPO)
    assert set(t.energy_dependent) == set(t.processes)
    truth = cross_sections_at(ecm)
    for p in t.processes:
        assert t.sigma_at(p, "4S", ecm) == pytest.approx(truth[p], rel=1e-12, abs=1e-15), p
        # continuum values hold at 10.52 GeV; B pairs stay 0 there
        assert t.sigma_at(p, "continuum", ecm) == pytest.approx(
            truth[p] if p not in ("mixed", "charged") else 0.0, rel=1e-9, abs=1e-15), p
    # without a measured E_cm: the table's values; v1 and v2 agree on them
    v1 = load_cross_sections("toy_generator", 1, root=REPO)
    assert all(t.sigma_at(p, rt) == v1[p].sigma_for(rt) for p in t.processes for rt in ("4S", "continuum"))


def test_ecm_dependence_parse_errors():
    bw = {"breit_wigner": {"mass_gev": 10.58, "half_width_gev": 0.01, "threshold_gev": 10.56}}
    with pytest.raises(InputError, match=r"test.yaml: processes.a.ecm_dependence: 'linear'; expected 'inverse_s'"):
        make_table({"a": {"sigma": 1.0, "ecm_dependence": "linear"}})
    with pytest.raises(InputError, match=r"processes.a.ecm_dependence.breit_wigner: missing \['threshold_gev'\]"):
        make_table({"a": {"sigma": 1.0, "ecm_dependence": {"breit_wigner": {"mass_gev": 1, "half_width_gev": 1}}}})
    with pytest.raises(InputError, match=r"test.yaml: processes \['a'\] have an ecm_dependence but the table has no "
                                         r"nominal_ecm_gev"):
        make_table({"a": {"sigma": 1.0, "ecm_dependence": bw}})
    raw = {"name": "t", "version": 1, "unit": "nb", "source": "s", "nominal_ecm_gev": {"4S": 10.50},
           "processes": {"a": {"sigma": 1.0, "ecm_dependence": bw}}}
    t = parse_cross_sections(raw, "t.yaml")
    with pytest.raises(InputError, match=r"process 'a' has sigma 1.0 nb for run type '4S' but its ecm_dependence is 0 "
                                         r"at the nominal 10.5 GeV"):
        t.sigma_at("a", "4S", 10.58)
    with pytest.raises(InputError, match=r"nominal_ecm_gev has no entry for run type 'scan'"):
        t.sigma_at("a", "scan", 10.58)


def test_normalize_at_measured_ecm_by_hand():
    from dpnb.runs import RunId

    raw = {"name": "t", "version": 1, "unit": "nb", "source": "s", "nominal_ecm_gev": {"default": 10.0},
           "processes": {"bb": {"sigma": 2.0, "ecm_dependence": {"breit_wigner": {
               "mass_gev": 10.0, "half_width_gev": 0.01, "threshold_gev": 9.9}}},
               "qq": {"sigma": 3.0, "ecm_dependence": "inverse_s"}, "flat": {"sigma": 1.0}}}
    table = parse_cross_sections(raw, "t.yaml")
    lumi = lumi_frame([(1, 1, "4S", 1.0), (1, 2, "4S", 2.0)])
    samples = [sample("bb", "bb", 10_000), sample("qq", "qq", 10_000), sample("flat", "flat", 10_000)]
    # run 1 measured 10 MeV above the peak (one half width: BW factor 1/2), run 2 not measured
    norm = normalize(samples, table, lumi, ecm_by_run={RunId(1, 1): 10.01})
    got = norm.processes.set_index("process")["expected_events"]
    assert got["bb"] == pytest.approx(2.0 * 1000 * (1.0 * 0.5 + 2.0))
    assert got["qq"] == pytest.approx(3.0 * 1000 * (1.0 * (10.0 / 10.01) ** 2 + 2.0))
    assert got["flat"] == pytest.approx(1.0 * 1000 * 3.0)
    runs = norm.runs.set_index(["process", "run"])
    assert runs.loc[("bb", 1), "ecm_gev"] == 10.01 and np.isnan(runs.loc[("bb", 2), "ecm_gev"])
    assert runs.loc[("bb", 1), "sigma_nb"] == pytest.approx(1.0)


def test_ecm_for_runs_reads_beam_energy_payloads(tmp_path):
    from dpnb.conditions import ConditionsDB
    from dpnb.errors import TagStateError
    from dpnb.mcnorm.bucket_inputs import ecm_for_runs
    from dpnb.runs import IOV, RunId

    ctx = _ctx(tmp_path)
    db_path = tmp_path / "cond.sqlite"
    ctx.params["conditions"] = {"db": str(db_path), "global_tag": "gt", "chain": []}
    runs = [RunId(1, r) for r in (1, 2, 3)]
    opts = {"ecm_source": "conditions", "on_missing_ecm": "nominal"}
    lookup = ecm_for_runs(ctx, opts, runs)  # no database yet: every run missing, nothing created
    assert lookup.missing == runs and not lookup.values and not db_path.exists()
    db = ConditionsDB(db_path)
    db.create_tag("gt")
    db.add_payload("gt", "BeamEnergy", {"ecm_gev": 10.5823, "ecm_err_gev": 0.0004}, IOV(1, 1, 1, 2))
    db.close()
    lookup = ecm_for_runs(ctx, opts, runs)
    assert lookup.values == {RunId(1, 1): 10.5823, RunId(1, 2): 10.5823} and lookup.missing == [RunId(1, 3)]
    assert lookup.fraction == pytest.approx(2 / 3) and lookup.frame()["ecm_err_gev"].tolist() == [0.0004, 0.0004]
    with pytest.raises(InputError, match=r"cond.sqlite \(global tag chain \['gt'\]\): no BeamEnergy payload for run 1:3"):
        ecm_for_runs(ctx, {**opts, "on_missing_ecm": "fail"}, runs)
    assert ecm_for_runs(ctx, {**opts, "ecm_source": "nominal"}, runs).values == {}
    with pytest.raises(ParameterError, match="ecm_source = 'beam'"):
        ecm_for_runs(ctx, {**opts, "ecm_source": "beam"}, runs)
    db = ConditionsDB(db_path)
    db.set_state("gt", "INVALID", by="test")
    db.close()
    with pytest.raises(TagStateError, match="INVALID"):
        ecm_for_runs(ctx, opts, runs)
