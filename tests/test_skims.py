"""Skim validation: selection language, statistics, outputs, reference comparison, bad input."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
from hypothesis import given, settings
from hypothesis import strategies as st

from dpnb.errors import InputError, ParameterError, SchemaError
from dpnb.io.events import Chunk, read_branches
from dpnb.skims.columns import ChunkColumns, detector_columns
from dpnb.skims.definitions import load_skims, skim_from_mapping
from dpnb.skims.expr import SkimExpressionError, compile_expression
from dpnb.skims.reference import (
    chi2_two_sample,
    combined_mc_retention,
    compare_quantity,
    ks_two_sample_binned,
    load_reference,
    overlap_fractions,
)
from dpnb.skims.run import EmptySampleError, compile_histograms, file_columns, run_sample
from dpnb.skims.validate import SampleInput, run_validation

REPO = Path(__file__).resolve().parents[1]
REAL = Path(__file__).resolve().parents[2] / "shared/data/real"
ZMUMU = REAL / "uproot-Zmumu.root"


def _real(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"real public file {path} not found (shared/data/real absent)")
    return path


# --- synthetic events in dpnb's schema ---------------------------------------------------------


def _synthetic(rng, n, run=1):
    """Event columns in dpnb's layout: flat dict, per-track lists, per-cluster lists."""
    ntrk = rng.integers(0, 9, n)
    nclus = rng.integers(0, 6, n)
    tot_t, tot_c = int(ntrk.sum()), int(nclus.sum())
    return {
        "exp": np.ones(n, dtype=np.int32),
        "run": np.full(n, run, dtype=np.int32),
        "event": np.arange(n, dtype=np.int64),
        "hlt_bits": rng.integers(0, 16, n).astype(np.uint32),
        "ntrk": ntrk,
        "nclus": nclus,
        "trk_px": rng.normal(0, 1.0, tot_t).astype(np.float32),
        "trk_py": rng.normal(0, 1.0, tot_t).astype(np.float32),
        "trk_pz": rng.normal(0, 1.5, tot_t).astype(np.float32),
        "trk_charge": rng.choice(np.array([-1, 1], dtype=np.int32), tot_t),
        "trk_d0": rng.normal(0, 1.5, tot_t).astype(np.float32),
        "trk_z0": rng.normal(0, 3.0, tot_t).astype(np.float32),
        "clus_energy": rng.exponential(1.5, tot_c).astype(np.float32),
    }


def _write_events(path, ev):
    """Write synthetic events with uproot (trk_* / clus_* sharing counters ntrk / nclus)."""
    trk = {k[4:]: ak.unflatten(ev[k], ev["ntrk"]) for k in ev if k.startswith("trk_")}
    clus = {k[5:]: ak.unflatten(ev[k], ev["nclus"]) for k in ev if k.startswith("clus_")}
    data = {**{k: ev[k] for k in ("exp", "run", "event", "hlt_bits")}, "trk": ak.zip(trk), "clus": ak.zip(clus)}
    with uproot.recreate(path) as f:
        t = f.mktree("events", {k: (v.type.content if isinstance(v, ak.Array) else v.dtype) for k, v in data.items()})
        if len(ev["event"]):
            t.extend(data)
    return path


def _chunk(ev) -> Chunk:
    n = len(ev["event"])
    c = Chunk("synthetic", 0, n)
    c.flat = {k: ev[k] for k in ("exp", "run", "event", "hlt_bits")}
    for coll, cnt in (("trk", "ntrk"), ("clus", "nclus")):
        off = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(ev[cnt], out=off[1:])
        for k in ev:
            if k.startswith(coll + "_"):
                c.values[k] = ev[k]
                c.offsets[k] = off
    return c


HADRONIC = "count(trk_pt > 0.2 and abs(trk_d0) < 2 and abs(trk_z0) < 4) >= 3 and not (e_clus_max > 4.0 and ntrk == 2)"


def _hadronic_python(ev):
    """The hadronic selection written as plain Python loops over events."""
    out = []
    t = c = 0
    for i in range(len(ev["event"])):
        good = 0
        for j in range(t, t + ev["ntrk"][i]):
            x, y = float(ev["trk_px"][j]), float(ev["trk_py"][j])
            pt = np.sqrt(x * x + y * y)
            good += pt > 0.2 and abs(float(ev["trk_d0"][j])) < 2 and abs(float(ev["trk_z0"][j])) < 4
        emax = max((float(e) for e in ev["clus_energy"][c : c + ev["nclus"][i]]), default=0.0)
        out.append(good >= 3 and not (emax > 4.0 and ev["ntrk"][i] == 2))
        t += ev["ntrk"][i]
        c += ev["nclus"][i]
    return np.array(out)


