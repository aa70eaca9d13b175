"""Beam spot and dE/dx gain: recovered constants vs injected truth, honest errors, merging, tiny data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dpnb.calibration.beam_spot import BeamSpotSums, fit_beam_spot
from dpnb.calibration.dedx import DimuonSelection, collect_post_tracking, fit_gain
from dpnb.calibration.iov import run_by_run
from dpnb.calibration.timeline import pull_summary
from dpnb.detector import DEDX_RESOLUTION
from dpnb.io.events import run_file
from dpnb.runs import RunId

SIZE = {"x": 0.0015, "y": 0.0008, "z": 0.035}


def _events(rng, n_ev, pos, mean_tracks=6.0):
    """Tracks from per-event vertices drawn from the beam spot; d0 resolution depends on p."""
    counts = 1 + rng.poisson(mean_tracks - 1, n_ev)
    off = np.zeros(n_ev + 1, np.int64)
    np.cumsum(counts, out=off[1:])
    ev = np.repeat(np.arange(n_ev), counts)
    n = ev.size
    phi = rng.uniform(-np.pi, np.pi, n)
    p = rng.gamma(2.0, 0.35, n) + 0.05
    vx = rng.normal(pos[0], SIZE["x"], n_ev)[ev]
    vy = rng.normal(pos[1], SIZE["y"], n_ev)[ev]
    vz = rng.normal(pos[2], SIZE["z"], n_ev)[ev]
    sig = np.sqrt(0.002**2 + (0.002 / p) ** 2)
    d0 = vx * np.sin(phi) - vy * np.cos(phi) + sig * rng.standard_normal(n)
    z0 = vz + 0.003 * rng.standard_normal(n)
    return ((p * np.cos(phi)).astype(np.float32), (p * np.sin(phi)).astype(np.float32), d0.astype(np.float32),
            z0.astype(np.float32), off)


def test_beam_spot_positions_have_unit_pulls():
    rng = np.random.default_rng(21)
    vals, errs, truth = [], [], []
    for _ in range(40):
        pos = (rng.normal(0.04, 0.01), rng.normal(-0.02, 0.01), rng.normal(0.1, 0.05))
        s = BeamSpotSums(n_threads=2)
        for _chunk in range(2):  # two chunks: the sums add up
            s.add(*_events(rng, 400, pos))
        f = fit_beam_spot(s)
        assert f.status == "OK"
        vals.append([f.x_cm, f.y_cm, f.z_cm])
        errs.append([f.x_err_cm, f.y_err_cm, f.z_err_cm])
        truth.append(pos)
    vals, errs, truth = map(np.array, (vals, errs, truth))
    for k in range(3):
        ps = pull_summary(vals[:, k], errs[:, k], truth[:, k])
        assert ps["max_abs"] < 3.5, ps
        assert 0.7 < ps["width"] < 1.3, (k, ps)
    pooled = pull_summary(vals, errs, truth)
    assert 0.85 < pooled["width"] < 1.15 and abs(pooled["mean"]) < 0.25
    # the z error must include the shared vertex: tracks are not independent
    assert np.median(errs[:, 2]) > 1.5 * SIZE["z"] / np.sqrt(800 * 6)


def test_beam_spot_sizes_from_track_pairs():
    rng = np.random.default_rng(22)
    s = BeamSpotSums()
    for _ in range(6):
        s.add(*_events(rng, 5000, (0.05, -0.03, 0.2), mean_tracks=8))
    f = fit_beam_spot(s)
    assert f.size_z_cm == pytest.approx(SIZE["z"], rel=0.03)
    assert f.size_x_cm == pytest.approx(SIZE["x"], rel=0.15)
    assert f.size_y_cm == pytest.approx(SIZE["y"], rel=0.3)
    assert f.n_pairs > 100_000


def test_empty_run_not_enough_data_and_merged():
    rng = np.random.default_rng(23)
    pos = (0.04, -0.02, 0.1)
    runs = [RunId(1, r) for r in (1, 2, 3)]
    sums = {r: BeamSpotSums() for r in runs}
    sums[runs[0]].add(*_events(rng, 600, pos))
    empty_off = np.zeros(11, np.int64)  # 10 events without tracks
    e = np.zeros(0, np.float32)
    sums[runs[1]].add(e, e, e, e, empty_off)
    sums[runs[2]].add(*_events(rng, 600, pos))
    fits = {r: fit_beam_spot(s) for r, s in sums.items()}
    assert fits[runs[1]].status == "NOT_ENOUGH_DATA" and np.isnan(fits[runs[1]].x_cm)
    groups = run_by_run(runs, {r: f.status == "OK" for r, f in fits.items()})
    assert [g for _, g in groups] == [[runs[0], runs[1]], [runs[2]]]
    merged = fit_beam_spot(BeamSpotSums.merged(sums[r] for r in groups[0][1]))
    assert merged.x_cm == fits[runs[0]].x_cm and merged.n_events == fits[runs[0]].n_events


def test_gain_recovered_despite_electron_contamination():
    rng = np.random.default_rng(31)
    gains = rng.uniform(0.9, 1.1, 150)
    vals, errs = [], []
    for g in gains:
        r = g * (1 + DEDX_RESOLUTION * rng.standard_normal(300))
        r[:15] = g * 1.96 * (1 + DEDX_RESOLUTION * rng.standard_normal(15))  # electrons under the muon hypothesis
        f = fit_gain(r)
        assert f.status == "OK" and f.n_used == pytest.approx(285, abs=3)
        vals.append(f.gain)
        errs.append(f.gain_err)
    ps = pull_summary(vals, errs, gains)
    assert ps["max_abs"] < 4 and 0.85 < ps["width"] < 1.15 and abs(ps["mean"]) < 0.2
    assert fit_gain(np.ones(10)).status == "NOT_ENOUGH_DATA"


@pytest.fixture(scope="module")
def tiny_post_tracking(tiny_dataset):
    truth = json.loads((tiny_dataset / "truth.json").read_text())
    runs = [RunId(1, r) for r in range(1, 7)]
    files = {r: run_file(tiny_dataset / "raw", r.exp, r.run) for r in runs}
    return truth, runs, collect_post_tracking(files, DimuonSelection())


def test_tiny_beam_spot_within_three_sigma(tiny_post_tracking):
    truth, runs, data = tiny_post_tracking
    fits = [fit_beam_spot(data[r].beam_spot) for r in runs]
    assert all(f.status == "OK" for f in fits)
    for k in ("x", "y", "z"):
        v = [getattr(f, f"{k}_cm") for f in fits]
        e = [getattr(f, f"{k}_err_cm") for f in fits]
        t = [truth["beam_spot"][str(r)][f"{k}_cm"] for r in runs]
        ps = pull_summary(v, e, t)
        assert ps["n"] == 6 and ps["max_abs"] < 3.0, (k, ps)
    # the z size (350 µm) is well measured even in a tiny run
    assert all(abs(f.size_z_cm - SIZE["z"]) < 0.2 * SIZE["z"] for f in fits)


def test_tiny_dedx_gain_within_three_sigma(tiny_post_tracking):
    truth, runs, data = tiny_post_tracking
    fits = [fit_gain(data[r].dedx_ratios) for r in runs]
    ps = pull_summary([f.gain for f in fits], [f.gain_err for f in fits], [truth["dedx_gain"][str(r)] for r in runs])
    assert ps["n"] == 6 and ps["max_abs"] < 3.0
    assert max(f.gain_err / f.gain for f in fits) < 0.01  # the registry's gate
    assert all(f.width == pytest.approx(DEDX_RESOLUTION, rel=0.25) for f in fits)


def test_rerun_gives_identical_payload_revisions(tiny_dataset, tiny_post_tracking):
    from dpnb.conditions import content_revision, encode_data

    _, runs, first = tiny_post_tracking
    files = {r: run_file(tiny_dataset / "raw", r.exp, r.run) for r in runs[:2]}
    second = collect_post_tracking(files, DimuonSelection())

    def revisions(data, r):
        bs = fit_beam_spot(data[r].beam_spot).payload()
        g = fit_gain(data[r].dedx_ratios).payload()
        return (content_revision("BeamSpot", encode_data("BeamSpot", bs)),
                content_revision("DedxGain", encode_data("DedxGain", g)))

    for r in runs[:2]:
        assert revisions(first, r) == revisions(second, r)
    assert revisions(first, runs[0]) != revisions(first, runs[1])
