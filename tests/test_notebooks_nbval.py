"""Every notebook runs clean top to bottom with its default parameters (nbval, lax mode).

The notebooks' defaults point at the demo bucket; here ``DPNB_BUCKET_FILE`` points them
at a bucket over the tiny simulated dataset instead (same code path as JupyterLab with
default parameters). nbval collects notebooks in path order, which is also the order the
calibration steps need (01 … 05 write to and read from the same conditions database).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_all_notebooks_run_clean_with_default_parameters(tiny_dataset, tmp_path):
    bucket = {
        "label": "tiny",
        "runs": ["1:1-7"],
        "data": {"root": str(tiny_dataset)},
        "conditions": {"db": str(tmp_path / "conditions.sqlite")},
        "reports_dir": str(tmp_path / "reports"),
        "cache_dir": str(tmp_path / "cache"),
    }
    bucket_file = tmp_path / "tiny.yaml"
    bucket_file.write_text(yaml.safe_dump(bucket))
    env = dict(os.environ, DPNB_BUCKET_FILE=str(bucket_file), MPLBACKEND="agg", PYTHONHASHSEED="0")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
         "--nbval-sanitize-with", str(REPO / "tests" / "nbval_sanitize.cfg"),
         "--nbval-cell-timeout", "600", "-o", "filterwarnings=", "notebooks"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1800,
    )
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
    assert proc.returncode == 0, f"nbval failed:\n{tail}"
    # every notebook was collected and each cell passed (nbval reports one test per cell)
    assert " passed" in proc.stdout and " failed" not in proc.stdout, tail
    scratch = tmp_path / "reports" / "_scratch" / "tiny"
    written = sorted(p.parent.name for p in scratch.glob("*/results.json"))
    from dpnb.pipeline.graph import load_graph

    expected = sorted(load_graph(REPO).specs)
    assert written == expected, f"notebooks that recorded results: {written}"
