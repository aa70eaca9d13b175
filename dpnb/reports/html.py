"""Self-contained ``report.html`` of one executed notebook (nbconvert, template "lab").

What makes it self-contained and readable offline: images are data URIs (``embed_images``
plus the lab template's inline outputs), CSS is inlined, and the template's CDN scripts
(require.js, MathJax, mermaid, widget manager) are dropped, so a browser loads nothing
from the network and logs no errors. Code inputs are hidden by a pure-CSS checkbox toggle
("show code"), which works without JavaScript; the failing cell of a FAILED notebook keeps
its input visible. A header shows bucket, notebook, version, status, the gates table, the
link to the previous version and what changed, a link to the full diff page against the
previous version (``../diff-v<prev>-v<N>.html``, written with the index) and a link to the
bucket's sign-off page (``../../reviews.html``; the review state itself is not in the
immutable report, since a review comes after the version is written).
"""

from __future__ import annotations

import functools
import html
from typing import Any, Mapping

__all__ = ["render_report", "header_html", "STATUS_CLASS", "badge"]

#: per-bucket sign-off page written with the index (dpnb.reports.index); report.html is immutable,
#: so it links there instead of showing a review state that could go stale
_REVIEWS_PAGE = "reviews.html"
STATUS_CLASS = {"PASS": "pass", "WARN": "warn", "FAIL": "fail", "FAILED": "failed", "SKIPPED": "skipped"}

BADGE_CSS = """
.dpnb-badge{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600;font-size:90%;color:#fff}
.dpnb-badge.pass{background:#2e7d32}.dpnb-badge.warn{background:#ef8f00}.dpnb-badge.fail{background:#c62828}
.dpnb-badge.failed{background:#6a1b9a}.dpnb-badge.skipped{background:#757575}.dpnb-badge.none{background:#9e9e9e}
"""

_HEADER_CSS = BADGE_CSS + """
.dpnb-header{font-family:system-ui,sans-serif;margin:12px 16px;padding:10px 14px;border:1px solid #ccc;
  border-radius:6px;background:#fafafa}
.dpnb-header h1{font-size:130%;margin:0 0 6px 0}
.dpnb-header table{border-collapse:collapse;margin:6px 0}
.dpnb-header th,.dpnb-header td{border:1px solid #ddd;padding:2px 8px;text-align:left;font-size:90%}
.dpnb-meta{color:#555;font-size:90%}
.dpnb-toggle{font-family:system-ui,sans-serif;margin:0 16px;cursor:pointer;user-select:none}
#dpnb-show-code:not(:checked) ~ main .jp-CodeCell:not(.celltag_dpnb-error) .jp-Cell-inputWrapper{display:none}
"""