def test_expression_matches_python_reference():
    ev = _synthetic(np.random.default_rng(1), 2000)
    expr = compile_expression(HADRONIC, detector_columns())
    got = expr.evaluate(ChunkColumns(_chunk(ev), 2))
    expect = _hadronic_python(ev)
    np.testing.assert_array_equal(got, expect)
    assert 0.1 < expect.mean() < 0.9
    assert expr.branches == ["clus_energy", "trk_d0", "trk_px", "trk_py", "trk_z0"]


def test_fused_good_track_count_equals_generic_path():
    """The good-track conjunction runs as a fused kernel; a variant that defeats the pattern
    (an extra always-true cut) takes the generic numpy path and must give the same events."""
    from dpnb.skims.expr import _good_track_cuts

    cols_set = detector_columns()
    fused = compile_expression("count(abs(trk_z0) < 4 and trk_pt > 0.2 and abs(trk_d0) < 2) >= 3", cols_set)
    generic = compile_expression("count(abs(trk_z0) < 4 and trk_pt > 0.2 and abs(trk_d0) < 2 and trk_pt > -1) >= 3",
                                 cols_set)
    assert _good_track_cuts(fused.root.left.args[0]) == (0.2, 2.0, 4.0)
    assert _good_track_cuts(generic.root.left.args[0]) is None
    ev = _synthetic(np.random.default_rng(9), 3000)
    cols = ChunkColumns(_chunk(ev), 2)
    a, b = fused.evaluate(cols), generic.evaluate(cols)
    np.testing.assert_array_equal(a, b)
    off = np.append(0, np.cumsum(ev["ntrk"]))
    x, y = ev["trk_px"].astype(np.float64), ev["trk_py"].astype(np.float64)
    good = (np.sqrt(x * x + y * y) > 0.2) & (np.abs(ev["trk_d0"].astype(np.float64)) < 2) & (np.abs(ev["trk_z0"]) < 4)
    expect = np.array([good[off[i]:off[i + 1]].sum() >= 3 for i in range(len(off) - 1)])
    np.testing.assert_array_equal(a, expect)
    assert 0.2 < a.mean() < 0.9


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.0, 2.0), st.integers(0, 5), st.sampled_from(["hlt_hadron", "hlt_bhabha"]))
def test_expression_properties(seed, pt_cut, n_min, bit_name):
    """Random cuts: the language agrees with numpy written by hand (sum/max/any/hlt/broadcast)."""
    from dpnb.detector import HLT_BITS

    ev = _synthetic(np.random.default_rng(seed), 50)
    cols = ChunkColumns(_chunk(ev), 1)
    text = (f"(count(trk_pt > {pt_cut!r}) >= {n_min} or any(clus_energy > 2 * {pt_cut!r})) "
            f"and not hlt('{bit_name}') and sum(trk_charge) >= -1 and max(trk_pz) < 3.5 "
            f"and all(abs(trk_z0) < 9 + 0 * ntrk)")
    got = compile_expression(text, detector_columns()).evaluate(cols)
    expect = []
    t = c = 0
    for i in range(50):
        sl, cl = slice(t, t + ev["ntrk"][i]), slice(c, c + ev["nclus"][i])
        x, y = ev["trk_px"][sl].astype(np.float64), ev["trk_py"][sl].astype(np.float64)
        pt = np.sqrt(x * x + y * y)
        a = (pt > pt_cut).sum() >= n_min or bool((ev["clus_energy"][cl] > 2 * pt_cut).any())
        b = not (int(ev["hlt_bits"][i]) >> HLT_BITS[bit_name]) & 1
        pz_max = ev["trk_pz"][sl].max() if ev["ntrk"][i] else -np.inf
        expect.append(a and b and ev["trk_charge"][sl].sum() >= -1 and pz_max < 3.5 and bool((abs(ev["trk_z0"][sl]) < 9).all()))
        t += ev["ntrk"][i]
        c += ev["nclus"][i]
    np.testing.assert_array_equal(got, np.array(expect, dtype=bool))


