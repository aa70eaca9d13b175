"""Immutable report versions ``reports/<bucket>/<notebook>/v<N>/``, written atomically.

A version is assembled in a hidden temporary directory beside the versions
(``.tmp-<pid>-<random>``) and renamed to ``v<N>`` only when complete, so a crash before
the rename leaves no visible version; :func:`clean_leftovers` removes such leftovers on
the next run (under the bucket lock). ``last_run.json`` records the outcome of the last
attempt (e.g. SKIPPED) for the index.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
from pathlib import Path

from ..notebook import write_json_atomic

__all__ = [
    "list_versions",
    "latest_version",
    "version_dir",
    "new_temp_dir",
    "commit_version",
    "clean_leftovers",
    "read_json",
    "write_last_run",
    "read_last_run",
]

_VERSION_RE = re.compile(r"^v(\d+)$")
_TMP_RE = re.compile(r"^\.tmp-(\d+)-[0-9a-f]+$")


def list_versions(nb_dir: str | os.PathLike) -> list[int]:
    """Version numbers present under a notebook's report directory, ascending."""
    nb_dir = Path(nb_dir)
    if not nb_dir.is_dir():
        return []
    return sorted(int(m.group(1)) for p in nb_dir.iterdir() if (m := _VERSION_RE.match(p.name)) and p.is_dir())


def latest_version(nb_dir: str | os.PathLike) -> int | None:
    v = list_versions(nb_dir)
    return v[-1] if v else None


def version_dir(nb_dir: str | os.PathLike, n: int) -> Path:
    return Path(nb_dir) / f"v{int(n)}"


def new_temp_dir(nb_dir: str | os.PathLike) -> Path:
    """A fresh hidden directory beside the versions (same filesystem, so the rename is atomic)."""
    nb_dir = Path(nb_dir)
    nb_dir.mkdir(parents=True, exist_ok=True)
    tmp = nb_dir / f".tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    return tmp


def commit_version(tmp: str | os.PathLike, nb_dir: str | os.PathLike, n: int) -> Path:
    """Rename ``tmp`` to ``v<n>``; raises FileExistsError if that version exists (versions are immutable)."""
    target = version_dir(nb_dir, n)
    if target.exists():
        raise FileExistsError(errno.EEXIST, "report version already exists", str(target))
    try:
        os.rename(tmp, target)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise FileExistsError(errno.EEXIST, "report version already exists", str(target)) from None
        raise
    return target


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_leftovers(bucket_dir: str | os.PathLike) -> list[Path]:
    """Remove temporary directories of dead runs under ``reports/<bucket>/*/``; return what was removed."""
    removed = []
    bucket_dir = Path(bucket_dir)
    if not bucket_dir.is_dir():
        return removed
    for nb_dir in bucket_dir.iterdir():
        if not nb_dir.is_dir():
            continue
        for p in nb_dir.iterdir():
            m = _TMP_RE.match(p.name)
            if m and not (_pid_alive(int(m.group(1))) and int(m.group(1)) != os.getpid()):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


def read_json(path: str | os.PathLike) -> dict | None:
    """JSON content of ``path``, or None if absent or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_last_run(nb_dir: str | os.PathLike, entry: dict) -> None:
    """Record the outcome of the latest attempt (status, version, time, reason)."""
    write_json_atomic(Path(nb_dir) / "last_run.json", entry)


def read_last_run(nb_dir: str | os.PathLike) -> dict | None:
    return read_json(Path(nb_dir) / "last_run.json")
