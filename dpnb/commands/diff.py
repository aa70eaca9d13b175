"""``dpnb diff <bucket> <notebook> vA vB``: a rendered page of what changed between two versions."""

from __future__ import annotations

from .review import _version


def register(sub) -> None:
    p = sub.add_parser("diff", help="render what changed between two versions of a report")
    p.add_argument("bucket")
    p.add_argument("notebook")
    p.add_argument("old", type=_version, help="e.g. v1")
    p.add_argument("new", type=_version, help="e.g. v2")
    p.add_argument("--reports-dir", default="reports")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..versiondiff import diff_versions, write_diff_page

    path = write_diff_page(args.reports_dir, args.bucket, args.notebook, args.old, args.new)
    d = diff_versions(args.reports_dir, args.bucket, args.notebook, args.old, args.new)
    changed = [c for c in d.values if c.changed]
    print(f"{len(changed)} recorded numbers changed, {len(d.gates)} gate verdicts changed")
    for c in changed[:10]:
        sig = f" ({c.significance:.1f} sigma)" if c.significance is not None else ""
        print(f"  {c.name}: {c.old} -> {c.new}{sig}")
    print(f"page: {path}")
    return 0
