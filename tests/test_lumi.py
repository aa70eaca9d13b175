"""dpnb.lumi: messy-data rules, integration vs independent sums, tables, simulated and real data."""

import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dpnb import lumi
from dpnb.errors import InputError, ParameterError
from dpnb.io import lumi_files as lf

REAL = Path(__file__).resolve().parents[2] / "shared/data/real"
LUMI_SMALL = REAL / "lumi_small.csv"
T0 = 1.7e9


def _write(tmp_path, rows, fill=9001, header="test"):
    """Write raw lines (tuples or strings) as a Massi lumi file and return its path."""
    p = lf.massi_paths(tmp_path, fill, "TOY")["lumi"]
    p.parent.mkdir(parents=True, exist_ok=True)
    text = [f"# {header}"] + [r if isinstance(r, str) else " ".join(repr(float(v)) for v in r) for r in rows]
    p.write_text("\n".join(text) + "\n")
    return p


def _rows(n=30, l0=1000.0):
    return [(T0 + 60 * i, 1.0, l0 * (1 - 0.01 * i), 10.0, 1.0, 0.01) for i in range(n)]


def _loop_integral_pb(rows, bin_s=60.0, gap_factor=3.0):
    """Independent computation: plain Python over (time, stab, l) already clean and sorted."""
    total = 0.0
    for i, (t, s, l, *_rest) in enumerate(rows):
        d = rows[i + 1][0] - t if i + 1 < len(rows) else bin_s
        if d > gap_factor * bin_s:
            d = bin_s
        total += d * s * l
    return total * 1e-6


def _load(tmp_path, rows, **opts):
    p = _write(tmp_path, rows)
    o = lumi.CleanOptions(**opts)
    return lumi.clean_fill(lf.read_massi_lumi(p, o.on_bad_line), o), p


def _kinds(s):
    out = {}
    for f in s.findings:
        out[f.kind] = out.get(f.kind, 0) + 1
    return out


def test_clean_file_integral_vs_loop(tmp_path):
    rows = _rows()
    s, _ = _load(tmp_path, rows)
    assert s.findings == [] and s.nominal_bin_s == 60.0
    r = lumi.integrate_fill(s)
    assert r["delivered_pb"] == pytest.approx(_loop_integral_pb(rows), rel=1e-13)
    assert r["stat_pb"] == pytest.approx(math.sqrt(30 * (60 * 10.0) ** 2) * 1e-6, rel=1e-13)
    assert r["peak_hz_per_ub"] == 1000.0 and r["stable_time_s"] == 1800.0


def test_duplicate_timestamps_never_double_count(tmp_path):
    rows = _rows()
    dup = list(rows[:10]) + [(rows[9][0], 1.0, 3000.0, 10.0, 1.0, 0.01)] + list(rows[10:])
    s, p = _load(tmp_path, dup)
    assert _kinds(s) == {"duplicate_timestamp": 1}
    f = s.findings[0]
    assert f.where == f"{p}:12" and f.time_s == rows[9][0]
    assert lumi.integrate_fill(s)["delivered_pb"] == pytest.approx(_loop_integral_pb(rows), rel=1e-13)
    s_last, _ = _load(tmp_path, dup, duplicate_policy="last")
    want = _loop_integral_pb(rows[:9] + [(rows[9][0], 1.0, 3000.0)] + rows[10:])
    assert lumi.integrate_fill(s_last)["delivered_pb"] == pytest.approx(want, rel=1e-13)


def test_backwards_timestamps_sort_or_drop(tmp_path):
    rows = _rows()
    swapped = rows[:5] + [rows[6], rows[5]] + rows[7:]
    s, p = _load(tmp_path, swapped)
    assert _kinds(s) == {"backwards_timestamp": 1}
    assert s.findings[0].where == f"{p}:8"  # line 8 holds rows[5] (after the header and 6 rows)
    assert lumi.integrate_fill(s)["delivered_pb"] == pytest.approx(_loop_integral_pb(rows), rel=1e-13)
    s_drop, _ = _load(tmp_path, swapped, backwards_policy="drop")
    want = _loop_integral_pb(rows[:5] + rows[6:])
    assert lumi.integrate_fill(s_drop)["delivered_pb"] == pytest.approx(want, rel=1e-13)


