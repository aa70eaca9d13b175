"""``dpnb simulate``: write the toy experiment's demo data (with its truth).

    dpnb simulate --scale {tiny,demo,large} --out DIR [--seed N] [--t0-table CSV] [--force]

Exit codes: 0 written (or already there), 2 bad parameters or input (nothing written).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

__all__ = ["register", "main"]


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        msg = f"{text!r} is not an integer"
        raise argparse.ArgumentTypeError(msg) from None
    if value < 0:
        msg = f"{value} is negative; expected an integer >= 0"
        raise argparse.ArgumentTypeError(msg)
    return value


def register(subparsers) -> None:
    from ..simulate import SCALES

    p = subparsers.add_parser(
        "simulate",
        help="write the toy experiment's data (raw ROOT, runs, lumi, MC, truth)",
        description="Write a toy dataset with known truth (layout in docs/architecture.md).",
    )
    p.add_argument("--scale", default="tiny", help=f"dataset size, one of {', '.join(SCALES)} (default tiny)")
    p.add_argument("--out", required=True, help="output dataset directory (written atomically)")
    p.add_argument("--seed", type=_non_negative_int, default=1, help="random seed (default 1)")
    p.add_argument("--t0-table", default=None, metavar="CSV", help="per-channel T0s (columns channel,t0_ns)")
    p.add_argument("--mc-events", type=_non_negative_int, default=None, help="override events per MC sample")
    p.add_argument("--cosmic-events", type=_non_negative_int, default=None, help="override events per cosmic run")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.set_defaults(func=main)


def main(args) -> int:
    from ..errors import ParameterError
    from ..simulate import SCALES, make_dataset

    if args.scale not in SCALES:
        msg = f"--scale {args.scale!r}: unknown scale; expected one of {', '.join(SCALES)}"
        raise ParameterError(msg)
    cfg = SCALES[args.scale]
    changes = {}
    if args.mc_events is not None:
        changes["mc_events"] = args.mc_events
    if args.cosmic_events is not None:
        changes["cosmic_events_per_run"] = args.cosmic_events
    if changes:
        cfg = dataclasses.replace(cfg, **changes)
    t0 = time.perf_counter()
    out = make_dataset(args.out, cfg, seed=args.seed, truth_table=args.t0_table, overwrite=args.force)
    gen = json.loads((out / "truth.json").read_text()).get("generator", {})
    print(
        f"dpnb simulate: {out} (scale {cfg.name}, seed {args.seed}): {gen.get('n_events', '?')} events, "
        f"{gen.get('n_hits', '?')} hits, {time.perf_counter() - t0:.1f} s",
        file=sys.stdout,
    )
    return 0
