"""Diffs between two report versions: known changes come out, most significant first, escaped."""

from __future__ import annotations

import json

import pytest

from dpnb.cli import main
from dpnb.errors import InputError
from dpnb.versiondiff import diff_results, diff_versions, write_diff_page


def _results(values, gates):
    return {"schema": 1, "values": values, "gates": gates}


def _write(reports, v, values, gates, params, inputs):
    d = reports / "b1" / "lumi" / f"v{v}"
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(_results(values, gates)))
    (d / "manifest.json").write_text(json.dumps({
        "parameters": params, "inputs": inputs,
        "code": {"dpnb_version": "0.1.0", "source_sha256": f"s{v}"}, "key_parts": {"source": "x"},
    }))


@pytest.fixture
def two_versions(tmp_path):
    _write(tmp_path, 1,
           {"lumi_pb": {"value": 100.0, "error": 1.0, "unit": "pb^-1"}, "n_runs": {"value": 40},
            "ratio": {"value": 2.0}, "same": {"value": 5}},
           {"target": {"verdict": "pass"}},
           {"label": "b1", "notebooks": {"lumi": {"gap_s": 600}}},
           [{"path": "a.txt", "sha256": "1"}, {"path": "b.txt", "sha256": "2"}])
    _write(tmp_path, 2,
           {"lumi_pb": {"value": 104.0, "error": 1.0, "unit": "pb^-1"}, "n_runs": {"value": 41},
            "ratio": {"value": 2.2}, "same": {"value": 5}, "new_<b>": {"value": 1}},
           {"target": {"verdict": "fail"}},
           {"label": "b1", "notebooks": {"lumi": {"gap_s": 900}}},
           [{"path": "a.txt", "sha256": "1"}, {"path": "b.txt", "sha256": "3"}, {"path": "c.txt", "sha256": "4"}])
    return tmp_path


def test_numbers_most_significant_first(two_versions):
    d = diff_versions(two_versions, "b1", "lumi", 1, 2)
    changed = [c for c in d.values if c.changed]
    assert changed[0].name == "lumi_pb"
    assert changed[0].difference == pytest.approx(4.0)
    assert changed[0].significance == pytest.approx(4.0 / 2**0.5)
    # without uncertainties: by relative change (ratio +10 % before n_runs +2.5 %)
    assert [c.name for c in changed[1:3]] == ["ratio", "n_runs"]
    assert [c.name for c in d.values if not c.changed] == ["same"]
    assert d.gates == [("target", "pass", "fail")]
    assert d.manifest["parameters"] == [("notebooks.lumi.gap_s", 600, 900)]
    assert d.manifest["inputs"] == {"added": ["c.txt"], "removed": [], "changed": ["b.txt"]}
    assert ("source_sha256", "s1", "s2") in d.manifest["code"]


def test_page_escapes_and_cli(two_versions, capsys):
    path = write_diff_page(two_versions, "b1", "lumi", 1, 2)
    text = path.read_text()
    assert "new_&lt;b&gt;" in text and "new_<b>" not in text
    assert "notebooks.lumi.gap_s" in text and "2.83 σ" in text
    assert main(["diff", "b1", "lumi", "v1", "v2", "--reports-dir", str(two_versions)]) == 0
    assert "lumi_pb: 100.0 -> 104.0 (2.8 sigma)" in capsys.readouterr().out


def test_missing_version(two_versions):
    with pytest.raises(InputError, match="versions that exist"):
        diff_versions(two_versions, "b1", "lumi", 1, 9)
    assert main(["diff", "b1", "lumi", "v1", "v9", "--reports-dir", str(two_versions)]) == 2


def test_diff_results_handles_removed_values():
    changes, gates = diff_results(_results({"a": {"value": 1.0}}, {}), _results({}, {"g": {"verdict": "pass"}}))
    assert [(c.name, c.old, c.new) for c in changes] == [("a", 1.0, None)]
    assert gates == [("g", None, "pass")]


def test_index_links_the_diff_page_with_the_changed_numbers(two_versions):
    from dpnb.reports.index import write_index

    page = two_versions / "b1" / "lumi" / "diff-v1-v2.html"
    assert not page.exists()
    index = write_index(two_versions).read_text()
    assert page.exists()  # written lazily with the index
    text = page.read_text()
    assert "<script" not in text and "<link" not in text and "http" not in text  # self-contained
    assert "href='b1/lumi/diff-v1-v2.html'>v1 &rarr; v2</a>" in index
    assert "4 numbers changed, 1 gate verdict" in index
    listed = index[index.index("<ul class='changed-numbers'>"):index.index("</ul>", index.index("changed-numbers"))]
    # most significant first; the new value's name is escaped; the unchanged one is not listed
    assert listed.index("lumi_pb: 100 &rarr; 104 (2.8&sigma;)") < listed.index("ratio: 2 &rarr; 2.2 (+10%)")
    assert listed.index("ratio") < listed.index("n_runs: 40 &rarr; 41 (+2.5%)")
    assert "new_&lt;b&gt;: None &rarr; 1" in listed and "same" not in listed
    # a diff page is never rewritten: versions are immutable
    page.write_text("kept")
    write_index(two_versions)
    assert page.read_text() == "kept"


def test_report_header_links_diff_and_signoff_pages():
    from dpnb.reports.html import header_html

    man = {"notebook": "lumi", "bucket": "b1", "version": 2, "previous_version": 1, "status": "PASS"}
    head = header_html(man, {"gates": {}}, {"first": False})
    assert 'href="../diff-v1-v2.html"' in head and "href='../../reviews.html#nb-lumi'" in head
    first = header_html(dict(man, version=1, previous_version=None), {"gates": {}}, {"first": True})
    assert "diff-v" not in first and "reviews.html" in first