def test_unknown_column_lists_columns_that_exist():
    with pytest.raises(SkimExpressionError) as exc:
        compile_expression("count(trk_ptt > 0.2) >= 3", detector_columns(), where="hadronic.yaml: skim 'hadronic'")
    msg = str(exc.value)
    assert "unknown column 'trk_ptt'" in msg and "did you mean 'trk_pt'" in msg
    assert "columns that exist" in msg and "trk_d0" in msg and "clus_energy" in msg and "ntrk" in msg
    assert "hadronic.yaml: skim 'hadronic', column 7" in msg


@pytest.mark.parametrize(
    ("text", "col", "what"),
    [
        ("count(trk_pt > 0.2 >= 3", 20, "chained comparison"),
        ("ntrk >= 3 andd ntrk < 5", 11, "unexpected 'andd'"),
        ("ntrk >= 3 and (nclus > 2", 25, "expected ')'"),
        ("ntrk >= 3 $ nclus", 11, "unexpected character '$'"),
        ("trk_pt > 1", 8, "per object"),
        ("ntrk + 1", 6, "must be a condition"),
        ("count(trk_pt > 0.2 and clus_energy > 1) > 1", 20, "mixes per-object columns"),
    ],
)
def test_syntax_errors_show_position(text, col, what):
    with pytest.raises(SkimExpressionError) as exc:
        compile_expression(text, detector_columns(), where="sel")
    msg = str(exc.value)
    assert f"sel, column {col}: " in msg and what in msg
    lines = msg.splitlines()
    assert lines[-2].strip() == text
    # the caret sits under the reported column
    assert lines[-1].index("^") - lines[-2].index(text[0]) == col - 1


def test_skim_files_of_the_project_load_and_validate():
    skims = load_skims(["parameters/skims/*.yaml"], root=REPO)
    names = {s.name for s in skims}
    assert names == {"hadronic", "dimuon", "bhabha", "tau_pair", "gamma_gamma", "low_multiplicity"}
    for s in skims:
        assert s.owner and s.description and 0 < s.retention_ceiling <= 1
    with pytest.raises(ParameterError) as exc:
        skim_from_mapping({"name": "x", "owner": "o", "selection": "ntrk > 1", "retention_cieling": 0.2}, source="x.yaml")
    assert "unknown key 'retention_cieling'" in str(exc.value) and "'description' is required" in str(exc.value)


# --- statistics ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("skimdata")
    rng = np.random.default_rng(5)
    evs = [_synthetic(rng, 1500, run=1), _synthetic(rng, 900, run=2)]
    files = [_write_events(d / f"r{i}.root", ev) for i, ev in enumerate(evs)]
    return files, evs


def _skims():
    cols = detector_columns()
    return [
        skim_from_mapping({"name": "had", "owner": "a", "description": "d", "selection": HADRONIC,
                           "candidates": "trk_pt > 0.2 and abs(trk_d0) < 2 and abs(trk_z0) < 4"}, cols),
        skim_from_mapping({"name": "two", "owner": "b", "description": "d", "selection": "ntrk == 2 and sum(trk_charge) == 0",
                           "retention_ceiling": 0.01}, cols),
        skim_from_mapping({"name": "tau", "owner": "c", "description": "d", "selection": {"function": "tau_pair"}}, cols),
    ]