def test_gap_is_not_bridged(tmp_path):
    rows = _rows(20) + [(T0 + 60 * 19 + 3600 + 60 * i, 1.0, 500.0, 10.0, 1.0, 0.01) for i in range(1, 11)]
    s, p = _load(tmp_path, rows)
    assert _kinds(s) == {"gap": 1} and s.findings[0].where == f"{p}:21"
    assert s.longest_gap_s == 3660.0
    r = lumi.integrate_fill(s)
    assert r["delivered_pb"] == pytest.approx(_loop_integral_pb(rows), rel=1e-13)
    assert r["total_time_s"] == 30 * 60.0  # the hour without data is not counted


def test_single_bin_spike_interpolated_or_kept(tmp_path):
    rows = _rows()
    spiky = list(rows)
    spiky[12] = (rows[12][0], 1.0, 1e6, 10.0, 1.0, 0.01)
    s, p = _load(tmp_path, spiky)
    assert _kinds(s) == {"spike": 1} and s.findings[0].where == f"{p}:14"
    fixed = list(rows)
    fixed[12] = (rows[12][0], 1.0, 0.5 * (rows[11][2] + rows[13][2]))
    assert lumi.integrate_fill(s)["delivered_pb"] == pytest.approx(_loop_integral_pb(fixed), rel=1e-13)
    kept, _ = _load(tmp_path, spiky, spike_policy="keep")
    assert lumi.integrate_fill(kept)["delivered_pb"] == pytest.approx(_loop_integral_pb(spiky), rel=1e-13)
    assert lumi.integrate_fill(kept)["peak_hz_per_ub"] == 1e6


def test_partial_stab_is_weighted_and_out_of_range_clipped(tmp_path):
    rows = _rows()
    rows[0] = (rows[0][0], 0.25, *rows[0][2:])
    rows[-1] = (rows[-1][0], 0.6, *rows[-1][2:])
    rows[5] = (rows[5][0], 1.5, *rows[5][2:])
    rows[6] = (rows[6][0], -0.1, *rows[6][2:])
    s, _ = _load(tmp_path, rows)
    assert _kinds(s) == {"partial_stab": 2, "stab_out_of_range": 2}
    clipped = [(t, min(max(st, 0.0), 1.0), l) for t, st, l, *_ in rows]
    r = lumi.integrate_fill(s)
    assert r["delivered_pb"] == pytest.approx(_loop_integral_pb(clipped), rel=1e-13)
    assert r["stable_time_s"] == pytest.approx(60 * (26 + 0.25 + 0.6 + 1.0))


def test_negative_lumi_set_to_zero(tmp_path):
    rows = _rows()
    rows[3] = (rows[3][0], 1.0, -50.0, 10.0, 1.0, 0.01)
    s, _ = _load(tmp_path, rows)
    assert _kinds(s) == {"negative_lumi": 1} and s.n_negative_raw == 1
    rows[3] = (rows[3][0], 1.0, 0.0)
    assert lumi.integrate_fill(s)["delivered_pb"] == pytest.approx(_loop_integral_pb(rows), rel=1e-13)
    assert (s.lumi >= 0).all()


def test_bad_lines_skip_or_fail(tmp_path):
    rows = _rows(10)
    raw = rows[:3] + [f"{T0 + 180} 1 900"] + rows[4:6] + [f"{T0 + 360} 1 900 1 1 1 1"] + rows[7:]
    s, p = _load(tmp_path, raw)
    assert _kinds(s) == {"bad_line": 2}
    assert [f.where for f in s.findings] == [f"{p}:5", f"{p}:8"]
    # the missing bins are not interpolated: the bins before them run to the next sample
    assert lumi.integrate_fill(s)["delivered_pb"] == pytest.approx(_loop_integral_pb(rows[:3] + rows[4:6] + rows[7:]))
    with pytest.raises(InputError, match=rf"{p.name}:5: missing columns"):
        _load(tmp_path, raw, on_bad_line="fail")


