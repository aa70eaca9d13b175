"""``dpnb gt``: inspect global tags and move them through their states.

    dpnb gt --db PATH list
    dpnb gt --bucket parameters/buckets/demo.yaml show TAG
    dpnb gt ... diff TAG_A TAG_B
    dpnb gt ... state TAG NEW [--runs 1:1-40 ...]     (OPEN -> TESTING needs the run list)
    dpnb gt ... publish TAG [--yes] [--by NAME]

``--db`` names the SQLite file; ``--bucket`` takes it from the bucket's parameters
(``conditions.db``) and, for ``state TAG TESTING``, the bucket's runs (``dpnb.bucket``).
``--db``/``--bucket`` may come before or after the subcommand. ``publish`` asks to retype
the tag name unless ``--yes``; without a terminal and without ``--yes`` it refuses.
Errors exit with 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputError, ParameterError

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
    s.add_argument("--by", default="", help="who (default: login name)")
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
                if not args.yes:
                    _confirm(args.tag)
                db.publish(args.tag, by=args.by)
            print(f"{args.tag}: PUBLISHED")
    return 0
