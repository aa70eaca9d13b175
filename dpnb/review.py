"""Reviewer sign-off: an append-only, hash-chained log beside the reports.

``reports/<bucket>/reviews.jsonl`` holds one JSON object per line: bucket, notebook,
version, verdict (approve | reject), by, comment, time (UTC, ISO 8601), the sha256 of the
reviewed version's ``results.json`` and the hash of the previous line (``prev``), so any
rewrite of an earlier line is detected. The CLI only ever appends. A new version of a
report does not inherit an approval: approvals name one version and the checksum of
its results.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import DpnbError, InputError
from .params import LABEL_RE

__all__ = ["Review", "ReviewLogError", "append_review", "read_reviews", "latest_review", "bucket_approved", "LOG_NAME"]

LOG_NAME = "reviews.jsonl"
VERDICTS = ("approve", "reject")
GENESIS = "0" * 64


class ReviewLogError(DpnbError):
    """The review log was altered (a line's chain hash does not match)."""


@dataclass(frozen=True)
class Review:
    bucket: str
    notebook: str
    version: int
    verdict: str
    by: str
    comment: str
    time: str
    results_sha256: str
    prev: str
    hash: str


def _line_hash(entry: dict) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _version_dir(reports_dir: Path, bucket: str, notebook: str, version: int) -> Path:
    for what, value in (("bucket", bucket), ("notebook", notebook)):
        if not LABEL_RE.match(value):
            msg = f"{what} {value!r} has characters outside [A-Za-z0-9_.-]"
            raise InputError(msg)
    return reports_dir / bucket / notebook / f"v{int(version)}"


def read_reviews(reports_dir: str | os.PathLike, bucket: str) -> list[Review]:
    """All reviews of a bucket, oldest first; verifies the hash chain."""
    path = Path(reports_dir) / bucket / LOG_NAME
    if not path.exists():
        return []
    out: list[Review] = []
    prev = GENESIS
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            msg = f"{path}:{i}: not valid JSON ({exc.msg}); the review log was altered"
            raise ReviewLogError(msg) from None
        if entry.get("prev") != prev or entry.get("hash") != _line_hash(entry):
            msg = f"{path}:{i}: chain hash does not match; the review log was altered after it was written"
            raise ReviewLogError(msg)
        prev = entry["hash"]
        out.append(Review(**{k: entry[k] for k in Review.__dataclass_fields__}))
    return out


def append_review(
    reports_dir: str | os.PathLike,
    bucket: str,
    notebook: str,
    version: int,
    verdict: str,
    by: str,
    comment: str = "",
    now: _dt.datetime | None = None,
) -> Review:
    """Append one review; the version must exist. Returns the written entry."""
    reports_dir = Path(reports_dir)
    if verdict not in VERDICTS:
        msg = f"verdict must be one of {VERDICTS}, got {verdict!r}"
        raise InputError(msg)
    if not str(by).strip():
        msg = "a review needs the reviewer's name (--by NAME)"
        raise InputError(msg)
    vdir = _version_dir(reports_dir, bucket, notebook, version)
    results = vdir / "results.json"
    if not results.exists():
        have = sorted(p.name for p in vdir.parent.glob("v*") if p.name[1:].isdigit()) if vdir.parent.exists() else []
        msg = f"no report {bucket}/{notebook}/v{version} under {reports_dir} (versions that exist: {have or 'none'})"
        raise InputError(msg)
    log = reports_dir / bucket / LOG_NAME
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a+", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # concurrent reviewers append one after the other
        existing = read_reviews(reports_dir, bucket)
        prev = existing[-1].hash if existing else GENESIS
        stamp = (now or _dt.datetime.now(_dt.timezone.utc)).astimezone(_dt.timezone.utc).isoformat(timespec="seconds")
        entry = {
            "bucket": bucket,
            "notebook": notebook,
            "version": int(version),
            "verdict": verdict,
            "by": str(by),
            "comment": str(comment),
            "time": stamp,
            "results_sha256": hashlib.sha256(results.read_bytes()).hexdigest(),
            "prev": prev,
        }
        entry["hash"] = _line_hash(entry)
        fh.seek(0, os.SEEK_END)
        fh.write(json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return Review(**entry)


def latest_review(reports_dir, bucket: str, notebook: str, version: int) -> Review | None:
    """The most recent review of exactly this version (approvals are never inherited)."""
    matches = [r for r in read_reviews(reports_dir, bucket) if r.notebook == notebook and r.version == int(version)]
    return matches[-1] if matches else None


def bucket_approved(reports_dir, bucket: str, notebooks: dict[str, int]) -> tuple[bool, list[str]]:
    """Whether each ``{notebook: latest version}`` has an approval as its latest review; lists the others."""
    missing = []
    for nb, v in sorted(notebooks.items()):
        r = latest_review(reports_dir, bucket, nb, v)
        if r is None or r.verdict != "approve":
            missing.append(f"{nb} v{v}: {'not reviewed' if r is None else 'rejected by ' + r.by}")
    return (not missing), missing