def test_bad_options():
    with pytest.raises(ParameterError, match="spike_policy='median'"):
        lumi.CleanOptions(spike_policy="median")
    with pytest.raises(ParameterError, match="gap_factor=0.5"):
        lumi.CleanOptions(gap_factor=0.5)


def test_runs_split_a_fill_without_double_counting(tmp_path):
    rows = _rows(40)
    s, _ = _load(tmp_path, rows)
    t = [r[0] for r in rows]
    reg = pd.DataFrame({"exp": [1, 1, 1], "run": [3, 1, 2], "run_type": ["4S", "4S", "scan"], "fill": [9001] * 3,
                        "start_time": [t[25] + 7.5, t[0], t[10] + 30],
                        "stop_time": [t[39] + 60, t[10] + 30, t[25] + 7.5]})
    runs, findings = lumi.run_table({9001: s}, reg, sys_fraction=0.02)
    assert findings == [] and runs.run.tolist() == [1, 2, 3]
    assert runs.delivered_pb.sum() == pytest.approx(lumi.integrate_fill(s)["delivered_pb"], rel=1e-13)
    # run 2: half of bin 10, bins 11..24, and 7.5 s of bin 25
    want = (30 * rows[10][2] + 60 * sum(r[2] for r in rows[11:25]) + 7.5 * rows[25][2]) * 1e-6
    assert runs.delivered_pb[1] == pytest.approx(want, rel=1e-13)
    assert runs.sys_pb.tolist() == pytest.approx((0.02 * runs.recorded_pb).tolist())
    tot = lumi.bucket_totals(runs)
    assert tot["recorded_fb"] == pytest.approx(runs.recorded_pb.sum() / 1000)
    assert tot["stat_pb"] == pytest.approx(math.sqrt(sum(x * x for x in runs.stat_pb)))
    by = lumi.group_totals(runs)
    assert by.set_index("run_type").n_runs.to_dict() == {"4S": 2, "scan": 1}


def test_run_outside_data_and_missing_fill(tmp_path):
    s, _ = _load(tmp_path, _rows(10))
    reg = pd.DataFrame({"exp": [1, 1], "run": [1, 2], "run_type": ["4S", "4S"], "fill": [9001, 9999],
                        "start_time": [T0 + 300, T0], "stop_time": [T0 + 1200, T0 + 60]})
    runs, findings = lumi.run_table({9001: s}, reg)
    assert sorted(f.kind for f in findings) == ["missing_fill", "run_not_covered"]
    assert np.isnan(runs.delivered_pb[1])
    assert runs.covered_time_s[0] == 300.0


def test_version_comparison(tmp_path):
    old = lf.massi_paths(tmp_path / "old", 9001, "TOY")
    rows = np.array([r for r in _rows(30)])
    lf.write_massi_lumi(old["lumi"], *rows.T)
    lf.write_version_files(old["dir"], "1.0", {"1": "toy", "2": "level", "2 0": "online"})
    new = lf.massi_paths(tmp_path / "new", 9001, "TOY")
    lf.write_massi_lumi(new["lumi"], rows[:, 0], rows[:, 1], 1.02 * rows[:, 2], *rows[:, 3:].T)
    lf.write_version_files(new["dir"], "1.1._3", {"1": "toy", "2": "level", "2 0": "online", "2 1": "offline",
                                                  "_3": "beam-beam correction"})
    a = lumi.load_fills(tmp_path / "old", "TOY")
    b = lumi.load_fills(tmp_path / "new", "TOY")
    cmp = lumi.compare_deliveries(a, b)
    row = cmp.iloc[0]
    assert (row.old_version, row.new_version) == ("1.0", "1.1._3")
    assert row.delta_pb == pytest.approx(0.02 * _loop_integral_pb([tuple(r) for r in rows]), rel=1e-12)
    assert row.delta_rel == pytest.approx(0.02, rel=1e-12)
    assert row.new_annotation == "toy=1; level=1 (offline); _3: beam-beam correction"
    assert lumi.annotation_findings({9001: a[9001], 9002: b[9001]}) == []
    b[9001].annotations.pop("2 0")
    assert [f.detail for f in lumi.annotation_findings({9001: a[9001], 9002: b[9001]})] == [
        "fill 9002: annotation '2 0' ('online' in fill 9001) was removed"]


