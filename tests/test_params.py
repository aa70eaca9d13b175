"""Parameters: defaults < bucket file < --set, validated with every problem reported at once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from dpnb.errors import ParameterError
from dpnb.params import bucket_file_for, parse_override, resolve_bucket

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def root(tmp_path, monkeypatch):
    """A project root with the real shared defaults and one notebook's own defaults."""
    (tmp_path / "parameters" / "buckets").mkdir(parents=True)
    (tmp_path / "parameters" / "defaults").mkdir()
    shutil.copy(REPO / "parameters" / "defaults.yaml", tmp_path / "parameters" / "defaults.yaml")
    (tmp_path / "parameters" / "defaults" / "nb1.yaml").write_text("min_hits: 20\nscale: 1.5\n")
    (tmp_path / "parameters" / "pipeline.yaml").write_text("notebooks: {}\n")
    monkeypatch.setenv("DPNB_ROOT", str(tmp_path))
    return tmp_path


def _bucket(root: Path, **values) -> Path:
    doc = {"label": "b1", "runs": ["7:909-4120"], **values}
    path = root / "parameters" / "buckets" / "b1.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _problems(path, overrides=()):
    with pytest.raises(ParameterError) as err:
        resolve_bucket(path, list(overrides))
    return err.value.problems


def test_valid_bucket_resolves_with_defaults_and_absolute_paths(root):
    p = resolve_bucket(_bucket(root, data={"root": "d"}))
    assert p["label"] == "b1" and p["seed"] == 12345
    assert p["data"]["raw"] == str(root / "d" / "raw") and p["data"]["run_registry"] == str(root / "d" / "runs.csv")
    assert p["notebooks"]["nb1"] == {"min_hits": 20, "scale": 1.5}
    assert p["conditions"]["global_tag"] == "b1_calibration"
    assert p["reports_dir"] == str(root / "reports")


def test_precedence_defaults_bucket_set(root):
    path = _bucket(root, seed=5, notebooks={"nb1": {"min_hits": 30}})
    p = resolve_bucket(path, ["notebooks.nb1.min_hits=40", "seed=6"])
    assert p["notebooks"]["nb1"] == {"min_hits": 40, "scale": 1.5}  # scale still from the defaults
    assert p["seed"] == 6
    assert resolve_bucket(path)["seed"] == 5
    assert parse_override("a.b=[1, 2]") == {"a": {"b": [1, 2]}}
    with pytest.raises(ParameterError, match="expected KEY=VALUE"):
        parse_override("seed")


def test_unknown_key_names_nearest(root):
    (problem,) = _problems(_bucket(root, run_type=["4S"]))
    assert "b1.yaml" in problem and "unknown key 'run_type'" in problem and "did you mean 'run_types'" in problem
    (problem,) = _problems(_bucket(root, notebooks={"nb1": {"min_hit": 3}}))
    assert "unknown key 'notebooks.nb1.min_hit'" in problem and "did you mean 'min_hits'" in problem


def test_wrong_type(root):
    (problem,) = _problems(_bucket(root, seed="abc"))
    assert "key 'seed': expected integer, got string 'abc'" in problem
    (problem,) = _problems(_bucket(root), ["notebooks.nb1.scale=fast"])
    assert "command line (--set)" in problem and "notebooks.nb1.scale" in problem and "expected number" in problem


def test_missing_required(root):
    path = root / "parameters" / "buckets" / "b1.yaml"
    path.write_text("label: b1\n")
    (problem,) = _problems(path)
    assert "key 'runs': required" in problem and "7:909-4120" in problem


@pytest.mark.parametrize("label", ["../x", "a/b", "b 1", "x;rm", "..", ".hidden"])
def test_bad_label_refused(root, label):
    (problem,) = _problems(_bucket(root, label=label))
    assert "characters outside [A-Za-z0-9_.-] or starts with '.'" in problem
    with pytest.raises(ParameterError, match="outside"):
        bucket_file_for(label, root)


@pytest.mark.parametrize("bad, expected", [("7:4120-909", "ends (run 909) before it starts"),
                                           ("seven", "is not a run range"), ("7-909", "is not a run range")])
def test_bad_run_range(root, bad, expected):
    (problem,) = _problems(_bucket(root, runs=["7:1-5", bad]))
    assert "runs[1]" in problem and expected in problem


def test_all_problems_at_once(root):
    problems = _problems(_bucket(root, label="../x", runs=["7:9-1"], seed=1.5, run_types=["4s"], colour="red"))
    assert len(problems) == 5
    text = "\n".join(problems)
    for fragment in ("unknown key 'colour'", "key 'seed': expected integer", "label", "runs[0]",
                     "unknown run type '4s'"):
        assert fragment in text


def test_cli_exit_code_2_lists_every_problem(root, capsys):
    from dpnb.cli import main

    path = _bucket(root, seed="x", colour=1)
    assert main(["run", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "invalid parameters (2 problems)" in err and "colour" in err and "seed" in err
    assert not (root / "reports").exists()
    assert main(["run", str(_bucket(root)), "--set", "seed=oops", "--no-progress"]) == 2
    assert "command line (--set)" in capsys.readouterr().err
