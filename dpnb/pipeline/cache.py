"""Content keys: what decides whether a notebook must run again.

A notebook's content key is the sha256 of a canonical JSON document holding

* ``source``   - the notebook source (cell types, sources and tags; no outputs, no metadata noise),
* ``params``   - the resolved parameters it receives (other notebooks' options left out),
* ``inputs``   - sha256 of every file under the data paths it declares in ``pipeline.yaml``,
* ``code``     - the dpnb version and a hash of the dpnb package source files (robust for dirty trees),
* ``upstream`` - sha256 of each upstream notebook's ``results.json``.

File checksums are cached by ``(path, size, mtime_ns)`` in a small JSON file so a cached
rerun of a bucket only stats its inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Iterable, Mapping

__all__ = [
    "canonical_json",
    "sha256_bytes",
    "notebook_source_hash",
    "key_parameters",
    "FileHashCache",
    "package_source_hash",
    "code_version",
    "git_state",
    "content_key",
]

# parameters that say where things go or how work is spread, not what is computed
# (the local and the Dask executor give identical results)
_KEY_EXCLUDED = ("reports_dir", "executor", "cache_dir")


def canonical_json(obj: Any) -> str:
    """Compact JSON with sorted keys: equal objects give equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def notebook_source_hash(nb: Mapping) -> str:
    """sha256 of a notebook's cells (type, source, tags); outputs, counts and other metadata ignored."""
    cells = []
    for cell in nb.get("cells", []):
        src = cell.get("source", "")
        if isinstance(src, list):
            src = "".join(src)
        tags = sorted((cell.get("metadata") or {}).get("tags") or [])
        cells.append([cell.get("cell_type"), src, tags])
    return sha256_bytes(canonical_json(cells).encode())


def key_parameters(params: Mapping, notebook: str) -> dict:
    """The part of the resolved parameters that can change ``notebook``'s results."""
    out = {k: v for k, v in params.items() if k not in _KEY_EXCLUDED and k != "notebooks"}
    out["notebooks"] = {notebook: dict((params.get("notebooks") or {}).get(notebook) or {})}
    return out


class FileHashCache:
    """sha256 of files, remembered by (path, size, mtime_ns) in a JSON file."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path else None
        self._data: dict[str, list] = {}
        self._dirty = False
        if self.path and self.path.is_file():
            try:
                self._data = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self._data = {}  # a corrupt cache only costs a rehash

    def file_sha256(self, path: Path) -> str:
        st = path.stat()
        key = str(path)
        hit = self._data.get(key)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return hit[2]
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        digest = h.hexdigest()
        self._data[key] = [st.st_size, st.st_mtime_ns, digest]
        self._dirty = True
        return digest

    def hash_tree(self, root: str | os.PathLike) -> list[dict]:
        """Every regular file under ``root`` (or ``root`` itself) as ``{path, size, sha256}``, sorted."""
        root = Path(root)
        if root.is_file():
            files = [root]
        elif root.is_dir():
            files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
        else:
            return [{"path": str(root), "missing": True}]
        return [{"path": str(p), "size": p.stat().st_size, "sha256": self.file_sha256(p)} for p in files]

    def save(self) -> None:
        if not (self.path and self._dirty):
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(self._data, sort_keys=True))
        os.replace(tmp, self.path)
        self._dirty = False


def package_source_hash(package_dir: str | os.PathLike | None = None) -> str:
    """sha256 over the relative paths and contents of the dpnb package's source files."""
    pkg = Path(package_dir) if package_dir else Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for p in sorted(pkg.rglob("*")):
        if p.is_file() and p.suffix in (".py", ".j2", ".json", ".css", ".js") and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(pkg)).encode() + b"\0")
            h.update(p.read_bytes() + b"\0")
    return h.hexdigest()


def git_state(root: str | os.PathLike) -> dict:
    """``{commit, dirty}`` of the git checkout at ``root`` (None when not a checkout)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": bool(status.strip())}


def code_version(with_git_root: str | os.PathLike | None = None) -> dict:
    """dpnb version and package source hash (the key part); git commit/dirty when a root is given."""
    from .. import __version__

    out = {"dpnb_version": __version__, "source_sha256": package_source_hash()}
    if with_git_root is not None:
        g = git_state(with_git_root)
        out["git_commit"], out["git_dirty"] = g["commit"], g["dirty"]
    return out


def content_key(source_sha256: str, params: Mapping, inputs: Iterable[Mapping], code: Mapping,
                upstream: Mapping[str, str]) -> str:
    """sha256 of the canonical JSON of every ingredient (see the module docstring)."""
    doc = {
        "source": source_sha256,
        "params": params,
        "inputs": [[i.get("path"), i.get("sha256"), bool(i.get("missing"))] for i in inputs],
        "code": {"dpnb_version": code.get("dpnb_version"), "source_sha256": code.get("source_sha256")},
        "upstream": dict(upstream),
    }
    return sha256_bytes(canonical_json(doc).encode())
