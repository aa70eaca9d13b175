"""The runner: DAG checks, content keys, caching, versions, atomic writes, failures, locking."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from dpnb.errors import LockError, PipelineError
from dpnb.pipeline import cache
from dpnb.pipeline.graph import build_graph, load_graph
from dpnb.pipeline.lock import BucketLock
from dpnb.pipeline.runner import Outcome, RunOptions, exit_code, run_bucket
from dpnb.reports import versions
from helpers_pipeline import make_notebook, make_project, set_dag

GATE_BODY = 'ctx.gate("g", 1.0, 2.0, "<", description="one below two")\nctx.record("seed_seen", ctx.params["seed"])'


# --- DAG -----------------------------------------------------------------------------------
def _nbs(root: Path, *names: str, params: bool = True) -> None:
    for n in names:
        make_notebook(root / "notebooks" / f"{n}.ipynb", n, with_parameters=params)


def test_dag_order_respects_dependencies(tmp_path):
    _nbs(tmp_path, "a", "b", "c", "d")
    g = build_graph({"d": {"path": "notebooks/d.ipynb", "depends_on": ["b", "c"]},
                     "b": {"path": "notebooks/b.ipynb", "depends_on": ["a"]},
                     "c": {"path": "notebooks/c.ipynb", "depends_on": ["a"]},
                     "a": {"path": "notebooks/a.ipynb"}}, tmp_path)
    pos = {n: i for i, n in enumerate(g.order)}
    assert sorted(g.order) == ["a", "b", "c", "d"]
    assert pos["a"] < pos["b"] < pos["d"] and pos["a"] < pos["c"] < pos["d"]
    assert g.dependents("a") == {"b", "c", "d"}
    assert g.upstream_closure(["d"]) == {"a", "b", "c"}


def test_dag_star_depends_on_every_other_notebook(tmp_path):
    _nbs(tmp_path, "a", "b", "s")
    g = build_graph({"s": {"path": "notebooks/s.ipynb", "depends_on": ["*"]},
                     "a": {"path": "notebooks/a.ipynb"}, "b": {"path": "notebooks/b.ipynb"}}, tmp_path)
    assert set(g.specs["s"].depends_on) == {"a", "b"}
    assert g.order[-1] == "s"


def test_dag_cycle_is_reported_with_its_path(tmp_path):
    _nbs(tmp_path, "a", "b", "c")
    rotations = "a -> c -> b -> a|c -> b -> a -> c|b -> a -> c -> b"
    with pytest.raises(PipelineError, match=rf"cycle ({rotations}) \(each depends on the next\)"):
        build_graph({"a": {"path": "notebooks/a.ipynb", "depends_on": ["c"]},
                     "b": {"path": "notebooks/b.ipynb", "depends_on": ["a"]},
                     "c": {"path": "notebooks/c.ipynb", "depends_on": ["b"]}}, tmp_path)


def test_dag_all_problems_at_once(tmp_path):
    _nbs(tmp_path, "calib")
    _nbs(tmp_path, "noparams", params=False)
    with pytest.raises(PipelineError) as err:
        build_graph({"calib": {"path": "notebooks/calib.ipynb", "depends_on": ["lumi_sumary"], "timout": 3},
                     "luminosity_summary": {"path": "notebooks/missing.ipynb"},
                     "noparams": {"path": "notebooks/noparams.ipynb"}}, tmp_path, source="pipe.yaml")
    text = str(err.value)
    assert "4 problems" in text
    assert "unknown notebook 'lumi_sumary'; did you mean 'luminosity_summary'" in text
    assert "unknown key 'timout'; did you mean 'timeout'" in text
    assert "missing.ipynb does not exist" in text
    assert "noparams.ipynb: no 'parameters' cell" in text
    assert "pipe.yaml: notebooks.calib" in text


def test_dag_notebook_name_cannot_escape_reports(tmp_path):
    _nbs(tmp_path, "a")
    with pytest.raises(PipelineError, match=r"notebook name '\.\./a' has characters outside"):
        build_graph({"../a": {"path": "notebooks/a.ipynb"}}, tmp_path)


def test_load_graph_requires_notebooks_key(tmp_path):
    (tmp_path / "parameters").mkdir()
    (tmp_path / "parameters" / "pipeline.yaml").write_text("steps: {}\n")
    with pytest.raises(PipelineError, match="top-level key 'notebooks'"):
        load_graph(tmp_path)


# --- content keys ----------------------------------------------------------------------------
def _nb(src="x = 1", tags=("parameters",), outputs=()):
    return {"cells": [{"cell_type": "code", "source": src, "metadata": {"tags": list(tags), "collapsed": True},
                       "outputs": list(outputs), "execution_count": 7}], "metadata": {"kernelspec": {"name": "py"}}}


def test_source_hash_ignores_outputs_and_metadata_noise():
    base = cache.notebook_source_hash(_nb())
    noisy = _nb(outputs=[{"output_type": "stream", "text": "hi"}])
    noisy["cells"][0]["execution_count"] = 99
    noisy["cells"][0]["metadata"]["collapsed"] = False
    noisy["metadata"]["papermill"] = {"duration": 3}
    assert cache.notebook_source_hash(noisy) == base
    assert cache.notebook_source_hash(_nb("x = 2")) != base
    assert cache.notebook_source_hash(_nb(tags=())) != base


def test_content_key_changes_exactly_when_an_ingredient_changes():
    ing = dict(source_sha256="s", params={"seed": 1, "data": {"root": "/d"}},
               inputs=[{"path": "/d/a", "sha256": "h1"}], code={"dpnb_version": "0.1", "source_sha256": "c"},
               upstream={"lumi": "r1"})
    k0 = cache.content_key(**ing)
    # same ingredients (even re-ordered mappings, git fields) -> same key
    assert cache.content_key(**dict(ing, params={"data": {"root": "/d"}, "seed": 1},
                                    code={"source_sha256": "c", "dpnb_version": "0.1", "git_commit": "x"})) == k0
    changes = {
        "source_sha256": "s2",
        "params": {"seed": 2, "data": {"root": "/d"}},
        "inputs": [{"path": "/d/a", "sha256": "h2"}],
        "code": {"dpnb_version": "0.1", "source_sha256": "c2"},
        "upstream": {"lumi": "r2"},
    }
    keys = {name: cache.content_key(**dict(ing, **{name: v})) for name, v in changes.items()}
    assert all(k != k0 for k in keys.values())
    assert len(set(keys.values())) == len(keys)


def test_key_parameters_keep_only_own_notebook_options():
    p = {"seed": 1, "reports_dir": "/r", "notebooks": {"a": {"x": 1}, "b": {"y": 2}}}
    assert cache.key_parameters(p, "a") == {"seed": 1, "notebooks": {"a": {"x": 1}}}


def test_file_hash_cache_reuses_and_detects_changes(tmp_path):
    f = tmp_path / "data" / "f.bin"
    f.parent.mkdir()
    f.write_bytes(b"one")
    c = cache.FileHashCache(tmp_path / "h.json")
    first = c.hash_tree(tmp_path / "data")
    c.save()
    assert first[0]["sha256"] == cache.sha256_bytes(b"one")
    c2 = cache.FileHashCache(tmp_path / "h.json")
    c2._data[str(f)][2] = "remembered"  # proves the cached value is used while size/mtime match
    assert c2.hash_tree(tmp_path / "data")[0]["sha256"] == "remembered"
    f.write_bytes(b"two!")
    assert c2.hash_tree(tmp_path / "data")[0]["sha256"] == cache.sha256_bytes(b"two!")
    assert c2.hash_tree(tmp_path / "nope") == [{"path": str(tmp_path / "nope"), "missing": True}]


# --- running a tiny project -------------------------------------------------------------------
@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """a -> b (pass), c fails -> d skipped, s (a roll-up of all, always_run); two parallel workers."""
    root = tmp_path_factory.mktemp("proj")
    bfile = make_project(
        root,
        {"a": GATE_BODY, "b": 'up = ctx.upstream_results("a")\nctx.record("a_gate", up["gates"]["g"]["value"])',
         "c": "raise ValueError('deliberate failure for the test')", "d": "pass",
         "s": 'ctx.record("upstream_seen", sorted(upstream))'},
        {"a": {"inputs": ["raw"]}, "b": {"depends_on": ["a"]}, "c": {}, "d": {"depends_on": ["c"]},
         "s": {"depends_on": ["*"], "always_run": True}},
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("DPNB_ROOT", str(root))
    # other engineers edit dpnb/ while these tests run: pin the package-source ingredient of
    # the key (its effect on the key is tested in test_content_key_changes_exactly_when...)
    mp.setattr(cache, "package_source_hash", lambda *a: "pinned-for-tests")
    out = io.StringIO()
    outcomes = run_bucket(bfile, [], RunOptions(jobs=2, progress=False), out=out)
    yield {"root": root, "bfile": bfile, "outcomes": {o.name: o for o in outcomes}, "out": out.getvalue(),
           "reports": root / "reports" / "t"}
    mp.undo()


def _run(project, *args, **opts):
    out = io.StringIO()
    outcomes = run_bucket(project["bfile"], list(args), RunOptions(progress=False, **opts), out=out)
    return {o.name: o for o in outcomes}, out.getvalue()


def test_failure_propagation(project):
    o, rep = project["outcomes"], project["reports"]
    assert (o["a"].status, o["b"].status) == ("PASS", "PASS")
    assert o["c"].status == "FAILED" and "deliberate failure" in o["c"].reason
    assert o["d"].status == "SKIPPED" and "upstream c FAILED" in o["d"].reason
    assert exit_code(list(o.values())) == 1
    html = (rep / "c" / "v1" / "report.html").read_text()
    assert "ValueError" in html and "deliberate failure for the test" in html and "Traceback" in html
    assert 'data-status="FAILED"' in html
    assert json.loads((rep / "c" / "v1" / "manifest.json").read_text())["status"] == "FAILED"
    assert not list((rep / "d").glob("v*"))
    assert versions.read_last_run(rep / "d")["status"] == "SKIPPED"
    index = (project["root"] / "reports" / "index.html").read_text()
    assert 'data-notebook="d"' not in index  # attributes use single quotes
    assert "data-notebook='d'" in index and 'data-status="SKIPPED"' in index
    assert "t/a/v1/report.html" in index
    # the always_run roll-up still ran, and saw every upstream that has a version (not the skipped d)
    assert o["s"].status == "PASS"
    s_res = json.loads((rep / "s" / "v1" / "results.json").read_text())
    assert s_res["values"]["upstream_seen"]["value"] == ["a", "b", "c"]
    s_man = json.loads((rep / "s" / "v1" / "manifest.json").read_text())
    assert s_man["upstream"]["c"]["status"] == "FAILED"
    lines = project["out"].splitlines()
    assert any(line.startswith("FAILED") and " c " in line for line in lines)
    assert any(line.startswith("SKIPPED") and " d " in line for line in lines)


def test_report_and_manifest_contents(project):
    v = project["reports"] / "a" / "v1"
    assert sorted(p.name for p in v.iterdir()) == ["manifest.json", "notebook.ipynb", "report.html", "results.json"]
    man = json.loads((v / "manifest.json").read_text())
    assert man["status"] == "PASS" and man["version"] == 1 and man["previous_version"] is None
    assert man["inputs"][0]["path"].endswith("data/raw/r1.txt")
    assert man["inputs"][0]["sha256"] == cache.sha256_bytes(b"raw data 1\n")
    assert set(man["packages"]) >= {"numpy", "numba", "uproot", "pandas", "papermill", "nbconvert", "matplotlib",
                                    "iminuit"}
    assert man["code"]["source_sha256"] and "git_dirty" in man["code"] and man["duration_s"] > 0
    res = json.loads((v / "results.json").read_text())
    assert res["gates"]["g"]["verdict"] == "pass" and res["values"]["seed_seen"]["value"] == 12345
    html = (v / "report.html").read_text()
    assert "one below two" in html and "<script src=" not in html and 'id="dpnb-show-code"' in html
    b_man = json.loads((project["reports"] / "b" / "v1" / "manifest.json").read_text())
    assert b_man["upstream"]["a"]["version"] == 1


def test_cache_hit_executes_nothing(project, monkeypatch):
    import dpnb.pipeline.execute as ex

    def boom(job):
        raise AssertionError(f"executed {job['name']}")

    monkeypatch.setattr(ex, "run_job", boom)
    before = {n: versions.list_versions(project["reports"] / n) for n in "ab"}
    o, out = _run(project, only=["a", "b"], jobs=1)
    assert o["a"].cached and o["b"].cached and o["a"].status == "PASS"
    assert "cached" in out
    assert {n: versions.list_versions(project["reports"] / n) for n in "ab"} == before


def test_new_version_when_parameters_change(project):
    rep = project["reports"]
    n_a, n_b = versions.latest_version(rep / "a"), versions.latest_version(rep / "b")
    o, _ = _run(project, "seed=777", only=["a", "b"], jobs=1)
    assert o["a"].version == n_a + 1 and not o["a"].cached
    man = json.loads((rep / "a" / f"v{n_a + 1}" / "manifest.json").read_text())
    assert man["previous_version"] == n_a
    assert ["seed", 12345, 777] in man["changes"]["parameters"]
    html = (rep / "a" / f"v{n_a + 1}" / "report.html").read_text()
    assert f'href="../v{n_a}/report.html"' in html and "parameter <code>seed</code>" in html
    # b's parameters changed too (seed is shared), so it reruns; its own results depend on a's gate only
    assert o["b"].version == n_b + 1
    # the old versions are untouched
    assert (rep / "a" / f"v{n_a}" / "manifest.json").is_file()


def test_results_json_is_deterministic_under_force(project):
    rep = project["reports"]
    _run(project, only=["a"], jobs=1, force=True)
    _run(project, only=["a"], jobs=1, force=True)
    n = versions.latest_version(rep / "a")
    r1 = (rep / "a" / f"v{n - 1}" / "results.json").read_bytes()
    r2 = (rep / "a" / f"v{n}" / "results.json").read_bytes()
    assert r1 == r2 and b'"seed_seen"' in r2
    m1 = json.loads((rep / "a" / f"v{n - 1}" / "manifest.json").read_text())
    m2 = json.loads((rep / "a" / f"v{n}" / "manifest.json").read_text())
    assert m1["content_key"] == m2["content_key"] and m2["previous_version"] == n - 1


def test_crash_between_write_and_rename_leaves_no_version(project, monkeypatch):
    rep = project["reports"]
    before = versions.list_versions(rep / "a")

    def crash(tmp, nb_dir, n):
        assert (Path(tmp) / "report.html").is_file() and (Path(tmp) / "manifest.json").is_file()
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(versions, "commit_version", crash)
    o, _ = _run(project, only=["a"], jobs=1, force=True)
    assert o["a"].status == "FAILED" and "simulated crash" in o["a"].reason
    assert versions.list_versions(rep / "a") == before
    assert not [p for p in (rep / "a").iterdir() if p.name.startswith(".tmp-")]
    monkeypatch.undo()
    # a killed run leaves its temporary directory behind: the next run removes it
    leftover = rep / "a" / ".tmp-999999999-deadbeef"
    leftover.mkdir()
    (leftover / "report.html").write_text("half")
    o, _ = _run(project, only=["a"], jobs=1, force=True)
    assert o["a"].status == "PASS" and versions.list_versions(rep / "a") == [*before, before[-1] + 1]
    assert not leftover.exists()


def test_lock_contention_refuses_with_clear_message(project):
    with BucketLock(project["reports"], timeout_s=1):
        with pytest.raises(LockError, match=r"locked by another `dpnb run` \(pid \d+"):
            _run(project, only=["a"], jobs=1, lock_timeout=0.3)
    # released: the next run gets the lock
    o, _ = _run(project, only=["a"], jobs=1)
    assert o["a"].cached


def test_only_reports_upstream_versions_used(project):
    o, out = _run(project, only=["b"], jobs=1)
    n_a = versions.latest_version(project["reports"] / "a")
    assert f"using upstream a v{n_a}" in out and "b" in o


def test_only_unknown_name_and_missing_upstream(tmp_path, monkeypatch):
    monkeypatch.setenv("DPNB_ROOT", str(tmp_path))
    bfile = make_project(tmp_path, {"a": "pass", "b": "pass"}, {"a": {}, "b": {"depends_on": ["a"]}})
    with pytest.raises(PipelineError, match=r"unknown notebook 'bb' \(did you mean 'b'\?\)"):
        run_bucket(bfile, [], RunOptions(only=["bb"], progress=False))
    with pytest.raises(PipelineError, match="upstream notebook 'a' has no version"):
        run_bucket(bfile, [], RunOptions(only=["b"], progress=False), out=io.StringIO())


def test_timeout_fails_the_notebook_with_a_report(tmp_path, monkeypatch):
    monkeypatch.setenv("DPNB_ROOT", str(tmp_path))
    bfile = make_project(tmp_path, {"slow": "import time\ntime.sleep(120)"}, {"slow": {"timeout": 60}})
    out = io.StringIO()
    (o,) = run_bucket(bfile, [], RunOptions(jobs=1, timeout=4, progress=False), out=out)
    assert o.status == "FAILED" and "timed out after 4 s" in o.reason
    html = (tmp_path / "reports" / "t" / "slow" / "v1" / "report.html").read_text()
    assert "timed out after 4 s" in html


def test_exit_code_policy():
    ok, warn, gate_fail = Outcome("a", "PASS"), Outcome("b", "WARN", cached=True), Outcome("c", "FAIL")
    assert exit_code([ok, warn, gate_fail]) == 0  # a failed gate is a finding, not a broken run
    assert exit_code([ok, warn, gate_fail], strict=True) == 1
    assert exit_code([ok, warn], strict=True) == 0
    assert exit_code([ok, Outcome("d", "FAILED")]) == 1 and exit_code([ok, Outcome("e", "SKIPPED")]) == 1


# --- command line: bad input gives exit code 2 and writes nothing -----------------------------
def _cli(*argv):
    from dpnb.cli import main

    return main(["run", *argv, "--no-progress"])


def test_cli_bad_dag_and_unwritable_reports(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DPNB_ROOT", str(tmp_path))
    bfile = make_project(tmp_path, {"a": "pass"}, {"a": {}})
    set_dag(tmp_path, {"a": {"depends_on": ["zz"]}})
    assert _cli(str(bfile)) == 2
    assert "unknown notebook 'zz'" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()
    set_dag(tmp_path, {"a": {}})
    (tmp_path / "blocked").write_text("a file where the reports directory should be")
    assert _cli(str(bfile), "--reports-dir", str(tmp_path / "blocked")) == 2
    err = capsys.readouterr().err
    assert "blocked/t: reports directory is not writable" in err
    assert (tmp_path / "blocked").read_text().startswith("a file")


def test_cli_bad_label_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DPNB_ROOT", str(tmp_path))
    bfile = make_project(tmp_path, {"a": "pass"}, {"a": {}}, bucket={"label": "../x"})
    assert _cli(str(bfile)) == 2
    assert "characters outside [A-Za-z0-9_.-]" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists() and not (tmp_path / "x").exists()


def test_cli_lock_contention_exit_2(project, capsys):
    with BucketLock(project["reports"], timeout_s=1):
        assert _cli(str(project["bfile"]), "--only", "a", "--lock-timeout", "0.2") == 2
    assert "bucket is locked by another `dpnb run`" in capsys.readouterr().err
