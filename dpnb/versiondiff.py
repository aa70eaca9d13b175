"""What changed between two versions of a report: parameters, inputs, code and every number.

``diff_versions(reports_dir, bucket, notebook, a, b)`` reads both versions'
``manifest.json`` and ``results.json``; ``render_diff_html`` turns that into one
self-contained page. Numbers are listed most significant change first: by
``|new - old| / sqrt(err_old^2 + err_new^2)`` where both carry an uncertainty, else by
relative change.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError
from .review import _version_dir

__all__ = ["ValueChange", "VersionDiff", "diff_results", "diff_versions", "render_diff_html", "write_diff_page"]


@dataclass
class ValueChange:
    name: str
    old: object
    new: object
    unit: str | None = None
    difference: float | None = None
    significance: float | None = None  # in standard deviations
    relative: float | None = None

    @property
    def changed(self) -> bool:
        return self.old != self.new


@dataclass
class VersionDiff:
    bucket: str
    notebook: str
    old_version: int
    new_version: int
    values: list[ValueChange] = field(default_factory=list)
    gates: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    manifest: dict = field(default_factory=dict)


def _num(x):
    return x if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def diff_results(old: dict, new: dict) -> tuple[list[ValueChange], list[tuple]]:
    """Compare two ``results.json`` documents; returns (value changes sorted, gate verdict changes)."""
    ov, nv = old.get("values") or {}, new.get("values") or {}
    changes: list[ValueChange] = []
    for name in sorted(set(ov) | set(nv)):
        o, n = ov.get(name) or {}, nv.get(name) or {}
        c = ValueChange(name, o.get("value"), n.get("value"), n.get("unit") or o.get("unit"))
        a, b = _num(c.old), _num(c.new)
        if a is not None and b is not None:
            c.difference = b - a
            if a != 0:
                c.relative = (b - a) / abs(a)
            ea, eb = _num(o.get("error")), _num(n.get("error"))
            if ea is not None and eb is not None and (ea > 0 or eb > 0):
                c.significance = abs(b - a) / math.hypot(ea, eb)
        changes.append(c)

    def order(c: ValueChange):
        if not c.changed:
            return (3, 0.0, c.name)
        if c.significance is not None:
            return (0, -c.significance, c.name)
        if c.relative is not None:
            return (1, -abs(c.relative), c.name)
        return (2, 0.0, c.name)

    changes.sort(key=order)
    og, ng = old.get("gates") or {}, new.get("gates") or {}
    gates = [
        (g, (og.get(g) or {}).get("verdict"), (ng.get(g) or {}).get("verdict"))
        for g in sorted(set(og) | set(ng))
        if (og.get(g) or {}).get("verdict") != (ng.get(g) or {}).get("verdict")
    ]
    return changes, gates


def _load(vdir: Path, name: str) -> dict:
    path = vdir / name
    if not path.exists():
        have = sorted(p.name for p in vdir.parent.glob("v*")) if vdir.parent.exists() else []
        msg = f"{path} not found (versions that exist: {have or 'none'})"
        raise InputError(msg)
    return json.loads(path.read_text())


def diff_versions(reports_dir, bucket: str, notebook: str, old: int, new: int) -> VersionDiff:
    """Diff two versions of one report."""
    from .reports.manifest import diff_manifests

    reports_dir = Path(reports_dir)
    da, db = (_version_dir(reports_dir, bucket, notebook, v) for v in (old, new))
    values, gates = diff_results(_load(da, "results.json"), _load(db, "results.json"))
    manifest = diff_manifests(_load(da, "manifest.json"), _load(db, "manifest.json"))
    return VersionDiff(bucket, notebook, int(old), int(new), values, gates, manifest)


def _fmt(x) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.6g}"
    if isinstance(x, (list, dict)):
        text = json.dumps(x)
        return text if len(text) < 80 else text[:77] + "…"
    return str(x)


def render_diff_html(d: VersionDiff) -> str:
    """One self-contained HTML page (inline CSS, no scripts); every string is escaped."""
    e = html.escape
    title = f"{d.bucket} / {d.notebook}: v{d.old_version} → v{d.new_version}"
    rows = []
    for c in d.values:
        if not c.changed:
            continue
        sig = "" if c.significance is None else f"{c.significance:.2f} σ"
        rel = "" if c.relative is None else f"{100 * c.relative:+.3g} %"
        rows.append(
            f"<tr><td>{e(c.name)}</td><td>{e(_fmt(c.old))}</td><td>{e(_fmt(c.new))}</td>"
            f"<td>{e(_fmt(c.difference))}</td><td>{e(rel)}</td><td>{e(sig)}</td><td>{e(c.unit or '')}</td></tr>"
        )
    unchanged = sum(1 for c in d.values if not c.changed)
    m = d.manifest
    param_rows = "".join(
        f"<tr><td>{e(str(k))}</td><td>{e(_fmt(o))}</td><td>{e(_fmt(n))}</td></tr>" for k, o, n in m.get("parameters", [])
    )
    inputs = m.get("inputs") or {}
    input_items = "".join(
        f"<li>{e(kind)}: {e(p)}</li>" for kind in ("added", "removed", "changed") for p in inputs.get(kind, [])
    )
    code_rows = "".join(
        f"<tr><td>{e(str(k))}</td><td>{e(_fmt(o))}</td><td>{e(_fmt(n))}</td></tr>" for k, o, n in m.get("code", [])
    )
    gate_rows = "".join(
        f"<tr><td>{e(g)}</td><td>{e(str(o))}</td><td>{e(str(n))}</td></tr>" for g, o, n in d.gates
    )
    up_rows = "".join(
        f"<tr><td>{e(str(k))}</td><td>v{e(str(o))}</td><td>v{e(str(n))}</td></tr>" for k, o, n in m.get("upstream", [])
    )
    css = (
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}th{background:#f3f3f3}"
        "h2{margin-top:1.5em}.none{color:#777}"
    )
    none = '<p class="none">no change</p>'
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title><style>{css}</style></head>
<body>
<h1>{e(title)}</h1>
<p><a href="v{d.old_version}/report.html">v{d.old_version} report</a> ·
<a href="v{d.new_version}/report.html">v{d.new_version} report</a></p>
<h2>Recorded numbers</h2>
{('<table id="value-changes"><tr><th>name</th><th>old</th><th>new</th><th>difference</th><th>relative</th>'
  '<th>significance</th><th>unit</th></tr>' + ''.join(rows) + '</table>') if rows else none}
<p class="none">{unchanged} recorded numbers unchanged.</p>
<h2>Gate verdicts</h2>
{('<table id="gate-changes"><tr><th>gate</th><th>old</th><th>new</th></tr>' + gate_rows + '</table>') if gate_rows else none}
<h2>Parameters</h2>
{('<table id="parameter-changes"><tr><th>key</th><th>old</th><th>new</th></tr>' + param_rows + '</table>') if param_rows else none}
<h2>Inputs</h2>
{('<ul id="input-changes">' + input_items + '</ul>') if input_items else none}
<h2>Code</h2>
{('<table id="code-changes"><tr><th>field</th><th>old</th><th>new</th></tr>' + code_rows + '</table>') if code_rows else none}
{'<p>Notebook source changed.</p>' if m.get('source') else ''}
<h2>Upstream results</h2>
{('<table><tr><th>notebook</th><th>old</th><th>new</th></tr>' + up_rows + '</table>') if up_rows else none}
</body></html>
"""


def write_diff_page(reports_dir, bucket: str, notebook: str, old: int, new: int) -> Path:
    """Write ``reports/<bucket>/<notebook>/diff-v<old>-v<new>.html`` (atomically) and return its path."""
    import os

    d = diff_versions(reports_dir, bucket, notebook, old, new)
    out = Path(reports_dir) / bucket / notebook / f"diff-v{int(old)}-v{int(new)}.html"
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(render_diff_html(d), encoding="utf-8")
    os.replace(tmp, out)
    return out