def test_archived_delivery_loads_like_directories(tmp_path):
    rows = np.array(_rows(12))
    p = lf.massi_paths(tmp_path / "src", 9005, "TOY")
    lf.write_massi_lumi(p["lumi"], *rows.T)
    (tmp_path / "deliv").mkdir()
    lf.write_fill_archive(p["dir"], tmp_path / "deliv" / "9005.zip")
    got = lumi.load_fills(tmp_path / "deliv", "TOY", extract_dir=tmp_path / "x")
    assert list(got) == [9005]
    assert lumi.integrate_fill(got[9005])["delivered_pb"] == pytest.approx(_loop_integral_pb([tuple(r) for r in rows]))


# --- simulated data: the Massi files and run_lumi.csv agree --------------------------------
@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    simulate = pytest.importorskip("dpnb.simulate")
    root = tmp_path_factory.mktemp("lumi_tiny")
    simulate.make_dataset(root / "data", scale="tiny", seed=1)
    return root / "data"


def test_simulated_runs_match_run_lumi_table(tiny_dataset):
    from dpnb.detector import load_geometry

    expt = load_geometry(tiny_dataset).expt
    series = lumi.load_fills(tiny_dataset / "lumi", expt)
    reg = pd.read_csv(tiny_dataset / "runs.csv")
    table = lf.read_run_lumi(tiny_dataset / "lumi" / "run_lumi.csv")
    runs, findings = lumi.run_table(series, reg[reg.fill > 0], table)
    assert len(runs) == (reg.fill > 0).sum() > 0
    np.testing.assert_allclose(runs.massi_pb, runs.table_pb, rtol=1e-12)
    assert not [f for f in findings if f.kind != "version_problem"]
    fills, ffind = lumi.fill_table(series, runs)
    assert ffind == []  # summary files agree with the lumi files
    np.testing.assert_allclose(fills.summary_pb, fills.delivered_pb, rtol=1e-12)
    kinds = {f.kind for s in series.values() for f in s.findings}
    assert kinds <= {"partial_stab", "version_problem"}
    # delivered per fill covers its runs plus the stable beams between and around them
    assert (fills.delivered_pb > fills.recorded_pb).all()
    assert ((fills.stable_fraction > 0) & (fills.stable_fraction < 1)).all()


# --- real data --------------------------------------------------------------------------
@pytest.mark.skipif(not LUMI_SMALL.is_file(), reason=f"real test file {LUMI_SMALL} not present")
def test_real_brilcalc_totals():
    df = lf.read_brilcalc_csv(LUMI_SMALL)
    rec = dl = pu = 0.0
    n = 0
    with LUMI_SMALL.open() as fh:
        for r in csv.reader(fh):
            if r and not r[0].startswith("#"):
                dl += float(r[5])
                rec += float(r[6])
                pu += float(r[7])
                n += 1
    tot = lumi.brilcalc_totals(df, {297056: [(1, 10_000)]})
    assert tot["n_ls"] == tot["n_stable"] == n == 998
    assert tot["recorded_pb"] == pytest.approx(rec, rel=1e-12)
    assert tot["delivered_pb"] == pytest.approx(dl, rel=1e-12)
    assert tot["mean_pileup"] == pytest.approx(pu / n, rel=1e-12)
    assert tot["certified_recorded_pb"] == pytest.approx(df.recorded_pb[df.run == 297056].sum(), rel=1e-12)
    assert 0 < tot["n_certified"] < n


