"""``reports/index.html``: buckets x notebooks with status, version, date, duration and links.

Self-contained (inline CSS, no scripts). The status shown is that of the latest attempt:
``last_run.json`` says SKIPPED when the notebook was skipped after its latest version;
otherwise the latest version's manifest status (PASS / WARN / FAIL from gates, FAILED).
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from . import versions
from .html import BADGE_CSS, badge

__all__ = ["collect", "render_index", "write_index"]

_CSS = BADGE_CSS + """
body{font-family:system-ui,sans-serif;margin:20px;color:#222}
table{border-collapse:collapse;margin-bottom:24px}
th,td{border:1px solid #ddd;padding:4px 10px;text-align:left;font-size:92%}
th{background:#f2f2f2}
.older a{color:#666;margin-right:4px;font-size:85%}
"""


def collect(reports_dir: str | os.PathLike) -> dict[str, list[dict]]:
    """``{bucket: [row, ...]}`` with one row per notebook directory that has a version or a last run."""
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
        if rows:
            out[bdir.name] = rows
    return out


def render_index(data: dict[str, list[dict]]) -> str:
    """The index page for ``collect()`` output."""
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>dpnb reports</title>",
             f"<style>{_CSS}</style></head><body><h1>dpnb reports</h1>"]
    if not data:
        parts.append("<p>No reports yet. Run <code>dpnb run parameters/buckets/&lt;label&gt;.yaml</code>.</p>")
    for bucket, rows in data.items():
        b = html.escape(bucket)
        parts.append(f"<h2 id='bucket-{b}'>bucket {b}</h2><table class='dpnb-index' data-bucket='{b}'><thead><tr>"
                     "<th>notebook</th><th>status</th><th>version</th><th>date (UTC)</th><th>duration</th>"
                     "<th>older versions</th><th>note</th></tr></thead><tbody>")
        for r in rows:
            nb = html.escape(r["notebook"])
            v = r["version"]
            link = f"<a class='report-link' href='{b}/{nb}/v{v}/report.html'>v{v}</a>" if v else "&ndash;"
            older = " ".join(f"<a href='{b}/{nb}/v{o}/report.html'>v{o}</a>" for o in reversed(r["versions"][:-1]))
            dur = f"{r['duration_s']:.1f} s" if isinstance(r.get("duration_s"), (int, float)) else ""
            parts.append(
                f"<tr data-notebook='{nb}'><td>{nb}</td><td>{badge(r['status'])}</td><td>{link}</td>"
                f"<td>{html.escape(str(r.get('start_time') or ''))}</td><td>{dur}</td>"
                f"<td class='older'>{older}</td><td>{html.escape(str(r.get('reason') or ''))}</td></tr>"
            )
        parts.append("</tbody></table>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_index(reports_dir: str | os.PathLike) -> Path:
    """Rewrite ``<reports_dir>/index.html`` atomically; return its path."""
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = reports_dir / "index.html"
    tmp = path.with_name(f".index.html.tmp-{os.getpid()}")
    tmp.write_text(render_index(collect(reports_dir)))
    os.replace(tmp, path)
    return path