def test_statistics_against_independent_counts(synthetic_files, tmp_path):
    files, evs = synthetic_files
    skims = _skims()
    hists, _ = compile_histograms({"ntrk": {"expression": "ntrk", "bins": 10, "range": [0, 10]},
                                   "pt": {"expression": "trk_pt", "bins": 20, "range": [0, 4]}}, detector_columns())
    res = run_sample(skims, files, "synthetic", histograms=hists, output_dir=tmp_path, step_size=700, n_threads=2)
    n = sum(len(e["event"]) for e in evs)
    had = np.concatenate([_hadronic_python(e) for e in evs])
    two = np.concatenate([(e["ntrk"] == 2) & (np.add.reduceat(np.append(e["trk_charge"], 0),
                           np.append(0, np.cumsum(e["ntrk"]))[:-1]) * (e["ntrk"] > 0) == 0) for e in evs])
    st_had, st_two = res.stats["had"], res.stats["two"]
    assert res.n_input_events == n == st_had.n_input_events
    assert st_had.n_selected_events == int(had.sum())
    assert st_two.n_selected_events == int(two.sum())
    assert st_had.retention == pytest.approx(had.mean())
    # candidate multiplicity = good tracks of the selected events, counted independently
    good = []
    for e in evs:
        x, y = e["trk_px"].astype(np.float64), e["trk_py"].astype(np.float64)
        pt = np.sqrt(x * x + y * y)
        g = (pt > 0.2) & (np.abs(e["trk_d0"]) < 2) & (np.abs(e["trk_z0"]) < 4)
        off = np.append(0, np.cumsum(e["ntrk"]))
        good.append(np.array([g[off[i]:off[i + 1]].sum() for i in range(len(off) - 1)]))
    good = np.concatenate(good)
    assert st_had.mean_multiplicity == pytest.approx(good[had].mean())
    # histograms: ntrk of selected events, track pt of selected events
    ntrk = np.concatenate([e["ntrk"] for e in evs])
    np.testing.assert_array_equal(res.histograms["had"]["ntrk"], np.histogram(ntrk[had], 10, (0, 10))[0])
    # overlap: diagonal = selected events, off-diagonal = both
    assert res.overlap_counts[0, 0] == had.sum() and res.overlap_counts[0, 1] == int((had & two).sum())
    # real ROOT output: the selected events, readable, with the input's track content
    out = uproot.open(st_had.output_file)["events"]
    assert out.num_entries == had.sum()
    px = out["trk_px"].array()
    assert int(ak.sum(ak.num(px))) == int(np.concatenate([e["ntrk"] for e in evs])[had].sum())
    assert st_had.output_file_bytes == Path(st_had.output_file).stat().st_size > st_had.output_bytes
    assert st_had.output_bytes == sum(int(out[b].compressed_bytes) for b in out.keys()) > 0
    assert st_had.size_kb_per_input_event == pytest.approx(st_had.output_bytes / 1000 / n)
    assert st_had.size_kb_per_selected_event == pytest.approx(st_had.output_bytes / 1000 / had.sum())
    # the skim keeping fewer events writes a smaller file
    assert st_two.output_bytes < st_had.output_bytes
    assert 0 < st_had.retention_bytes < 1.5
    assert st_had.cpu_ms_per_event >= 0 and st_had.wall_ms_per_event > 0
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left
    assert st_had.n_written_rows == st_had.n_selected_rows
    # capped output: 150 rows written, sizes scaled to all selected rows stay close
    capped = run_sample(skims[:1], files, "capped", output_dir=tmp_path, step_size=700, max_output_rows=150)
    c = capped.stats["had"]
    assert c.n_written_rows == 150 == uproot.open(c.output_file)["events"].num_entries
    assert c.n_selected_events == st_had.n_selected_events
    assert c.size_kb_per_selected_event == pytest.approx(st_had.size_kb_per_selected_event, rel=0.2)


def test_ceiling_exceeded_is_a_fail_verdict_not_a_crash(synthetic_files, tmp_path):
    files, evs = synthetic_files
    skims = _skims()
    v = run_validation(skims, [SampleInput("data", files)], {"histograms": {}, "write_outputs": False})
    two = v.verdicts["two"]
    assert two["retention"] > 0.01  # the synthetic events have many 2-track neutral events
    assert two["ceiling_verdict"] == "fail" and two["verdict"] == "fail"
    assert two["reference_verdict"] == "no reference"
    assert v.verdicts["had"]["retention_ceiling"] == 0.10


def test_empty_sample(tmp_path, synthetic_files):
    files, _ = synthetic_files
    empty = _write_events(tmp_path / "empty.root", _synthetic(np.random.default_rng(0), 0))
    with pytest.raises(EmptySampleError, match="sample 'void': no events in .*empty.root.*retention is undefined"):
        run_sample(_skims(), [empty], "void", output_dir=tmp_path)
    assert not list(tmp_path.glob("*_void.root")) and not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(EmptySampleError, match="no input files"):
        run_sample(_skims(), [], "none")
    # in a validation an empty sample is skipped and listed; the others are still judged
    v = run_validation(_skims(), [SampleInput("void", [empty]), SampleInput("data", files)], {"write_outputs": False})
    assert "void" in v.skipped and "data" in v.results
    with pytest.raises(EmptySampleError, match="no sample has events"):
        run_validation(_skims(), [SampleInput("void", [empty])], {"write_outputs": False})


