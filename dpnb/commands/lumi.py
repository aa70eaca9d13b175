"""``dpnb lumi``: look at a delivery of luminosity files without running the notebook.

    dpnb lumi summarize LUMI_DIR [--expt TOY] [--registry runs.csv] [--on-bad-line skip|fail]
    dpnb lumi versions LUMI_DIR

``summarize`` prints the per-fill table (and per-run table with ``--registry``) and the
counts of messy-data findings; ``versions`` validates every fill's version files and the
add-only rule of the annotations. Exit codes: 0 ok, 1 findings of version problems, 2 bad input.
"""

from __future__ import annotations

import sys

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser("lumi", help="summarize or validate a delivery of Massi luminosity files",
                              description="Summaries and checks of a directory of per-fill Massi files.")
    sub = p.add_subparsers(dest="lumi_command", metavar="ACTION", required=True)
    s = sub.add_parser("summarize", help="per-fill (and per-run) luminosity and messy-data counts")
    s.add_argument("lumi_dir", help="directory with one <fill>/ directory or <fill>.tgz/.zip per fill")
    s.add_argument("--expt", default="TOY", help="experiment name in the file names (default TOY)")
    s.add_argument("--registry", help="runs.csv: also integrate each run's window")
    s.add_argument("--on-bad-line", choices=("skip", "fail"), default="skip")
    s.set_defaults(func=_summarize)
    v = sub.add_parser("versions", help="validate version.txt / version_annotation.txt of every fill")
    v.add_argument("lumi_dir")
    v.set_defaults(func=_versions)


def _summarize(args) -> int:
    import pandas as pd

    from .. import lumi
    from ..bucket import read_registry

    opts = lumi.CleanOptions(on_bad_line=args.on_bad_line)
    series = lumi.load_fills(args.lumi_dir, args.expt, opts)
    findings = [f for s in series.values() for f in s.findings]
    runs = None
    if args.registry:
        runs, more = lumi.run_table(series, read_registry(args.registry))
        findings += more
    fills, more = lumi.fill_table(series, runs)
    findings += more
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        cols = ["fill", "version", "n_samples", "delivered_pb", "stat_pb", "stable_time_s", "peak_hz_per_ub",
                "longest_gap_s", "n_findings"]
        print(fills[cols].to_string(index=False))
        if runs is not None:
            print()
            cols = ["exp", "run", "run_type", "fill", "delivered_pb", "recorded_pb", "stat_pb"]
            print(runs[cols].to_string(index=False))
    counts = lumi.finding_counts(lumi.findings_frame(findings))
    print()
    listed = ", ".join(f"{k}={n}" for k, n in counts.items() if n)
    print(f"findings: {listed or 'none'}")
    return 0


def _versions(args) -> int:
    from ..errors import InputError
    from ..io import lumi_files as lf

    problems, seq = [], []
    for fill, path in lf.list_fills(args.lumi_dir).items():
        if path.is_file():
            problems.append(f"fill {fill}: {path.name} is an archive; expand it to check its versions")
            continue
        try:
            version, ann = lf.read_version_files(path)
        except InputError as exc:
            problems.append(str(exc))
            continue
        problems += lf.check_version_annotated(version, ann, str(path / "version_annotation.txt"))
        seq.append((fill, ann))
        print(f"{fill}: {version}")
    problems += lf.check_annotations_add_only(seq)
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0
