"""``dpnb gt``: inspect global tags and move them through their states.

    dpnb gt --db PATH list
    dpnb gt --bucket parameters/buckets/demo.yaml show TAG
    dpnb gt ... diff TAG_A TAG_B
    dpnb gt ... state TAG NEW [--runs 1:1-40 ...]     (OPEN -> TESTING needs the run list)
    dpnb gt --bucket parameters/buckets/demo.yaml publish TAG [--yes] [--by NAME]
    dpnb gt --bucket ... publish TAG --override-approval --by NAME   (recorded in the tag history)

``--db`` names the SQLite file; ``--bucket`` takes it from the bucket's parameters
(``conditions.db``) and, for ``state TAG TESTING``, the bucket's runs (``dpnb.bucket``).
``--db``/``--bucket`` may come before or after the subcommand. ``publish`` asks to retype
the tag name unless ``--yes``; without a terminal and without ``--yes`` it refuses.

``publish`` needs reviewer sign-off: the latest version of every report of the bucket
(each notebook of the DAG and each notebook directory in ``reports/<bucket>/``) must have
an approval as its latest review (:func:`dpnb.review.bucket_approved`), so it needs
``--bucket`` (for the bucket label, its global tag and its reports directory; with ``--db``
only, approvals cannot be checked and count as missing). Without the approvals it refuses
and lists the reports; ``--override-approval --by NAME`` publishes anyway and the tag
history records the override, who, and the unapproved reports.
Errors exit with 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputError, ParameterError, TagStateError

__all__ = ["register"]


def register(subparsers) -> None:
    """Add ``gt`` and its subcommands to the ``dpnb`` parser."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a value given before the subcommand is not overwritten by the subparser's default
    common.add_argument("--db", default=argparse.SUPPRESS, help="conditions database (SQLite file)")
    common.add_argument("--bucket", default=argparse.SUPPRESS, help="bucket parameter file (uses conditions.db)")
    p = subparsers.add_parser("gt", help="global tags: list, show, diff, state, publish",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", default=None, help="conditions database (SQLite file)")
    p.add_argument("--bucket", default=None, help="bucket parameter file (uses conditions.db)")
    sub = p.add_subparsers(dest="gt_command", metavar="SUBCOMMAND")
    sub.add_parser("list", parents=[common], help="list tags with state and payload count")
    s = sub.add_parser("show", parents=[common], help="a tag's payloads and state history")
    s.add_argument("tag")
    s = sub.add_parser("diff", parents=[common], help="payloads added/removed/changed from TAG_A to TAG_B")
    s.add_argument("tag_a")
    s.add_argument("tag_b")
    s = sub.add_parser("state", parents=[common], help="move a tag to a new state (OPEN->TESTING runs coverage)")
    s.add_argument("tag")
    s.add_argument("new_state", metavar="NEW", help="TESTING, VALIDATED, PUBLISHED or INVALID")
    s.add_argument("--runs", nargs="+", default=None, help="run ranges for the coverage check, e.g. 1:1-40")
    s.add_argument("--by", default="", help="who (default: login name)")
    s = sub.add_parser("publish", parents=[common], help="publish a VALIDATED tag (asks to retype its name)")
    s.add_argument("tag")
    s.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    s.add_argument("--by", default="", help="who (default: login name; required with --override-approval)")
    s.add_argument("--override-approval", action="store_true",
                   help="publish although reports are not approved (recorded in the tag history)")
    p.set_defaults(func=run)


def _params(args):
    from ..params import resolve_bucket

    return resolve_bucket(Path(args.bucket))


def _db_path(args) -> Path:
    if args.db:
        return Path(args.db)
    if args.bucket:
        return Path(_params(args)["conditions"]["db"])
    msg = "no conditions database given: use --db PATH or --bucket parameters/buckets/<label>.yaml"
    raise ParameterError(msg)


def _expand(ranges: list[str]):
    from ..runs import RunId, parse_run_ranges

    out = []
    for rr in parse_run_ranges(ranges, "--runs"):
        if rr.last == -1:
            msg = f"--runs {rr}: an open range has no run list; give the last run (e.g. {rr.exp}:{rr.first}-40)"
            raise InputError(msg)
        out += [RunId(rr.exp, r) for r in range(rr.first, rr.last + 1)]
    return out


def _bucket_runs(args):
    """The bucket's selected runs, as the calibration notebooks select them."""
    from types import SimpleNamespace

    from ..bucket import select_runs
    from ..runs import parse_run_ranges

    params = _params(args)
    view = SimpleNamespace(params=params, data=params["data"], run_ranges=parse_run_ranges(params["runs"]),
                           exclude_ranges=parse_run_ranges(params.get("exclude_runs") or [], "exclude_runs"))
    return select_runs(view).selected


def _approvals(args, tag: str) -> tuple[bool, list[str], str]:
    """(approved, problems, approvals note) for the bucket of ``--bucket`` (see the module docstring)."""
    from ..params import project_root
    from ..reports import versions
    from ..reports.rollup import dag_notebooks
    from ..review import latest_review

    if not args.bucket:
        return False, ["approvals not checked: no --bucket given (it names the bucket and its reports)"], ""
    params = _params(args)
    label, gtag = params["label"], (params.get("conditions") or {}).get("global_tag")
    if gtag != tag:
        msg = f"--bucket {args.bucket}: bucket {label!r} has global tag {gtag!r}, not {tag!r}; expected its own tag"
        raise ParameterError(msg)
    reports = Path(params["reports_dir"])
    bucket_dir = reports / label
    names = set(dag_notebooks("", project_root(Path(args.bucket).resolve().parent)))
    if bucket_dir.is_dir():
        names |= {p.name for p in bucket_dir.iterdir() if p.is_dir() and versions.list_versions(p)}
    problems, approved = [], []
    for nb in sorted(names):
        v = versions.latest_version(bucket_dir / nb)
        if v is None:
            problems.append(f"{nb}: no report in {bucket_dir / nb}")
            continue
        r = latest_review(reports, label, nb, v)
        if r is None or r.verdict != "approve":
            problems.append(f"{nb} v{v}: {'not reviewed' if r is None else 'rejected by ' + r.by}")
        else:
            approved.append(f"{nb} v{v} by {r.by}")
    if not names:
        problems.append(f"no reports of bucket {label!r} in {bucket_dir}")
    return not problems, problems, "approved: " + ", ".join(approved)


def _show(db, tag: str) -> None:
    info = next(t for t in db.list_tags() if t.name == tag)
    print(f"tag {tag}: {info.state}, {info.n_payloads} payload(s), created {info.created}")
    if info.description:
        print(f"  {info.description}")
    print(f"{'name':<16} {'IOV':<20} {'revision':<12}  step / bucket")
    for p in db.payloads(tag, with_data=False):
        prov = p.provenance
        print(f"{p.name:<16} {str(p.iov):<20} {p.revision[:12]}  {prov.get('step', '')} / {prov.get('bucket', '')}")
    print("history:")
    for h in db.history(tag):
        flag = " [override]" if h["override"] else ""
        print(f"  {h['at']}  {h['from_state'] or '-'} -> {h['to_state']}  by {h['who']}{flag}  {h['note']}")


def _confirm(tag: str) -> None:
    if not sys.stdin or not sys.stdin.isatty():
        msg = f"refusing to publish {tag!r}: stdin is not a terminal, so the tag name cannot be retyped; pass --yes"
        raise ParameterError(msg)
    answer = input(f"Publishing freezes {tag!r} for production. Retype the tag name to confirm: ").strip()
    if answer != tag:
        msg = f"not published: {answer!r} is not {tag!r}"
        raise ParameterError(msg)


def run(args) -> int:
    """Run one ``dpnb gt`` subcommand; returns the exit code (errors raise dpnb errors: exit 2)."""
    from ..conditions import ConditionsDB

    if not args.gt_command:
        msg = "missing subcommand: expected one of list, show, diff, state, publish (dpnb gt --help)"
        raise ParameterError(msg)
    with ConditionsDB(_db_path(args), create=False) as db:
        cmd = args.gt_command
        if cmd == "list":
            tags = db.list_tags()
            if not tags:
                print(f"{db.path}: no global tags")
            for t in tags:
                print(f"{t.name:<30} {t.state:<10} {t.n_payloads:>6} payload(s)  {t.created}  {t.description}")
        elif cmd == "show":
            db.state(args.tag)  # unknown tag: error naming the nearest
            _show(db, args.tag)
        elif cmd == "diff":
            d = db.diff(args.tag_a, args.tag_b, fields=True)
            print(f"diff {d.tag_a} -> {d.tag_b}: {len(d.added)} added, {len(d.removed)} removed, "
                  f"{len(d.changed)} changed, {len(d.iov_changed)} IOV changed, {d.n_same} identical")
            for e in d.entries:
                print(str(e))
        elif cmd == "state":
            if args.new_state.upper() == "PUBLISHED":
                msg = f"use `dpnb gt publish {args.tag}` to publish (it asks for confirmation)"
                raise ParameterError(msg)
            runs = None
            if args.runs:
                runs = _expand(args.runs)
            elif args.bucket and args.new_state.upper() == "TESTING" and db.state(args.tag) == "OPEN":
                runs = _bucket_runs(args)
            new = db.set_state(args.tag, args.new_state, runs=runs, by=args.by)
            print(f"{args.tag}: {new}")
        elif cmd == "publish":
            state = db.state(args.tag)
            if state != "VALIDATED":
                db.publish(args.tag, by=args.by)  # raises with the reason (or no-op if PUBLISHED)
            else:
                override = bool(getattr(args, "override_approval", False))
                if override and not str(args.by).strip():
                    msg = "--override-approval needs --by NAME: the override is recorded with who used it"
                    raise ParameterError(msg)
                ok, problems, note = _approvals(args, args.tag)
                if not ok and not override:
                    msg = (f"refusing to publish {args.tag!r}: the latest version of every report of the bucket must "
                           f"be approved (dpnb review <bucket> <notebook> vN --approve --by NAME); not approved: "
                           f"{'; '.join(problems)}. To publish anyway: --override-approval --by NAME (recorded)")
                    raise TagStateError(msg)
                if not args.yes:
                    _confirm(args.tag)
                if not ok:
                    note = "override of reviewer approvals; not approved: " + "; ".join(problems)
                db.publish(args.tag, by=args.by, approvals_ok=ok, override=override, note=note)
                if not ok:
                    print(f"WARNING: published without approvals (override by {args.by} recorded): "
                          + "; ".join(problems))
            print(f"{args.tag}: PUBLISHED")
    return 0