# --- the real CMS dimuon file ---------------------------------------------------------------------

ZMUMU_SCHEMA = {"run": "Run", "event": "Event"}


def test_dimuon_skim_on_real_zmumu_counts_distinct_events(tmp_path):
    path = _real(ZMUMU)
    cols, branches = file_columns(path, ZMUMU_SCHEMA)
    assert "run" in branches and "Run" not in branches
    sel = "M > 80 and M < 100 and Q1 * Q2 < 0 and pt1 > 25 and pt2 > 25 and abs(eta1) < 2.1"
    skim = skim_from_mapping({"name": "zmumu", "owner": "t", "description": "Z to mu mu", "selection": sel}, cols)
    hists, skipped = compile_histograms({"M": {"expression": "M", "bins": 30, "range": [60, 120]},
                                         "ntrk": {"expression": "ntrk", "bins": 5, "range": [0, 5]}}, cols)
    assert skipped == ["ntrk"]
    res = run_sample([skim], [path], "cms2010", schema=ZMUMU_SCHEMA, histograms=hists, output_dir=tmp_path)
    # independent count with uproot + python sets
    a = uproot.open(path)["events"].arrays(["Run", "Event", "M", "Q1", "Q2", "pt1", "pt2", "eta1"], library="np")
    m = (a["M"] > 80) & (a["M"] < 100) & (a["Q1"] * a["Q2"] < 0) & (a["pt1"] > 25) & (a["pt2"] > 25) & (np.abs(a["eta1"]) < 2.1)
    all_events = set(zip(a["Run"].tolist(), a["Event"].tolist()))
    sel_events = set(zip(a["Run"][m].tolist(), a["Event"][m].tolist()))
    st = res.stats["zmumu"]
    assert len(all_events) == 500 == st.n_input_events
    assert st.n_input_rows == 2304
    assert st.n_selected_events == len(sel_events)
    assert st.n_selected_rows == int(m.sum())
    assert st.n_selected_rows > st.n_selected_events  # several candidate rows per event
    assert 0 < st.retention < 1
    # candidate multiplicity: passing rows per selected event
    from collections import Counter

    per_event = Counter(zip(a["Run"][m].tolist(), a["Event"][m].tolist()))
    assert st.mean_multiplicity == pytest.approx(np.mean(list(per_event.values())))
    np.testing.assert_array_equal(res.histograms["zmumu"]["M"], np.histogram(a["M"][m], 30, (60, 120))[0])
    out = uproot.open(st.output_file)["events"]
    assert out.num_entries == int(m.sum()) and sorted(set(out["run"].array(library="np").tolist())) == [148029, 148031]


def test_unknown_column_in_real_file_lists_its_columns():
    path = _real(ZMUMU)
    cols, _ = file_columns(path, ZMUMU_SCHEMA)
    with pytest.raises(SkimExpressionError) as exc:
        skim_from_mapping({"name": "z", "owner": "t", "description": "d", "selection": "mass > 60"}, cols, "z.yaml")
    msg = str(exc.value)
    assert "unknown column 'mass'" in msg and "'M'" in msg and "'pt1'" in msg and "'run'" in msg


# --- reference comparison -------------------------------------------------------------------------


def test_chi2_and_ks_tests():
    rng = np.random.default_rng(2)
    edges = np.linspace(0, 10, 21)
    a = np.histogram(rng.normal(5, 2, 20000), edges)[0]
    b = np.histogram(rng.normal(5, 2, 5000), edges)[0]
    c = np.histogram(rng.normal(5.5, 2, 5000), edges)[0]
    chi2, ndf, p_same = chi2_two_sample(a, b)
    assert ndf == 19 and p_same > 1e-3
    # the chi2 formula by hand for a 2-bin case: (N_b a - N_a b)^2 / (N_a N_b (a + b))
    chi2_2, ndf_2, _ = chi2_two_sample([30, 70], [20, 30])
    expect = ((50 * 30 - 100 * 20) ** 2 / 50 + (50 * 70 - 100 * 30) ** 2 / 100) / (100 * 50)
    assert ndf_2 == 1 and chi2_2 == pytest.approx(expect)
    assert chi2_two_sample(a, c)[2] < 1e-6
    d, p = ks_two_sample_binned(a, c)
    assert d > 0.05 and p < 1e-6
    assert ks_two_sample_binned(a, b)[1] > 1e-3


