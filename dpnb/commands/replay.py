"""``dpnb replay reports/<bucket>/<notebook>/vN/manifest.json [--out DIR] [--keep]``.

Re-executes exactly that version (its recorded notebook source and injected parameters,
inputs verified by checksum first) into a temporary directory - never a new version - and
compares ``results.json`` byte for byte. Exit 0: reproduced; 1: not reproduced (the
differing numbers are listed) or the notebook failed; 2: refused (inputs changed since,
manifest unreadable), nothing executed. See :mod:`dpnb.replay`.
"""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("replay", help="re-execute one report version and check its results are reproduced",
                       description=__doc__)
    p.add_argument("manifest", help="reports/<bucket>/<notebook>/vN/manifest.json (or the version directory)")
    p.add_argument("--out", default=None, help="directory for the replay (default: a new temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory of an identical replay")
    p.add_argument("--timeout", type=float, default=None, help="seconds per cell (default: the notebook's timeout)")
    p.add_argument("--reuse-cache", action="store_true",
                   help="read per-run partials from the recorded cache_dir instead of recomputing them")
    p.set_defaults(func=run)


def _fmt(x) -> str:
    return f"{x:.10g}" if isinstance(x, float) else str(x)


def run(args) -> int:
    from ..replay import keep_or_clean, replay

    res = replay(Path(args.manifest), out_dir=args.out, timeout=args.timeout, reuse_cache=args.reuse_cache)
    for w in res.warnings:
        print(f"warning: {w}")
    if res.error:
        print(f"NOT REPRODUCED: the replay failed: {res.error}")
        print(f"replay directory: {res.out_dir}")
        return 1
    if res.identical:
        print(f"REPRODUCED: the replayed results.json is byte-for-byte identical to {res.recorded}")
        keep_or_clean(res, args.keep or bool(args.out))
        if args.keep or args.out:
            print(f"replay directory: {res.out_dir}")
        else:
            print("(temporary replay directory removed; --keep keeps it)")
        return 0
    print(f"NOT REPRODUCED: {res.replayed} differs from {res.recorded}")
    print(f"{len(res.changes)} recorded number(s) differ:")
    for c in res.changes:
        extra = []
        if c.difference is not None:
            extra.append(f"difference {_fmt(c.difference)}")
        if c.significance is not None:
            extra.append(f"{c.significance:.2f} sigma")
        print(f"  {c.name}: {_fmt(c.old)} -> {_fmt(c.new)}" + (f" ({', '.join(extra)})" if extra else ""))
    for g, a, b in res.gates:
        print(f"  gate {g}: {a} -> {b}")
    if res.other:
        print(f"  also different: {', '.join(res.other)}")
    print(f"replay directory: {res.out_dir}")
    return 1
