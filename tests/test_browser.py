"""A reviewer's view: real headless Chromium opens reports/index.html from file:// and follows a link."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from helpers_pipeline import make_project

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

PLOT_BODY = """import matplotlib.pyplot as plt
from dpnb.reports.figures import show

fig, ax = plt.subplots()
ax.plot([0, 1, 2], [0, 1, 4])
show(fig)
ctx.gate("points", 3, 2, ">", description="enough points")
"""

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)"),
]


@pytest.fixture
def reports(tmp_path, monkeypatch):
    monkeypatch.setenv("DPNB_ROOT", str(tmp_path))
    bfile = make_project(tmp_path, {"plotter": PLOT_BODY}, {"plotter": {}})
    from dpnb.pipeline.runner import RunOptions, run_bucket

    (o,) = run_bucket(bfile, [], RunOptions(jobs=1, progress=False), out=io.StringIO())
    assert o.status == "PASS", o.reason
    return tmp_path / "reports"


def test_index_link_report_gates_image_no_console_errors(reports):
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    remote: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: remote.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
            page.goto((reports / "index.html").as_uri())
            row = page.locator("tr[data-notebook='plotter']")
            assert row.locator("[data-status]").first.get_attribute("data-status") == "PASS"
            row.locator("a.report-link").click()
            page.wait_for_load_state("load")
            assert page.url.endswith("/t/plotter/v1/report.html")
            header = page.locator("header.dpnb-header")
            assert header.locator("[data-status]").first.get_attribute("data-status") == "PASS"
            gates = page.locator("table.dpnb-gates")
            assert gates.is_visible() and "points" in gates.inner_text() and "enough points" in gates.inner_text()
            img = page.locator("main img").first
            assert img.get_attribute("src").startswith("data:image/png;base64,")
            assert img.evaluate("i => i.complete && i.naturalWidth > 0")
            # code is hidden until "show code" is ticked
            code = page.locator("main .jp-CodeCell .jp-Cell-inputWrapper").last
            assert not code.is_visible()
            page.locator("label[for='dpnb-show-code']").click()
            assert code.is_visible()
        finally:
            browser.close()
    assert errors == []
    assert remote == []
