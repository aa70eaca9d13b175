"""Shared fixtures: paths to the real public files and one tiny simulated dataset per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "agg")

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The folder of real public files (``../shared/data/real``); skips when absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real public files not found at {REAL_DATA} (shared/ folder absent)")
    return REAL_DATA


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A tiny simulated dataset (seed 1), made once per test session."""
    from dpnb.simulate import make_dataset

    out = tmp_path_factory.mktemp("tiny") / "data"
    return make_dataset(out, scale="tiny", seed=1)
