"""``dpnb replay``: re-execute exactly one report version, refuse changed inputs, list differing numbers."""

from __future__ import annotations

import io
import json

import pytest

from dpnb.cli import main
from dpnb.reports import versions
from helpers_pipeline import make_notebook, make_project

CALC = """from pathlib import Path
text = (Path(ctx.data["raw"]) / "r1.txt").read_text()
extra = Path(ctx.data["root"]) / "extra.txt"   # read, but not a declared input of the notebook
ctx.record("n_chars", len(text))
ctx.record("mean_code", sum(map(ord, text)) / len(text), error=0.5)
ctx.record("n_extra", len(extra.read_text()) if extra.exists() else 0)
ctx.record("upstream_value", ctx.upstream_results("base")["values"]["x"]["value"])
ctx.gate("nonempty", len(text), 0, ">")
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """One run of a two-notebook project for the module (the tests put back what they change)."""
    tmp_path = tmp_path_factory.mktemp("proj")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DPNB_ROOT", str(tmp_path))
        bfile = make_project(tmp_path, {"base": 'ctx.record("x", 7)', "calc": CALC},
                             {"base": {}, "calc": {"depends_on": ["base"], "inputs": ["raw"]}})
        (tmp_path / "data" / "extra.txt").write_text("ab")
        from dpnb.pipeline.runner import RunOptions, run_bucket

        outcomes = run_bucket(bfile, [], RunOptions(jobs=1, progress=False), out=io.StringIO())
        assert [o.status for o in outcomes] == ["PASS", "PASS"], [o.reason for o in outcomes]
        yield tmp_path


def _manifest(root, nb="calc", v=1):
    return root / "reports" / "t" / nb / f"v{v}" / "manifest.json"


def test_replay_reproduces_byte_for_byte_then_lists_changed_numbers(project, tmp_path_factory, capsys):
    man = _manifest(project)
    recorded = (man.parent / "results.json").read_bytes()
    # the notebook file was edited since: replay runs the recorded source, not the current file
    make_notebook(project / "notebooks" / "calc.ipynb", "calc", 'ctx.record("n_chars", -1)')
    out = tmp_path_factory.mktemp("replay1")
    assert main(["replay", str(man), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "REPRODUCED" in text and "NOT" not in text
    assert (out / "output" / "results.json").read_bytes() == recorded
    assert versions.list_versions(project / "reports" / "t" / "calc") == [1]  # not a new version
    assert json.loads(recorded)["values"]["n_extra"]["value"] == 2

    # an undeclared file changes: inputs verify, but the numbers are not reproduced (exit 1, listed)
    (project / "data" / "extra.txt").write_text("abcde")
    out2 = tmp_path_factory.mktemp("replay2")
    assert main(["replay", str(man), "--out", str(out2)]) == 1
    text = capsys.readouterr().out
    assert "NOT REPRODUCED" in text
    assert "1 recorded number(s) differ" in text
    assert "n_extra: 2 -> 5 (difference 3)" in text
    assert "n_chars" not in text
    assert versions.list_versions(project / "reports" / "t" / "calc") == [1]
    (project / "data" / "extra.txt").write_text("ab")


def test_replay_refuses_changed_inputs_and_names_them(project, tmp_path_factory, capsys):
    man = _manifest(project)
    (project / "data" / "raw" / "r1.txt").write_text("raw data 1, edited\n")
    out = tmp_path_factory.mktemp("refused") / "out"
    assert main(["replay", str(man), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "refusing to replay t/calc/v1: 1 input(s) changed" in err
    assert f"{project / 'data' / 'raw' / 'r1.txt'} (sha256 changed)" in err
    assert not out.exists()  # nothing executed

    # an upstream version whose results were rewritten is named too
    (project / "data" / "raw" / "r1.txt").write_text("raw data 1\n")
    base = project / "reports" / "t" / "base" / "v1" / "results.json"
    base_bytes = base.read_bytes()
    doc = json.loads(base_bytes)
    doc["values"]["x"]["value"] = 8
    base.write_text(json.dumps(doc))
    assert main(["replay", str(man), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{base} (upstream results sha256 changed)" in err
    base.write_bytes(base_bytes)


def test_replay_refuses_a_tampered_version(project, capsys):
    import nbformat

    man = _manifest(project)
    executed = man.parent / "notebook.ipynb"
    original = executed.read_bytes()
    nb = nbformat.read(str(executed), as_version=4)
    cell = next(c for c in nb.cells if "n_chars" in c.source)
    cell.source = cell.source.replace("len(text)", "len(text) + 1")
    nbformat.write(nb, str(executed))
    assert main(["replay", str(man)]) == 2
    assert "notebook source (outputs and injected cell removed) hashes to" in capsys.readouterr().err
    executed.write_bytes(original)
    assert main(["replay", str(project / "reports" / "t" / "calc" / "v9" / "manifest.json")]) == 2
    assert "no manifest there" in capsys.readouterr().err


def test_injected_parameters_are_read_not_executed():
    import nbformat

    from dpnb.replay import ReplayRefused, injected_parameters

    nb = nbformat.v4.new_notebook()
    c = nbformat.v4.new_code_cell('# Parameters\nlabel = "t"\nruns = ["1:1-10"]\nflag = True\n')
    c.metadata["tags"] = ["injected-parameters"]
    nb.cells = [c]
    assert injected_parameters(nb) == {"label": "t", "runs": ["1:1-10"], "flag": True}
    c.source = 'label = __import__("os").getcwd()'
    with pytest.raises(ReplayRefused, match="not a literal"):
        injected_parameters(nb)