# --- the notebook on tiny simulated data with two messy lines added ----------------------
def test_notebook_on_tiny_data(tiny_dataset, tmp_path, monkeypatch):
    pm = pytest.importorskip("papermill")
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data, ignore=shutil.ignore_patterns("raw", "mc"))
    lumi_file = data / "lumi" / "8001" / "8001_lumi_TOY.txt"
    lines = lumi_file.read_text().splitlines()
    lines.insert(30, lines[29])                 # a duplicate timestamp
    lines.insert(10, "1772410000 1 5.0")        # a line with missing columns
    lumi_file.write_text("\n".join(lines) + "\n")
    bucket = tmp_path / "tiny.yaml"
    bucket.write_text(f"label: tiny\nruns: ['1:1-7']\ndata:\n  root: {data}\n  raw: {tiny_dataset / 'raw'}\n"
                      f"reports_dir: {tmp_path / 'reports'}\n"
                      "notebooks:\n  luminosity_summary:\n    target_fb: 0.0005\n")
    monkeypatch.setenv("DPNB_BUCKET_FILE", str(bucket))
    monkeypatch.setenv("MPLBACKEND", "agg")
    out = tmp_path / "out"
    nb = Path(__file__).resolve().parents[1] / "notebooks" / "luminosity_summary.ipynb"
    pm.execute_notebook(str(nb), str(tmp_path / "out.ipynb"), kernel_name="python3", progress_bar=False,
                        parameters={"output_dir": str(out), "previous_lumi_dir": str(tiny_dataset / "lumi")})
    import json

    res = json.loads((out / "results.json").read_text())
    table = pd.read_csv(tiny_dataset / "lumi" / "run_lumi.csv")
    physics = table[table.run_type.isin(["4S", "continuum", "scan"])]
    v = res["values"]
    assert v["recorded_pb"]["value"] == pytest.approx(physics.lumi_pb.sum(), rel=1e-12)
    assert v["delivered_fb"]["value"] == pytest.approx(physics.lumi_pb.sum() / 1000, rel=1e-10)
    assert v["findings_duplicate_timestamp"]["value"] == 1 and v["findings_bad_line"]["value"] == 1
    assert v["delta_delivered_pb"]["value"] == 0.0 and v["n_fills_changed"]["value"] == 0
    assert res["status"] == "pass" and res["gates"]["target_luminosity"]["verdict"] == "pass"
    runs = pd.read_csv(out / "runs_lumi.csv")
    assert list(runs.columns) == ["exp", "run", "run_type", "fill", "delivered_pb", "recorded_pb", "stat_pb", "sys_pb"]
    merged = runs.merge(physics, on=["exp", "run"])
    assert len(merged) == len(physics) == len(runs)
    np.testing.assert_allclose(merged.delivered_pb, merged.lumi_pb, rtol=1e-12)
    np.testing.assert_array_equal(merged.recorded_pb, merged.lumi_pb)


def test_cli_versions_and_summarize(tmp_path, capsys):
    from dpnb.cli import main

    rows = np.array(_rows(10))
    for fill, ann in ((9001, {"1": "toy", "2": "level"}), (9002, {"1": "toy", "2": "level", "2 1": "offline"})):
        p = lf.massi_paths(tmp_path, fill, "TOY")
        lf.write_massi_lumi(p["lumi"], *rows.T)
        lf.write_version_files(p["dir"], "1.1", ann)
    assert main(["lumi", "versions", str(tmp_path)]) == 0
    lf.write_version_files(tmp_path / "9002", "1.1", {"1": "toy", "2": "processing level"})
    assert main(["lumi", "versions", str(tmp_path)]) == 1
    assert "fill 9002: annotation '2' changed from 'level'" in capsys.readouterr().err
    assert main(["lumi", "summarize", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "9001" in out and "findings: none" in out