def test_compare_quantity_and_combined_retention():
    tol = {"warn": 0.05, "fail": 0.2, "abs": 0.001}
    assert compare_quantity(0.100, 0.102, tol)[0] == "pass"
    assert compare_quantity(0.100, 0.110, tol)[0] == "warn"
    assert compare_quantity(0.100, 0.150, tol)[0] == "fail"
    assert compare_quantity(0.0105, 0.01, tol)[0] == "pass"  # within the absolute floor
    assert compare_quantity(5.0, 1.0, {"warn": 1.0, "fail": None})[0] == "warn"  # never fails
    assert compare_quantity(None, 1.0, tol)[0] == "fail"
    r = combined_mc_retention({"a": 0.5, "b": 0.1}, {"a": 1.0, "b": 3.0})
    assert r == pytest.approx((0.5 * 1 + 0.1 * 3) / 4)
    f = overlap_fractions(np.array([[10, 5], [5, 20]]))
    np.testing.assert_allclose(f, [[1.0, 0.5], [0.25, 1.0]])


def test_reference_round_trip_and_changes(synthetic_files, tmp_path):
    files, _ = synthetic_files
    opts = {"histograms": {"ntrk": {"expression": "ntrk", "bins": 10, "range": [0, 10]},
                           "pt": {"expression": "trk_pt", "bins": 20, "range": [0, 4]}},
            "tolerances": {"retention": {"warn": 0.05, "fail": 0.15, "abs": 0.0},
                           "mean_multiplicity": {"warn": 0.05, "fail": 0.15, "abs": 0.0}},
            "write_outputs": False}
    skims = [s for s in _skims() if s.name != "two"]
    v1 = run_validation(skims, [SampleInput("data", files)], opts)
    ref_file = tmp_path / "skim_reference.json"
    ref_file.write_text(json.dumps(v1.reference_payload("v1")))
    ref = load_reference(ref_file)
    v2 = run_validation(skims, [SampleInput("data", files)], opts, reference=ref)
    assert all(d["reference_verdict"] == "pass" for d in v2.verdicts.values())
    assert v2.verdicts["had"]["ceiling_verdict"] == "fail"  # 48 % of the synthetic events, ceiling 10 %
    assert all(r["p_value"] == pytest.approx(1.0) for r in v2.histogram_test_rows)
    # the same reference given inline (a mapping in the parameters), compared with KS
    inline = load_reference(json.loads(ref_file.read_text()))
    v2k = run_validation(skims, [SampleInput("data", files)], {**opts, "histogram_test": "ks"}, reference=inline)
    assert {r["test"] for r in v2k.histogram_test_rows} == {"ks"}
    assert all(r["verdict"] == "pass" and r["statistic"] == 0.0 for r in v2k.histogram_test_rows)
    with pytest.raises(ParameterError, match="histogram test 'kolmogorov': expected 'chi2' or 'ks'"):
        run_validation(skims, [SampleInput("data", files)], {**opts, "histogram_test": "kolmogorov"}, reference=inline)
    # a changed selection: fewer events -> retention fails, histograms differ
    cols = detector_columns()
    tighter = skim_from_mapping({"name": "had", "owner": "a", "description": "d",
                                 "selection": HADRONIC.replace(">= 3", ">= 4")}, cols)
    v3 = run_validation([tighter], [SampleInput("data", files)], opts, reference=ref)
    rows = {r["quantity"]: r for r in v3.comparison_rows}
    assert rows["retention"]["verdict"] == "fail"
    assert rows["retention"]["value"] < rows["retention"]["reference"]
    ntrk_test = [r for r in v3.histogram_test_rows if r["variable"] == "ntrk"][0]
    assert ntrk_test["verdict"] == "fail" and ntrk_test["p_value"] < 1e-3
    assert v3.verdicts["had"]["reference_verdict"] == "fail"


