"""Channel masking: injected hot/dead channels are found, nothing else is, on synthetic and tiny data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dpnb.calibration.accumulate import accumulate_run, merge
from dpnb.calibration.masking import find_bad_channels, reference_counts, truth_comparison
from dpnb.calibration.payloads import MASK_DEAD, MASK_HOT, MASK_OK, validate_payload
from dpnb.detector import load_geometry
from dpnb.errors import InputError
from dpnb.io.events import run_file


def _synthetic_counts(n_layers, n_wires, mean_per_layer, hot, dead, hot_factor, seed):
    rng = np.random.default_rng(seed)
    # occupancy falls with the layer radius and varies smoothly in azimuth
    lam = np.outer(mean_per_layer, 1.0 + 0.2 * np.sin(np.linspace(0, 2 * np.pi, n_wires, endpoint=False)))
    lam = lam.reshape(-1)
    lam[hot] *= hot_factor
    lam[dead] = 0.0
    return rng.poisson(lam)


def test_finds_injected_channels_without_false_positives():
    n_layers, n_wires = 20, 128
    n = n_layers * n_wires
    rng = np.random.default_rng(5)
    perm = rng.permutation(n)
    hot, dead = perm[:8], perm[8:30]
    counts = _synthetic_counts(n_layers, n_wires, np.linspace(400, 120, n_layers), hot, dead, 40.0, seed=6)
    res = find_bad_channels(counts, 1000, n_layers, n_wires)
    cmp = truth_comparison(res.status, hot, dead)
    assert cmp["n_true_hot_found"] == 8 and cmp["n_true_dead_found"] == 22
    assert cmp["n_false_positive"] == 0
    assert res.n_hot == 8 and res.n_dead == 22
    np.testing.assert_allclose(res.occupancy, counts / 1000)
    # the payload passes the schema of ChannelMask
    clean = validate_payload("ChannelMask", res.payload())
    assert clean["status"].dtype == np.int8 and set(np.unique(clean["status"])) == {MASK_OK, MASK_HOT, MASK_DEAD}


def test_reference_is_neighbour_median_and_ignores_the_channel_itself():
    counts = np.full(2 * 10, 100)
    counts[3] = 10_000
    ref = reference_counts(counts, 2, 10, "window", 4)
    assert ref[3] == 100 and np.all(ref == 100)
    lay = reference_counts(np.arange(20), 2, 10, "layer")
    np.testing.assert_array_equal(lay, np.repeat([4.5, 14.5], 10))
    with pytest.raises(InputError, match="expected 20 channels = 2 layers x 10 wires"):
        reference_counts(np.arange(19), 2, 10)


def test_low_statistics_does_not_flag_fluctuations():
    # ~3 hits per channel: zero hits is a fluctuation, not a dead channel
    counts = np.random.default_rng(2).poisson(3.0, 16 * 64)
    res = find_bad_channels(counts, 50, 16, 64)
    assert res.n_dead == 0 and res.n_hot == 0


def test_tiny_dataset_masks(tiny_dataset):
    geo = load_geometry(tiny_dataset)
    truth = json.loads((tiny_dataset / "truth.json").read_text())
    parts = [accumulate_run(run_file(tiny_dataset / "raw", 1, r), geo.n_channels, run=(1, r), nthreads=2)
             for r in range(1, 4)]
    total = merge(parts)
    res = find_bad_channels(total.occupancy, total.n_events, geo.n_layers, geo.n_wires_per_layer)
    cmp = truth_comparison(res.status, truth["hot_channels"], truth["dead_channels"])
    assert cmp["n_true_hot_found"] == cmp["n_true_hot"] > 0
    assert cmp["n_true_dead_found"] == cmp["n_true_dead"] > 0
    assert cmp["false_positive_fraction"] < 0.001
    assert res.masked_fraction < 0.05
