"""`dpnb run --executor dask`: the same notebooks on a 2-worker LocalCluster give byte-identical results."""

from __future__ import annotations

import pytest
import yaml

from dpnb.cli import main

pytestmark = pytest.mark.slow

NOTEBOOKS = ["luminosity_summary", "calibration_masking", "calibration_t0"]


def _bucket(tmp_path, data, name):
    d = tmp_path / name
    f = tmp_path / f"{name}.yaml"
    f.write_text(yaml.safe_dump({
        "label": "tiny", "runs": ["1:1-7"], "data": {"root": str(data)},
        "conditions": {"db": str(d / "conditions.sqlite")}, "cache_dir": str(d / "cache"),
    }))
    return f, d / "reports"


def test_dask_executor_matches_local(tiny_dataset, tmp_path):
    pytest.importorskip("distributed")
    local, local_reports = _bucket(tmp_path, tiny_dataset, "local")
    dask, dask_reports = _bucket(tmp_path, tiny_dataset, "dask")
    assert main(["run", str(local), "--reports-dir", str(local_reports), "--only", *NOTEBOOKS,
                 "--jobs", "2", "--no-progress"]) == 0
    assert main(["run", str(dask), "--reports-dir", str(dask_reports), "--only", *NOTEBOOKS,
                 "--jobs", "2", "--no-progress", "--executor", "dask"]) == 0
    for nb in NOTEBOOKS:
        a = (local_reports / "tiny" / nb / "v1" / "results.json").read_bytes()
        b = (dask_reports / "tiny" / nb / "v1" / "results.json").read_bytes()
        assert a == b, nb
    # the executor is not part of the content key: switching back to local is a cache hit
    assert main(["run", str(dask), "--reports-dir", str(dask_reports), "--only", *NOTEBOOKS,
                 "--jobs", "1", "--no-progress"]) == 0
    assert sorted(p.name for p in (dask_reports / "tiny" / "calibration_t0").glob("v*")) == ["v1"]


def test_unreachable_scheduler_is_a_clear_error(tiny_dataset, tmp_path, capsys):
    bucket, reports = _bucket(tmp_path, tiny_dataset, "x")
    rc = main(["run", str(bucket), "--reports-dir", str(reports), "--only", "luminosity_summary",
               "--no-progress", "--scheduler", "tcp://127.0.0.1:9"])
    assert rc == 2
    assert "could not reach the Dask scheduler at 'tcp://127.0.0.1:9'" in capsys.readouterr().err
    assert not (reports / "tiny" / "luminosity_summary").exists()