def test_reference_of_another_schema_version(tmp_path):
    bad = tmp_path / "skim_reference.json"
    bad.write_text(json.dumps({"schema": 99, "kind": "dpnb.skim_reference", "statistics": [], "histograms": []}))
    with pytest.raises(SchemaError, match=r"skim_reference.json: skim reference of schema version 99, this dpnb reads version 1"):
        load_reference(bad)
    res = tmp_path / "results.json"
    res.write_text(json.dumps({"schema": 0, "notebook": "skim_validation", "tables": {}}))
    with pytest.raises(SchemaError, match="results.json of schema version 0"):
        load_reference(res)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": 1, "notebook": "calibration_t0"}))
    with pytest.raises(SchemaError, match="not a skim reference"):
        load_reference(other)
    with pytest.raises(InputError, match="reference file not found"):
        load_reference(tmp_path / "missing.json")
    assert load_reference(None) is None


# --- the simulated tiny dataset: skims against the true process --------------------------------------


def test_project_skims_on_tiny_dataset_against_truth(tiny_dataset, tmp_path):
    """Each physics skim keeps its own process and (almost) nothing of the others; the
    σ-weighted combined MC retention is computed by hand from per-sample counts."""
    from dpnb.detector import PROCESS_IDS
    from dpnb.skims.validate import cross_sections_for

    skims = load_skims(["parameters/skims/*.yaml"], root=REPO)
    mc = tiny_dataset / "mc"
    names = ["mumu", "ee", "gammagamma", "uubar", "taupair"]
    samples = [SampleInput(n, [mc / f"{n}.root"], n) for n in names]
    sigma, tag = cross_sections_for(names, "toy_generator", 1, prescaled=True)
    assert tag == "toy_generator_v1" and sigma["ee"] == pytest.approx(74.4 * 0.02)
    v = run_validation(skims, samples, {"histograms": {}, "write_outputs": False}, sigma_nb=sigma)
    r = {(row["skim"], row["sample"]): row["retention"] for row in v.stat_rows}
    assert r[("dimuon", "mumu")] > 0.9 and r[("bhabha", "ee")] > 0.9 and r[("gamma_gamma", "gammagamma")] > 0.9
    assert r[("hadronic", "uubar")] > 0.8 and r[("tau_pair", "taupair")] > 0.3
    for skim, own in (("dimuon", "mumu"), ("bhabha", "ee"), ("gamma_gamma", "gammagamma")):
        for other in names:
            if other != own:
                assert r[(skim, other)] < 0.01, (skim, other)
    expect = sum(r[("dimuon", n)] * sigma[n] for n in names) / sum(sigma.values())
    assert v.combined["dimuon"] == pytest.approx(expect)
    # on data, the dimuon skim's events are (nearly) all true mu-mu: independent count via true_process
    data_files = sorted((tiny_dataset / "raw").glob("e*/r*.root"))[:2]
    vd = run_validation([s for s in skims if s.name == "dimuon"], [SampleInput("data", data_files)],
                        {"histograms": {}, "write_outputs": False})
    n_mumu = sum(int((read_branches(f, ["true_process"])["true_process"] == PROCESS_IDS["mumu"]).sum()) for f in data_files)
    n_sel = vd.results["data"].stats["dimuon"].n_selected_events
    assert abs(n_sel - n_mumu) <= 0.05 * n_mumu + 2


def test_prepare_from_notebook_context(tiny_dataset, tmp_path, monkeypatch):
    """The notebook's options resolve from parameters/defaults/skim_validation.yaml."""
    import dpnb
    from dpnb.skims.validate import prepare

    monkeypatch.delenv("DPNB_BUCKET_FILE", raising=False)
    ns = {"label": "skimtest", "runs": ["1:1-99"], "data": {"root": str(tiny_dataset)}, "reports_dir": str(tmp_path),
          "output_dir": str(tmp_path / "out")}
    ctx = dpnb.notebook_context("skim_validation", ns)
    assert ctx.options["histogram_test"] == "chi2" and ctx.options["reference"] is None
    plan = prepare(ctx)
    assert [s.name for s in plan.skims] == sorted(s.name for s in plan.skims) and len(plan.skims) == 6
    mc = [s for s in plan.samples if s.process is not None]
    data = [s for s in plan.samples if s.name == "data"][0]
    import pandas as pd

    inventory = pd.read_csv(tiny_dataset / "mc" / "samples.csv")
    assert [s.name for s in mc] == list(inventory["sample"])
    registry = pd.read_csv(tiny_dataset / "runs.csv")
    good = registry[(registry["dq_flag"] == "good") & registry["run_type"].isin(["4S", "continuum", "scan"])]
    assert len(data.files) == len(good)
    assert plan.sigma_nb["mumu"] == pytest.approx(1.148) and plan.cross_section_tag == "toy_generator_v1"
    assert plan.reference is None
    # a reference of another schema version named in the options stops before any event is read
    bad = tmp_path / "old_reference.json"
    bad.write_text(json.dumps({"schema": 0, "kind": "dpnb.skim_reference", "statistics": [], "histograms": []}))
    ctx2 = dpnb.notebook_context("skim_validation", {**ns, "reference": str(bad)})
    with pytest.raises(SchemaError, match="old_reference.json: skim reference of schema version 0"):
        prepare(ctx2)


