"""``reports/index.html``: buckets x notebooks with status, version, date, duration and links.

Self-contained (inline CSS, no scripts). The status shown is that of the latest attempt:
``last_run.json`` says SKIPPED when the notebook was skipped after its latest version;
otherwise the latest version's manifest status (PASS / WARN / FAIL from gates, FAILED).

Beside it:

* **review** - the sign-off of the *latest* version only (``approved by X`` / ``rejected by
  X`` / ``not reviewed``), from ``reports/<bucket>/reviews.jsonl`` (:mod:`dpnb.review`); an
  approval of an earlier version is mentioned but never carried over. A report version's
  ``report.html`` is immutable, so the sign-off lives here and in the per-bucket
  ``reports/<bucket>/reviews.html`` (every review, newest first, and the state of each
  notebook), both rewritten by :func:`write_index` - hence on every ``dpnb run`` and every
  ``dpnb review``. Reports link to ``../../reviews.html``.
* **changes** - the latest version against the previous one: a link to the diff page
  ``reports/<bucket>/<notebook>/diff-v<prev>-v<N>.html`` (:mod:`dpnb.versiondiff`, written
  here when missing; versions are immutable, so a diff page never goes stale) and the
  list of changed numbers, most significant first.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from . import versions
from .html import BADGE_CSS, badge

REVIEWS_PAGE = "reviews.html"
MAX_CHANGES_LISTED = 8

__all__ = ["collect", "render_index", "write_index"]

_CSS = BADGE_CSS + """
body{font-family:system-ui,sans-serif;margin:20px;color:#222}
table{border-collapse:collapse;margin-bottom:24px}
th,td{border:1px solid #ddd;padding:4px 10px;text-align:left;font-size:92%}
th{background:#f2f2f2}
.older a{color:#666;margin-right:4px;font-size:85%}
.review.approve{color:#2e7d32;font-weight:600}.review.reject{color:#c62828;font-weight:600}
.review.none{color:#777}.review-old{color:#777;font-size:85%}.log-altered{color:#c62828;font-weight:600}
details.changes summary{cursor:pointer}details.changes li{font-size:90%}
"""


def _project_order() -> list[str]:
    """The notebooks of the project's DAG in run order ([] outside a project or with a broken DAG)."""
    try:
        from ..params import project_root
        from ..pipeline.graph import load_graph

        return list(load_graph(project_root()).order)
    except Exception:  # the index is still written, rows alphabetical
        return []


def collect(reports_dir: str | os.PathLike, order: list[str] | None = None) -> dict[str, list[dict]]:
    """``{bucket: [row, ...]}`` with one row per notebook directory that has a version or a last
    run, in the DAG's run ``order`` (notebooks not in it after, alphabetical)."""
    reports_dir = Path(reports_dir)
    out: dict[str, list[dict]] = {}
    if not reports_dir.is_dir():
        return out
    for bdir in sorted(p for p in reports_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        rows = []
        for ndir in sorted(p for p in bdir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            vs = versions.list_versions(ndir)
            last = versions.read_last_run(ndir) or {}
            if not vs and not last:
                continue
            man = versions.read_json(versions.version_dir(ndir, vs[-1]) / "manifest.json") if vs else None
            man = man or {}
            status = "SKIPPED" if last.get("status") == "SKIPPED" or not vs else man.get("status", "PASS")
            rows.append({
                "notebook": ndir.name, "status": status, "version": vs[-1] if vs else None,
                "versions": vs, "start_time": man.get("start_time"), "duration_s": man.get("duration_s"),
                "reason": last.get("reason") if status == "SKIPPED" else man.get("error"),
            })
        rank = {name: i for i, name in enumerate(order or [])}
        rows.sort(key=lambda r: (rank.get(r["notebook"], len(rank)), r["notebook"]))
        _add_reviews(reports_dir, bdir.name, rows)
        _add_changes(reports_dir, bdir.name, rows)
        if rows:
            out[bdir.name] = rows
    return out


def _add_reviews(reports_dir: Path, bucket: str, rows: list[dict]) -> None:
    """Attach ``review`` (latest review of the latest version), ``approved_before`` and ``review_error``."""
    from ..review import ReviewLogError, read_reviews

    try:
        reviews = read_reviews(reports_dir, bucket)
        error = None
    except ReviewLogError as exc:
        reviews, error = [], str(exc)
    for r in rows:
        mine = [x for x in reviews if x.notebook == r["notebook"]]
        r["review"] = next((x for x in reversed(mine) if x.version == r["version"]), None)
        r["approved_before"] = next((x for x in reversed(mine) if x.version != r["version"]
                                     and x.verdict == "approve"), None)
        r["review_error"] = error
        r["reviews"] = mine
        r["bucket_reviews"] = reviews  # log order (oldest first)


def _add_changes(reports_dir: Path, bucket: str, rows: list[dict]) -> None:
    """Attach ``diff`` (latest against the previous version) when both versions can be read."""
    from ..errors import DpnbError
    from ..versiondiff import diff_versions

    for r in rows:
        r["diff"] = None
        vs = r["versions"]
        if len(vs) < 2:
            continue
        try:
            r["diff"] = diff_versions(reports_dir, bucket, r["notebook"], vs[-2], vs[-1])
        except (DpnbError, OSError, ValueError, KeyError, TypeError):
            r["diff"] = None  # a version without results/manifest (e.g. written by hand): no diff


def review_text(r: dict) -> tuple[str, str]:
    """(css class, text) of the sign-off state of a row's latest version."""
    if r.get("review_error"):
        return "log-altered", "review log altered"
    rev = r.get("review")
    if rev is None:
        return "none", "not reviewed" if r.get("version") else ""
    return rev.verdict, f"{'approved' if rev.verdict == 'approve' else 'rejected'} by {rev.by}"


def _review_cell(r: dict, b: str) -> str:
    cls, text = review_text(r)
    out = f"<span class='review {cls}' data-review='{html.escape(cls)}'>{html.escape(text)}</span>"
    rev = r.get("review")
    if rev is not None:
        out += f" <span class='review-old'>{html.escape(rev.time)}</span>"
    old = r.get("approved_before")
    if old is not None and (rev is None or rev.verdict != "approve"):
        out += (f"<br><span class='review-old'>(v{int(old.version)} was approved by {html.escape(old.by)}; "
                "approvals are not inherited)</span>")
    return out


def _changes_cell(r: dict, b: str) -> str:
    d = r.get("diff")
    if d is None:
        return ""
    nb = html.escape(r["notebook"])
    changed = [c for c in d.values if c.changed]
    link = (f"<a class='diff-link' href='{b}/{nb}/diff-v{d.old_version}-v{d.new_version}.html'>"
            f"v{d.old_version} &rarr; v{d.new_version}</a>")
    summary = f"{len(changed)} number{'s' if len(changed) != 1 else ''} changed"
    if d.gates:
        summary += f", {len(d.gates)} gate verdict{'s' if len(d.gates) != 1 else ''}"
    if not changed:
        return f"{link} &middot; {summary}"
    items = []
    for c in changed[:MAX_CHANGES_LISTED]:
        sig = f" ({c.significance:.1f}&sigma;)" if c.significance is not None else (
            f" ({100 * c.relative:+.3g}%)" if c.relative is not None else "")
        items.append(f"<li>{html.escape(c.name)}: {html.escape(_short(c.old))} &rarr; {html.escape(_short(c.new))}"
                     f"{sig}</li>")
    more = f"<li>&hellip; {len(changed) - MAX_CHANGES_LISTED} more</li>" if len(changed) > MAX_CHANGES_LISTED else ""
    return (f"{link}<details class='changes'><summary>{summary}</summary><ul class='changed-numbers'>"
            f"{''.join(items)}{more}</ul></details>")


def _short(x) -> str:
    if isinstance(x, float):
        return f"{x:.6g}"
    text = str(x)
    return text if len(text) <= 40 else text[:37] + "..."


def render_index(data: dict[str, list[dict]]) -> str:
    """The index page for ``collect()`` output."""
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>dpnb reports</title>",
             f"<style>{_CSS}</style></head><body><h1>dpnb reports</h1>"]
    if not data:
        parts.append("<p>No reports yet. Run <code>dpnb run parameters/buckets/&lt;label&gt;.yaml</code>.</p>")
    for bucket, rows in data.items():
        b = html.escape(bucket)
        err = next((r.get("review_error") for r in rows if r.get("review_error")), None)
        parts.append(f"<h2 id='bucket-{b}'>bucket {b}</h2>"
                     f"<p><a class='reviews-link' href='{b}/{REVIEWS_PAGE}'>sign-off of bucket {b}</a></p>")
        if err:
            parts.append(f"<p class='log-altered'>{html.escape(err)}</p>")
        parts.append(f"<table class='dpnb-index' data-bucket='{b}'><thead><tr>"
                     "<th>notebook</th><th>status</th><th>version</th><th>review (latest version)</th>"
                     "<th>changes since previous version</th><th>date (UTC)</th><th>duration</th>"
                     "<th>older versions</th><th>note</th></tr></thead><tbody>")
        for r in rows:
            nb = html.escape(r["notebook"])
            v = r["version"]
            link = f"<a class='report-link' href='{b}/{nb}/v{v}/report.html'>v{v}</a>" if v else "&ndash;"
            older = " ".join(f"<a href='{b}/{nb}/v{o}/report.html'>v{o}</a>" for o in reversed(r["versions"][:-1]))
            dur = f"{r['duration_s']:.1f} s" if isinstance(r.get("duration_s"), (int, float)) else ""
            parts.append(
                f"<tr data-notebook='{nb}'><td>{nb}</td><td>{badge(r['status'])}</td><td>{link}</td>"
                f"<td class='review-cell'>{_review_cell(r, b)}</td><td class='changes-cell'>{_changes_cell(r, b)}</td>"
                f"<td>{html.escape(str(r.get('start_time') or ''))}</td><td>{dur}</td>"
                f"<td class='older'>{older}</td><td>{html.escape(str(r.get('reason') or ''))}</td></tr>"
            )
        parts.append("</tbody></table>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_index(reports_dir: str | os.PathLike, order: list[str] | None = None) -> Path:
    """Rewrite ``<reports_dir>/index.html`` atomically; return its path. Rows follow ``order``
    (default: the project's DAG order)."""
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = reports_dir / "index.html"
    data = collect(reports_dir, _project_order() if order is None else order)
    for bucket, rows in data.items():
        _write_diff_pages(reports_dir, bucket, rows)
        _write_atomic(reports_dir / bucket / REVIEWS_PAGE, render_reviews(bucket, rows))
    _write_atomic(path, render_index(data))
    return path


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _write_diff_pages(reports_dir: Path, bucket: str, rows: list[dict]) -> None:
    """The diff page of each latest version against its previous one, when not written yet."""
    from ..versiondiff import render_diff_html

    for r in rows:
        d = r.get("diff")
        if d is None:
            continue
        page = reports_dir / bucket / r["notebook"] / f"diff-v{d.old_version}-v{d.new_version}.html"
        if not page.exists():
            _write_atomic(page, render_diff_html(d))


def render_reviews(bucket: str, rows: list[dict]) -> str:
    """``reports/<bucket>/reviews.html``: the sign-off state of each notebook's latest version and
    every review of the bucket, newest first (all names and comments escaped)."""
    e = html.escape
    b = e(bucket)
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             f"<title>sign-off of bucket {b}</title><style>{_CSS}</style></head><body>",
             f"<h1>Sign-off of bucket {b}</h1><p><a href='../index.html'>index</a> &middot; recorded with "
             "<code>dpnb review</code> in the append-only log <code>reviews.jsonl</code>; an approval names one "
             "version and is not carried over to later versions.</p>"]
    err = next((r.get("review_error") for r in rows if r.get("review_error")), None)
    if err:
        parts.append(f"<p class='log-altered' id='log-altered'>{e(err)}</p>")
    parts.append("<h2>Latest versions</h2><table class='dpnb-signoff'><thead><tr><th>notebook</th><th>version</th>"
                 "<th>status</th><th>review</th><th>comment</th></tr></thead><tbody>")
    for r in rows:
        nb = e(r["notebook"])
        v = r["version"]
        cls, text = review_text(r)
        rev = r.get("review")
        link = f"<a href='{nb}/v{v}/report.html'>v{v}</a>" if v else "&ndash;"
        parts.append(f"<tr id='nb-{nb}' data-notebook='{nb}'><td>{nb}</td><td>{link}</td><td>{badge(r['status'])}"
                     f"</td><td>{_review_cell(r, b)}</td><td>{e(rev.comment) if rev else ''}</td></tr>")
    parts.append("</tbody></table><h2>All reviews (newest first)</h2>")
    reviews = list(reversed(rows[0].get("bucket_reviews") or [])) if rows else []
    if not reviews:
        parts.append("<p class='review none'>No reviews recorded.</p>")
    else:
        parts.append("<table class='dpnb-reviews'><thead><tr><th>time (UTC)</th><th>notebook</th><th>version</th>"
                     "<th>verdict</th><th>by</th><th>comment</th><th>results sha256</th></tr></thead><tbody>")
        for x in reviews:
            parts.append(f"<tr><td>{e(x.time)}</td><td>{e(x.notebook)}</td>"
                         f"<td><a href='{e(x.notebook)}/v{int(x.version)}/report.html'>v{int(x.version)}</a></td>"
                         f"<td class='review {e(x.verdict)}'>{e(x.verdict)}</td><td>{e(x.by)}</td>"
                         f"<td>{e(x.comment)}</td><td><code>{e(x.results_sha256[:12])}</code></td></tr>")
        parts.append("</tbody></table>")
    parts.append("</body></html>\n")
    return "".join(parts)
