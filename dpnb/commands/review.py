"""``dpnb review <bucket> <notebook> vN --approve|--reject --by NAME [--comment TEXT]``.

Appends one entry to ``reports/<bucket>/reviews.jsonl`` (:mod:`dpnb.review`; it never edits
or removes one, and refuses to append to a log that was altered), then rewrites
``reports/index.html`` and ``reports/<bucket>/reviews.html`` so the sign-off shows at once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError


def _version(text: str) -> int:
    t = text[1:] if text.lower().startswith("v") else text
    if not t.isdigit():
        raise argparse.ArgumentTypeError(f"expected a version like v3, got {text!r}")
    return int(t)


def register(sub) -> None:
    p = sub.add_parser("review", help="record a reviewer's sign-off of one report version (append-only)")
    p.add_argument("bucket")
    p.add_argument("notebook")
    p.add_argument("version", type=_version, help="e.g. v3")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--approve", action="store_true")
    g.add_argument("--reject", action="store_true")
    p.add_argument("--by", required=True, help="reviewer's name")
    p.add_argument("--comment", default="")
    p.add_argument("--reports-dir", default="reports")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..review import append_review

    reports = Path(args.reports_dir)
    if not reports.is_dir():
        msg = f"reports directory {reports} does not exist"
        raise InputError(msg)
    r = append_review(reports, args.bucket, args.notebook, args.version,
                      "approve" if args.approve else "reject", args.by, args.comment)
    print(f"{r.verdict}d {r.bucket}/{r.notebook}/v{r.version} by {r.by} at {r.time}")
    from ..reports.index import write_index

    index = write_index(reports)
    print(f"index: {index}; sign-off page: {reports / r.bucket / 'reviews.html'}")
    return 0