# --- fused selections -----------------------------------------------------------------------------
FUSED_CASES = [
    HADRONIC,
    "count(trk_pt > 0.5 * max(trk_pt) and abs(trk_d0) < 1) >= 2 and not hlt('hlt_mumu_2trk')",
    "e_clus_total / ntrk > 1.5 or nclus == 0",  # 0 tracks: division by zero gives inf / nan
    "sqrt(trk_pz_sum_proxy) >= 0".replace("trk_pz_sum_proxy", "sum(trk_pz)"),  # sqrt of negatives: nan
    "min(clus_energy) < 0.5 or max(trk_costheta) > 0.9 or any(trk_p > 3)",
    "all(trk_charge != 0) and -sum(trk_charge) <= 1 and any(abs(trk_z0) < 1 + 0 * e_clus_max)",
    "m_2trk > 0.8 and ntrk_lead_hemi >= 1 and ntrk_opp_hemi >= 1",  # NaN m_2trk for < 2 tracks
    "count(trk_pt > 0.2) == ntrk and not (e_clus_max > 4.0 and ntrk == 2) and hlt('hlt_hadron')",
    "any(trk_costheta < -0.5 and trk_pt > min(trk_pt) + 0.1) or count(clus_energy > 2) >= 2",
]


@pytest.mark.parametrize("text", FUSED_CASES)
@pytest.mark.parametrize("n_threads", [1, 2])
def test_fused_selection_equals_numpy_evaluation(text, n_threads, monkeypatch):
    import dpnb.kernels.hist

    monkeypatch.setattr(dpnb.kernels.hist, "MIN_ENTRIES_PER_THREAD", 1)  # let small inputs take the parallel kernel
    ev = _synthetic(np.random.default_rng(zlib.crc32(text.encode())), 3000)
    ev["clus_energy"][::7] = 0.0
    expr = compile_expression(text, detector_columns())
    fused = expr.evaluate(ChunkColumns(_chunk(ev), n_threads))
    plain = expr.evaluate(ChunkColumns(_chunk(ev), n_threads), fused=False)
    assert expr._fused, "expected the fused kernel"
    assert fused.dtype == np.bool_ and fused.shape == (3000,)
    np.testing.assert_array_equal(fused, plain)
    assert 0 < fused.sum() < 3000  # a selection that selects some events, not all


def test_fused_kernels_are_cached_as_files_and_not_used_where_they_do_not_apply(monkeypatch):
    from dpnb.kernels import _jit
    from dpnb.skims.fused import _module_dir, fuse

    expr = compile_expression(FUSED_CASES[1], detector_columns())
    ev = _synthetic(np.random.default_rng(3), 100)
    expr.evaluate(ChunkColumns(_chunk(ev), 1))
    src = expr._fused.source
    files = [p for p in _module_dir().glob("sel_*.py") if p.read_text() == src]
    assert len(files) == 1 and str(files[0]).startswith(str(_jit.cache_dir))
    mtime = files[0].stat().st_mtime_ns
    again = compile_expression(FUSED_CASES[1], detector_columns())
    again.evaluate(ChunkColumns(_chunk(ev), 1))
    assert files[0].stat().st_mtime_ns == mtime  # not rewritten: numba's disk cache stays valid
    # per-object values and numbers keep the numpy evaluation; so does the switch
    assert fuse(compile_expression("trk_pt * 2", detector_columns(), want="value")) is None
    assert fuse(compile_expression("sum(trk_pz)", detector_columns(), want="value")) is None
    monkeypatch.setenv("DPNB_FUSE_SELECTIONS", "0")
    assert fuse(compile_expression(FUSED_CASES[0], detector_columns())) is None
