"""``manifest.json``: the provenance of one report version, and what changed since the previous one."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Mapping

__all__ = ["KEY_PACKAGES", "package_versions", "flatten", "diff_manifests"]

KEY_PACKAGES = ("numpy", "numba", "uproot", "awkward", "pandas", "papermill", "nbconvert", "matplotlib", "iminuit")


def package_versions() -> dict:
    """Installed versions of the packages that shape the numbers (plus Python)."""
    out = {"python": platform.python_version()}
    for name in KEY_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    if isinstance(obj, Mapping) and obj:
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


def diff_manifests(old: Mapping | None, new: Mapping) -> dict:
    """What changed from ``old`` to ``new``: parameters, inputs, code, notebook source, upstream results.

    Returns ``{"first": True}`` when there is no previous manifest, else
    ``{"parameters": [(key, old, new)], "inputs": {"added", "removed", "changed"},
    "code": [(field, old, new)], "source": bool, "upstream": [(name, old, new)]}``.
    """
    if not old:
        return {"first": True}
    po, pn = flatten(old.get("parameters") or {}), flatten(new.get("parameters") or {})
    params = [(k, po.get(k), pn.get(k)) for k in sorted(set(po) | set(pn)) if po.get(k) != pn.get(k)]
    io = {i["path"]: i.get("sha256") for i in old.get("inputs") or []}
    inn = {i["path"]: i.get("sha256") for i in new.get("inputs") or []}
    inputs = {
        "added": sorted(set(inn) - set(io)),
        "removed": sorted(set(io) - set(inn)),
        "changed": sorted(p for p in set(io) & set(inn) if io[p] != inn[p]),
    }
    co, cn = old.get("code") or {}, new.get("code") or {}
    code = [(k, co.get(k), cn.get(k)) for k in ("dpnb_version", "source_sha256", "git_commit", "git_dirty")
            if co.get(k) != cn.get(k)]
    uo, un = old.get("upstream") or {}, new.get("upstream") or {}
    upstream = [
        (k, (uo.get(k) or {}).get("version"), (un.get(k) or {}).get("version"))
        for k in sorted(set(uo) | set(un))
        if (uo.get(k) or {}).get("results_sha256") != (un.get(k) or {}).get("results_sha256")
    ]
    return {
        "first": False,
        "parameters": params,
        "inputs": inputs,
        "code": code,
        "source": (old.get("key_parts") or {}).get("source") != (new.get("key_parts") or {}).get("source"),
        "upstream": upstream,
    }