_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{% block extra_css %}<style type="text/css">{{ resources.dpnb_css }}</style>{% endblock extra_css %}
{%- block body_header -%}
<body class="jp-Notebook" data-jp-theme-light="true" data-jp-theme-name="JupyterLab Light">
{{ resources.dpnb_header }}
<input type="checkbox" id="dpnb-show-code">
<label class="dpnb-toggle" for="dpnb-show-code">show code</label>
<main>
{%- endblock body_header -%}
"""


def badge(status: str | None) -> str:
    """An HTML status badge (PASS / WARN / FAIL / FAILED / SKIPPED)."""
    s = (status or "none").upper()
    cls = STATUS_CLASS.get(s, "none")
    return f'<span class="dpnb-badge {cls}" data-status="{html.escape(s)}">{html.escape(s)}</span>'


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return html.escape(str(v)) if v is not None else ""


def _changes_html(diff: Mapping) -> str:
    if diff.get("first", True):
        return "<p>First version.</p>"
    items = []
    for k, a, b in diff.get("parameters", []):
        items.append(f"<li>parameter <code>{html.escape(k)}</code>: {_fmt(a)!s} &rarr; {_fmt(b)!s}</li>")
    inp = diff.get("inputs") or {}
    for what in ("added", "removed", "changed"):
        for p in inp.get(what, []):
            items.append(f"<li>input {what}: <code>{html.escape(p)}</code></li>")
    for k, a, b in diff.get("code", []):
        items.append(f"<li>code {html.escape(k)}: {_fmt(a)} &rarr; {_fmt(b)}</li>")
    if diff.get("source"):
        items.append("<li>notebook source changed</li>")
    for k, a, b in diff.get("upstream", []):
        items.append(f"<li>upstream <code>{html.escape(k)}</code> results changed (v{_fmt(a)} &rarr; v{_fmt(b)})</li>")
    if not items:
        items.append("<li>nothing recorded changed (rerun forced)</li>")
    return "<ul class='dpnb-changes'>" + "".join(items) + "</ul>"


def header_html(manifest: Mapping, results: Mapping | None, diff: Mapping) -> str:
    """The report header: identity, status badge, gates table, previous-version link, what changed."""
    m = manifest
    gates = (results or {}).get("gates") or {}
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{_fmt(g.get('value'))} {_fmt(g.get('unit'))}</td>"
        f"<td>{_fmt(g.get('op'))} {_fmt(g.get('threshold'))}</td><td>{badge(g.get('verdict'))}</td>"
        f"<td>{_fmt(g.get('description'))}</td></tr>"
        for name, g in sorted(gates.items())
    )
    gates_html = (
        "<table class='dpnb-gates'><thead><tr><th>gate</th><th>value</th><th>threshold</th><th>verdict</th>"
        f"<th>description</th></tr></thead><tbody>{rows}</tbody></table>"
        if rows else "<p class='dpnb-gates-none'>No gates recorded.</p>"
    )
    prev = m.get("previous_version")
    prev_html = (f'<a class="dpnb-prev" href="../v{int(prev)}/report.html">previous version v{int(prev)}</a>'
                 if prev else "no previous version")
    diff_html = ""
    if prev and m.get("version"):
        diff_html = (f'<p><a class="dpnb-diff" href="../diff-v{int(prev)}-v{int(m["version"])}.html">'
                     f'every change since v{int(prev)}: parameters, inputs, code and each recorded number</a></p>')
    error = m.get("error")
    err_html = f"<p class='dpnb-error'><b>Execution failed:</b> {html.escape(str(error))}</p>" if error else ""
    code = m.get("code") or {}
    return (
        "<header class='dpnb-header'>"
        f"<h1>{html.escape(str(m.get('notebook')))} &mdash; bucket {html.escape(str(m.get('bucket')))} "
        f"&mdash; v{_fmt(m.get('version'))} {badge(m.get('status'))}</h1>"
        f"<p class='dpnb-meta'>started {_fmt(m.get('start_time'))} &middot; {float(m.get('duration_s') or 0):.1f} s"
        f" &middot; dpnb {_fmt(code.get('dpnb_version'))} (git {_fmt((code.get('git_commit') or '')[:10])}"
        f"{' dirty' if code.get('git_dirty') else ''}) &middot; key {_fmt(str(m.get('content_key'))[:12])}"
        f" &middot; {prev_html} &middot; <a href='../../../index.html'>index</a>"
        f" &middot; <a class='dpnb-signoff' href='../../{_REVIEWS_PAGE}#nb-{html.escape(str(m.get('notebook')))}'>"
        "sign-off (reviews of this bucket)</a></p>"
        f"{err_html}<h2 style='font-size:110%'>Gates</h2>{gates_html}"
        f"<h2 style='font-size:110%'>What changed</h2>{_changes_html(diff)}{diff_html}"
        "</header>"
    )


def render_report(nb, header: str) -> str:
    """HTML of the executed notebook ``nb`` (an nbformat node) with ``header`` on top."""
    nb = _mark_error_cells(nb)
    body, _ = _exporter().from_notebook_node(nb, resources={"dpnb_header": header, "dpnb_css": _HEADER_CSS})
    return body


@functools.lru_cache(maxsize=1)
def _exporter():
    """One exporter per process: its template environment is compiled once."""
    import jinja2
    from nbconvert import HTMLExporter

    return HTMLExporter(
        template_name="lab",
        extra_loaders=[jinja2.DictLoader({"dpnb_report.html.j2": _TEMPLATE})],
        template_file="dpnb_report.html.j2",
        embed_images=True,
    )


def warm() -> None:
    """Import nbconvert and compile the template now (the runner's worker server does this once)."""
    import nbformat

    render_report(nbformat.v4.new_notebook(), "")


def _mark_error_cells(nb):
    """Tag the cell papermill marked as failing so its input stays visible."""
    import copy

    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        pm = cell.get("metadata", {}).get("papermill", {})
        if cell.cell_type == "code" and (pm.get("exception") or any(o.get("output_type") == "error"
                                                                   for o in cell.get("outputs", []))):
            tags = list(cell.metadata.get("tags", []))
            cell.metadata["tags"] = [*tags, "dpnb-error"]
    return nb
