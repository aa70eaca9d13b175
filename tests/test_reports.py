"""Reports: versions, manifest diffs, HTML header, index page, bucket roll-up (and its notebook)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dpnb.notebook import Results
from dpnb.reports import html as rhtml
from dpnb.reports import index, rollup, versions
from dpnb.reports.manifest import diff_manifests, flatten, package_versions

REPO = Path(__file__).resolve().parent.parent


def _version(bucket_dir: Path, nb: str, n: int, status: str, gates: dict | None = None, start="2026-01-01T00:00:00Z"):
    v = bucket_dir / nb / f"v{n}"
    v.mkdir(parents=True)
    res = Results(nb, bucket_dir.name)
    for name, (value, thr, op) in (gates or {}).items():
        res.gate(name, value, thr, op)
    d = res.to_dict()
    if status == "FAILED":
        d["status"] = "failed"
    (v / "results.json").write_text(json.dumps(d))
    (v / "manifest.json").write_text(json.dumps({"status": status, "version": n, "start_time": start,
                                                 "duration_s": 1.25}))
    return v


# --- versions ---------------------------------------------------------------------------------
def test_versions_are_numbered_and_immutable(tmp_path):
    nb_dir = tmp_path / "b" / "nb"
    assert versions.list_versions(nb_dir) == [] and versions.latest_version(nb_dir) is None
    for n in (1, 2, 10):
        tmp = versions.new_temp_dir(nb_dir)
        (tmp / "results.json").write_text(str(n))
        versions.commit_version(tmp, nb_dir, n)
    (nb_dir / "v3x").mkdir()
    assert versions.list_versions(nb_dir) == [1, 2, 10] and versions.latest_version(nb_dir) == 10
    tmp = versions.new_temp_dir(nb_dir)
    (tmp / "results.json").write_text("other")
    with pytest.raises(FileExistsError):
        versions.commit_version(tmp, nb_dir, 2)
    assert (nb_dir / "v2" / "results.json").read_text() == "2"


def test_clean_leftovers_keeps_live_runs(tmp_path):
    import os

    nb_dir = tmp_path / "b" / "nb"
    dead = nb_dir / ".tmp-999999999-00ff"
    alive = nb_dir / f".tmp-{os.getppid()}-00ff"  # our parent process is alive and is not us
    for d in (dead, alive):
        d.mkdir(parents=True)
    removed = versions.clean_leftovers(tmp_path / "b")
    assert removed == [dead] and alive.exists() and not dead.exists()


# --- manifest --------------------------------------------------------------------------------
def test_diff_manifests_lists_each_kind_of_change():
    old = {"parameters": {"seed": 1, "data": {"root": "/a"}}, "inputs": [{"path": "x", "sha256": "1"},
                                                                       {"path": "gone", "sha256": "2"}],
           "code": {"dpnb_version": "0.1", "source_sha256": "c1", "git_commit": "g1"},
           "key_parts": {"source": "s1"}, "upstream": {"u": {"version": 1, "results_sha256": "r1"}}}
    new = {"parameters": {"seed": 2, "data": {"root": "/a"}}, "inputs": [{"path": "x", "sha256": "9"},
                                                                       {"path": "new", "sha256": "3"}],
           "code": {"dpnb_version": "0.1", "source_sha256": "c2", "git_commit": "g1"},
           "key_parts": {"source": "s1"}, "upstream": {"u": {"version": 2, "results_sha256": "r2"}}}
    d = diff_manifests(old, new)
    assert d["parameters"] == [("seed", 1, 2)]
    assert d["inputs"] == {"added": ["new"], "removed": ["gone"], "changed": ["x"]}
    assert d["code"] == [("source_sha256", "c1", "c2")]
    assert d["source"] is False and d["upstream"] == [("u", 1, 2)]
    assert diff_manifests(None, new) == {"first": True}
    same = diff_manifests(new, new)
    assert not (same["parameters"] or same["code"] or same["upstream"] or any(same["inputs"].values()))
    assert flatten({"a": {"b": 1, "c": {"d": [1]}}}) == {"a.b": 1, "a.c.d": [1]}
    assert package_versions()["numpy"]


# --- HTML ------------------------------------------------------------------------------------
def test_header_shows_status_gates_previous_link_and_changes():
    res = Results("nb", "b1")
    res.gate("masked_fraction", 0.07, 0.05, "<", unit="", description="masked < 5%")
    man = {"notebook": "nb", "bucket": "b1", "version": 3, "previous_version": 2, "status": "FAIL",
           "start_time": "t0", "duration_s": 2.5, "content_key": "abcdef0123456789", "code": {}}
    diff = {"first": False, "parameters": [("seed", 1, 2)], "inputs": {"changed": ["/d/r1.root"]},
            "code": [], "source": True, "upstream": []}
    h = rhtml.header_html(man, res.to_dict(), diff)
    assert 'data-status="FAIL"' in h and "masked_fraction" in h and "masked &lt; 5%" in h
    assert 'href="../v2/report.html"' in h and "previous version v2" in h
    assert "parameter <code>seed</code>: 1 &rarr; 2" in h and "input changed: <code>/d/r1.root</code>" in h
    assert "notebook source changed" in h
    first = rhtml.header_html(dict(man, previous_version=None), None, {"first": True})
    assert "no previous version" in first and "First version." in first and "No gates recorded." in first


def test_render_report_is_self_contained_with_hidden_code(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    ok = nbformat.v4.new_code_cell("print('hi')")
    ok.outputs = [nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "fig"})]
    bad = nbformat.v4.new_code_cell("1/0")
    bad.outputs = [nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero",
                                          traceback=["Traceback (most recent call last)", "ZeroDivisionError"])]
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), ok, bad]
    page = rhtml.render_report(nb, "<header id='hdr'>HEADER</header>")
    assert '<header id="hdr">HEADER</header>' in page  # (nbconvert normalises attribute quotes)
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in page
    assert "<script src=" not in page and "<link " not in page.lower().replace("<link rel=\"icon\"", "")
    assert 'id="dpnb-show-code"' in page and ":not(:checked) ~ main" in page
    assert "celltag_dpnb-error" in page and "ZeroDivisionError" in page


# --- index -----------------------------------------------------------------------------------
def test_index_lists_buckets_notebooks_status_and_links(tmp_path):
    b = tmp_path / "b1"
    _version(b, "lumi", 1, "PASS")
    _version(b, "lumi", 2, "WARN", start="2026-02-02T00:00:00Z")
    _version(b, "calib", 1, "FAILED")
    (b / "skim").mkdir()
    versions.write_last_run(b / "skim", {"status": "SKIPPED", "reason": "upstream calib FAILED"})
    _version(tmp_path / "b2", "lumi", 1, "PASS")
    path = index.write_index(tmp_path)
    page = path.read_text()
    data = index.collect(tmp_path)
    assert list(data) == ["b1", "b2"]
    rows = {r["notebook"]: r for r in data["b1"]}
    assert rows["lumi"]["status"] == "WARN" and rows["lumi"]["version"] == 2
    assert rows["calib"]["status"] == "FAILED" and rows["skim"]["status"] == "SKIPPED"
    assert "href='b1/lumi/v2/report.html'" in page and "href='b1/lumi/v1/report.html'" in page
    assert "2026-02-02T00:00:00Z" in page and "1.2 s" in page or "1.3 s" in page
    for s in ("WARN", "FAILED", "SKIPPED", "PASS"):
        assert f'data-status="{s}"' in page
    assert "upstream calib FAILED" in page and "<script" not in page
    # rows follow the run order of the DAG (notebooks not in it last), not the alphabet
    assert [r["notebook"] for r in index.collect(tmp_path, ["skim", "lumi"])["b1"]] == ["skim", "lumi", "calib"]
    page = index.write_index(tmp_path, order=["lumi", "calib", "skim"]).read_text()
    assert page.index("b1/lumi/v2") < page.index("upstream calib FAILED")


# --- roll-up ---------------------------------------------------------------------------------
def test_rollup_counts_and_verdicts(tmp_path):
    b = tmp_path / "demo"
    _version(b, "good", 1, "PASS", {"g1": (1, 2, "<")})
    _version(b, "warned", 1, "WARN")
    v_inj = _version(b, "bad", 2, "FAIL", {"g2": (5, 2, "<"), "g3": (1, 2, "<")})
    _version(b, "bad", 1, "PASS")
    s = rollup.rollup("demo", ["good", "bad", "missing"], {"bad": str(v_inj)}, b)
    assert s.counts == {"pass": 1, "warn": 0, "fail": 1, "failed": 0, "not run": 1}
    assert s.verdict == "fail"
    table = s.notebook_table()
    bad = table.set_index("notebook").loc["bad"]
    assert bad["fail"] == 1 and bad["version"] == 2 and bad["gates"] == 2
    assert len(s.gates_table()) == 3
    assert rollup.rollup("demo", ["good"], {}, b).verdict == "pass"
    assert rollup.rollup("demo", ["good", "missing"], {}, b).verdict == "warn"
    assert rollup.rollup("demo", [], {}, b).verdict == "warn"
    _version(b, "crashed", 1, "FAILED")
    assert rollup.rollup("demo", ["good", "crashed"], {}, b).counts["failed"] == 1


def test_record_gates_roll_up(tmp_path):
    class Ctx:
        def __init__(self):
            self.results = Results("bucket_summary", "demo")

        def __getattr__(self, name):
            return getattr(self.results, name)

    b = tmp_path / "demo"
    _version(b, "good", 1, "PASS")
    _version(b, "crashed", 1, "FAILED")
    ctx = Ctx()
    assert rollup.record_gates(ctx, rollup.rollup("demo", ["good", "crashed"], {}, b)) == "fail"
    assert ctx.results.gates["failing_notebooks"]["verdict"] == "fail"
    ctx = Ctx()
    rollup.record_gates(ctx, rollup.rollup("demo", ["good", "crashed"], {}, b), max_failing=1)
    assert ctx.results.gates["failing_notebooks"]["verdict"] == "pass"
    assert ctx.results.values["notebooks_failed"]["value"] == 1


def test_bucket_summary_notebook_runs_with_default_parameters(tmp_path, monkeypatch):
    """The real notebook under plain papermill, no injection: reads reports/demo/*/ of the project."""
    import papermill as pm

    (tmp_path / "parameters" / "buckets").mkdir(parents=True)
    shutil.copy(REPO / "parameters" / "defaults.yaml", tmp_path / "parameters")
    shutil.copytree(REPO / "parameters" / "defaults", tmp_path / "parameters" / "defaults")
    (tmp_path / "parameters" / "buckets" / "demo.yaml").write_text("label: demo\nruns: ['1:1-40']\n")
    (tmp_path / "parameters" / "pipeline.yaml").write_text(
        "notebooks:\n  lumi: {path: notebooks/lumi.ipynb}\n  calib: {path: notebooks/calib.ipynb}\n"
        "  bucket_summary: {path: notebooks/bucket_summary.ipynb, depends_on: ['*']}\n")
    _version(tmp_path / "reports" / "demo", "lumi", 1, "FAIL", {"lumi_gap": (5.0, 1.0, "<")})
    monkeypatch.setenv("DPNB_ROOT", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "agg")
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(REPO / "notebooks" / "bucket_summary.ipynb"), str(out), kernel_name="python3",
                        progress_bar=False, cwd=str(REPO / "notebooks"))
    res = json.loads((tmp_path / "reports" / "_scratch" / "demo" / "bucket_summary" / "results.json").read_text())
    assert res["values"]["notebooks_fail"]["value"] == 1 and res["values"]["notebooks_not_run"]["value"] == 1
    assert res["values"]["overall_verdict"]["value"] == "fail"
    assert res["gates"]["failing_notebooks"]["verdict"] == "fail" and res["status"] == "fail"
    text = out.read_text()
    assert "image/png" in text and "lumi_gap" in text
