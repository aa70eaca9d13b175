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


def _new_page(browser, errors: list, remote: list):
    """A page that records console errors, page errors and requests to anything but file:/data:."""
    page = browser.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: remote.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
    return page


def test_index_link_report_gates_image_no_console_errors(reports):
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    remote: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = _new_page(browser, errors, remote)
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


SEED_BODY = """ctx.record("seed_seen", ctx.params["seed"], error=1.0)
ctx.record("fixed", 5)
ctx.gate("seed_small", ctx.params["seed"], 100000, "<", description="seed below 1e5")
"""
EVIL = "<script>alert('x')</script> Eve & co"


@pytest.fixture
def signed_off(tmp_path, monkeypatch):
    """Two versions (the seed changed) and a review of v2 by a reviewer whose name holds HTML."""
    monkeypatch.setenv("DPNB_ROOT", str(tmp_path))
    bfile = make_project(tmp_path, {"seeded": SEED_BODY}, {"seeded": {}})
    from dpnb.cli import main
    from dpnb.pipeline.runner import RunOptions, run_bucket

    for over in ([], ["seed=12349"]):
        (o,) = run_bucket(bfile, over, RunOptions(jobs=1, progress=False), out=io.StringIO())
        assert o.status == "PASS", o.reason
    reports = tmp_path / "reports"
    assert main(["review", "t", "seeded", "v2", "--approve", "--by", EVIL, "--comment", "<b>fine</b>",
                 "--reports-dir", str(reports)]) == 0
    return reports


def test_signed_off_index_diff_page_and_reviews_page(signed_off):
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    remote: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = _new_page(browser, errors, remote)
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto((signed_off / "index.html").as_uri())
            row = page.locator("tr[data-notebook='seeded']")
            review = row.locator("[data-review]")
            assert review.get_attribute("data-review") == "approve"
            assert review.inner_text() == f"approved by {EVIL}"  # shown as text, not run
            assert page.locator("script").count() == 0
            # the changed numbers, then the diff page
            row.locator("details.changes summary").click()
            assert "seed_seen: 12345 → 12349 (2.8σ)" in row.locator("ul.changed-numbers").inner_text()
            row.locator("a.diff-link").click()
            page.wait_for_load_state("load")
            assert page.url.endswith("/t/seeded/diff-v1-v2.html")
            changes = page.locator("#value-changes")
            assert changes.is_visible()
            first = changes.locator("tr").nth(1).locator("td")
            assert [first.nth(i).inner_text() for i in (0, 1, 2, 3)] == ["seed_seen", "12345", "12349", "4"]
            assert "fixed" not in changes.inner_text()
            assert "notebooks" not in page.locator("#parameter-changes").inner_text()
            assert "seed" in page.locator("#parameter-changes").inner_text()
            page.locator("a", has_text="v2 report").click()
            page.wait_for_load_state("load")
            assert page.url.endswith("/t/seeded/v2/report.html")
            # from the immutable report to the sign-off page regenerated by dpnb review
            page.locator("a.dpnb-diff").wait_for()
            page.locator("a.dpnb-signoff").click()
            page.wait_for_load_state("load")
            assert "/t/reviews.html" in page.url
            signoff = page.locator("tr#nb-seeded")
            assert signoff.locator("[data-review]").inner_text() == f"approved by {EVIL}"
            assert "<b>fine</b>" in signoff.inner_text()
            assert page.locator("table.dpnb-reviews b").count() == 0
        finally:
            browser.close()
    assert errors == [] and dialogs == [] and remote == []
