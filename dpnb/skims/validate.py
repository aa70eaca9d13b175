"""The skim validation of a bucket: inputs, runs, comparisons, verdicts and recording.

:func:`run_validation` is what ``notebooks/skim_validation.ipynb`` calls; it takes plain
arguments (skims, sample files, options) so tests can drive it without a notebook, and
:func:`record_validation` writes its numbers, tables and gates through a notebook context.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import pandas as pd

from .definitions import Skim
from .reference import (
    compare_histograms,
    compare_statistics,
    combined_mc_retention,
    overlap_fractions,
    reference_payload,
    worst,
)
from .run import EmptySampleError, SampleResult, compile_histograms, file_columns, run_sample

__all__ = ["SampleInput", "Validation", "Plan", "prepare", "plan_samples", "cross_sections_for", "run_validation",
           "record_validation", "clean_options", "skim_header", "WHAT_TO_CHECK"]

DATA_SAMPLE = "data"
#: measured per-event times (ms): machine-dependent, kept out of results.json and verdicts
TIMING_QUANTITIES = ("cpu_ms_per_event", "wall_ms_per_event")
_SEVERITY = {"pass": 0, "warn": 1, "fail": 2}


@dataclass
class SampleInput:
    """The files of one sample; ``process`` is None for data."""

    name: str
    files: list
    process: str | None = None


def clean_options(opts: Mapping) -> dict:
    """Options without the ``*`` placeholder keys of the defaults file (they only declare types)."""

    def strip(x):
        if isinstance(x, Mapping):
            return {k: strip(v) for k, v in x.items() if k != "*"}
        return x

    return strip(dict(opts))


def plan_samples(ctx, samples: list[str]) -> tuple[list[SampleInput], list[str]]:
    """The samples to run on: ``"data"`` (the bucket's good runs), ``"mc"`` (every sample of
    ``mc/samples.csv``) or MC sample names. Returns the inputs and notes on what is missing."""
    from ..bucket import select_runs
    from ..errors import ParameterError
    from ..mcnorm import read_samples_csv

    out: list[SampleInput] = []
    notes: list[str] = []
    mc_dir = Path(ctx.data["mc"])
    table = None
    for name in samples:
        if name == DATA_SAMPLE:
            runs = select_runs(ctx)
            files = [runs.files[r] for r in runs.selected]
            out.append(SampleInput(DATA_SAMPLE, files))
            if runs.excluded:
                notes.append(f"data: {len(runs.excluded)} runs excluded (see the bucket's run list)")
            continue
        if table is None:
            table = read_samples_csv(mc_dir / "samples.csv")
        rows = table if name == "mc" else table[table["sample"] == name]
        if name != "mc" and rows.empty:
            msg = f"option samples: {name!r} is neither 'data', 'mc' nor a sample of {mc_dir / 'samples.csv'} ({list(table['sample'])})"
            raise ParameterError(msg)
        for row in rows.itertuples(index=False):
            out.append(SampleInput(str(row.sample), [mc_dir / f"{row.sample}.root"], str(row.process)))
    return out, notes


def cross_sections_for(processes, table_name: str, version: int, prescaled: bool = True) -> tuple[dict, str]:
    """Cross section (nb) per process from ``parameters/cross_sections/<name>_v<version>.yaml``
    via :func:`dpnb.mcnorm.load_cross_sections`; times the trigger prescale when ``prescaled``
    (what the data keeps, so the combined MC retention is comparable with the data's)."""
    from ..mcnorm import load_cross_sections

    table = load_cross_sections(table_name, version)
    table.check_processes(processes, "MC samples for skim validation")
    out = {}
    for p in processes:
        e = table[p]
        out[p] = e.sigma_nb * (e.prescale if prescaled else 1.0)
    return out, table.tag


@dataclass
class Validation:
    """Everything measured and judged by one skim validation."""

    skims: list
    results: dict  # sample -> SampleResult
    skipped: dict  # sample -> reason
    stat_rows: list
    hist_rows: list
    combined: dict  # skim -> combined MC retention (or None)
    overlap: dict  # sample -> counts matrix
    comparison_rows: list = field(default_factory=list)
    histogram_test_rows: list = field(default_factory=list)
    reference: dict | None = None
    verdicts: dict = field(default_factory=dict)  # skim -> {ceiling, reference, overall, retention, ...}
    hist_specs: dict = field(default_factory=dict)

    def summary_frame(self) -> pd.DataFrame:
        """One row per skim: verdicts first, then the key numbers."""
        return pd.DataFrame([{"skim": k, **v} for k, v in self.verdicts.items()])

    def statistics_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.stat_rows)

    def overlap_frame(self, sample: str, normalised: bool = True) -> pd.DataFrame:
        names = [s.name for s in self.skims]
        m = self.overlap[sample]
        return pd.DataFrame(overlap_fractions(m) if normalised else m, index=names, columns=names)

    def reference_payload(self, release: str = "") -> dict:
        return reference_payload(self.stat_rows, self.hist_rows, release)


def run_validation(
    skims: list[Skim],
    samples: list[SampleInput],
    options: Mapping,
    *,
    output_dir=None,
    reference: dict | None = None,
    sigma_nb: Mapping[str, float] | None = None,
    schema: Mapping[str, str] | None = None,
) -> Validation:
    """Run every skim on every sample, compare with ``reference`` (a payload from
    :func:`dpnb.skims.reference.load_reference`, or None) and judge each skim.

    ``options``: the notebook options (``histograms``, ``tolerances``, ``histogram_test``,
    ``p_value_warn``, ``p_value_error``, ``output_branches``, ``step_size``, ``n_threads``,
    ``compression_level``, ``max_output_rows``, ``ceiling_warn_fraction``, ``write_outputs``). ``sigma_nb``:
    cross section per MC process (nb) for the combined retention. Empty samples are skipped
    and listed in ``skipped``; if every sample is empty the error is raised.
    """
    from ..errors import ParameterError

    opts = clean_options(options)
    test = opts.get("histogram_test", "chi2")
    if test not in ("chi2", "ks"):  # checked before the (long) run
        msg = f"option histogram_test: histogram test {test!r}: expected 'chi2' or 'ks'"
        raise ParameterError(msg)
    results: dict[str, SampleResult] = {}
    skipped: dict[str, str] = {}
    hist_specs = {}
    for s in samples:
        if not s.files:
            skipped[s.name] = f"sample {s.name!r}: no input files"
            continue
        cols, _ = file_columns(s.files[0], schema)
        hists, _missing = compile_histograms(opts.get("histograms") or {}, cols)
        try:
            res = run_sample(
                skims, s.files, s.name, schema=schema, histograms=hists,
                output_dir=output_dir if opts.get("write_outputs", True) else None,
                output_branches=opts.get("output_branches") or None, step_size=int(opts.get("step_size", 100_000)),
                n_threads=int(opts.get("n_threads", 1)), compression_level=int(opts.get("compression_level", 1)),
                max_output_rows=int(opts["max_output_rows"]) if opts.get("max_output_rows") else None,
            )
        except EmptySampleError as exc:
            skipped[s.name] = str(exc)
            continue
        results[s.name] = res
        hist_specs.update(res.hist_specs)
    if not results:
        msg = "no sample has events: " + "; ".join(skipped.values())
        raise EmptySampleError(msg)

    stat_rows = [st.row() for r in results.values() for st in r.stats.values()]
    hist_rows = [
        {"skim": sk, "sample": r.sample, "variable": v, "edges": r.hist_specs[v].edges.tolist(), "counts": c.tolist()}
        for r in results.values() for sk, hs in r.histograms.items() for v, c in hs.items()
    ]
    # combined MC retention: pool the samples of a process, then weight processes by cross section
    by_process: dict[str, list[str]] = {}
    for s in samples:
        if s.process is not None and s.name in results:
            by_process.setdefault(s.process, []).append(s.name)
    combined = {}
    for sk in skims:
        rets = {}
        for proc, names in by_process.items():
            n_in = sum(results[n].stats[sk.name].n_input_events for n in names)
            n_sel = sum(results[n].stats[sk.name].n_selected_events for n in names)
            rets[proc] = n_sel / n_in if n_in else None
        combined[sk.name] = combined_mc_retention(rets, sigma_nb) if (sigma_nb and rets) else None

    v = Validation(skims=skims, results=results, skipped=skipped, stat_rows=stat_rows, hist_rows=hist_rows,
                   combined=combined, overlap={k: r.overlap_counts for k, r in results.items()}, reference=reference,
                   hist_specs=hist_specs)
    if reference is not None:
        v.comparison_rows = compare_statistics(stat_rows, reference["statistics"], opts.get("tolerances") or {})
        v.histogram_test_rows = compare_histograms(
            hist_rows, reference["histograms"], opts.get("histogram_test", "chi2"),
            float(opts.get("p_value_warn", 0.01)), float(opts.get("p_value_error", 0.001)),
        )
    warn_frac = float(opts.get("ceiling_warn_fraction", 0.9))
    for sk in skims:
        if DATA_SAMPLE in results:
            ret, basis = results[DATA_SAMPLE].stats[sk.name].retention, "data"
        elif combined.get(sk.name) is not None:
            ret, basis = combined[sk.name], "combined MC"
        else:
            first = next(iter(results.values()))
            ret, basis = first.stats[sk.name].retention, first.sample
        ceiling_v = "fail" if ret > sk.retention_ceiling else ("warn" if ret > warn_frac * sk.retention_ceiling else "pass")
        if reference is None:
            ref_v = "no reference"
            n_bad = 0
        else:
            # measured timings depend on the machine's load: shown, never part of a verdict
            mine = [r["verdict"] for r in v.comparison_rows + v.histogram_test_rows
                    if r["skim"] == sk.name and r.get("quantity") not in TIMING_QUANTITIES]
            ref_v = worst(mine)
            n_bad = sum(1 for x in mine if x != "pass")
        v.verdicts[sk.name] = {
            "verdict": worst([ceiling_v] + ([ref_v] if reference is not None else [])),
            "ceiling_verdict": ceiling_v,
            "reference_verdict": ref_v,
            "retention": ret,
            "retention_basis": basis,
            "retention_ceiling": sk.retention_ceiling,
            "combined_mc_retention": combined.get(sk.name),
            "n_comparisons_not_pass": n_bad,
            "owner": sk.owner,
        }
    return v


def record_validation(ctx, v: Validation) -> None:
    """Record key numbers, tables and per-skim gates (they roll up into the bucket summary).

    Measured CPU and wall times change from run to run, so they go to the artifact
    ``skim_timings.json`` beside the report, not into ``results.json`` (whose content must
    be identical for identical inputs).
    """
    from ..notebook import write_json_atomic

    timing_rows = [{k: r[k] for k in ("skim", "sample", *TIMING_QUANTITIES) if k in r} for r in v.stat_rows]
    write_json_atomic(ctx.artifact("skim_timings.json"), {
        "statistics": timing_rows,
        "comparison": [r for r in v.comparison_rows if r.get("quantity") in TIMING_QUANTITIES],
    })
    warn_frac = float(ctx.options.get("ceiling_warn_fraction", 0.9))
    for name, d in v.verdicts.items():
        ctx.gate(
            f"{name}.retention", d["retention"], d["retention_ceiling"], "<=", unit="fraction",
            warn_threshold=warn_frac * d["retention_ceiling"],
            description=f"skim {name}: retention ({d['retention_basis']}) within its ceiling; owner {d['owner']}",
        )
        if v.reference is not None:
            ctx.gate(
                f"{name}.reference", _SEVERITY[d["reference_verdict"]], 1, "<=", warn_threshold=0,
                description=f"skim {name}: statistics and histograms agree with the reference "
                "(0 pass, 1 warn, 2 fail)",
            )
        ctx.record(f"{name}.retention", d["retention"], unit="fraction", basis=d["retention_basis"])
        if d["combined_mc_retention"] is not None:
            ctx.record(f"{name}.combined_mc_retention", d["combined_mc_retention"], unit="fraction")
    for row in v.stat_rows:
        if row["sample"] == DATA_SAMPLE:
            ctx.record(f"{row['skim']}.size_kb_per_selected_event", row["size_kb_per_selected_event"], unit="kB")
            ctx.record(f"{row['skim']}.size_kb_per_input_event", row["size_kb_per_input_event"], unit="kB")
    ctx.record("reference", v.reference["source"] if v.reference else "no reference")
    ctx.table("skim_summary", v.summary_frame())
    ctx.table("skim_statistics", [{k: x for k, x in r.items() if k != "output_file" and k not in TIMING_QUANTITIES}
                                  for r in v.stat_rows])
    ctx.table("skim_histograms", v.hist_rows)
    if v.reference is not None:
        ctx.table("skim_comparison", [r for r in v.comparison_rows if r.get("quantity") not in TIMING_QUANTITIES])
        ctx.table("skim_histogram_tests", v.histogram_test_rows)
    names = [s.name for s in v.skims]
    ctx.table("skim_overlap", [
        {"sample": smp, "skim": a, **{b: int(m[i, j]) for j, b in enumerate(names)}}
        for smp, m in v.overlap.items() for i, a in enumerate(names)
    ])
    for smp, why in v.skipped.items():
        ctx.note(f"skipped sample {smp}: {why}")


@dataclass
class Plan:
    """What a validation runs on: skims, samples, reference, cross sections."""

    skims: list
    samples: list
    notes: list
    reference: dict | None
    sigma_nb: dict
    cross_section_tag: str
    schema: dict


def prepare(ctx) -> Plan:
    """Read the notebook options of ``ctx``: skim files, samples, reference, cross sections."""
    from ..params import project_root
    from .definitions import load_skims
    from .reference import load_reference

    opts = clean_options(ctx.options)
    root = project_root()
    skims = load_skims(opts["skim_files"], root=root)
    samples, notes = plan_samples(ctx, list(opts["samples"]))
    reference = load_reference(opts.get("reference"), root=root)
    processes = sorted({s.process for s in samples if s.process is not None})
    sigma, tag = {}, ""
    if processes:
        sigma, tag = cross_sections_for(processes, opts["cross_section_table"], int(opts["cross_section_version"]),
                                        bool(opts.get("prescaled_cross_sections", True)))
    return Plan(skims, samples, notes, reference, sigma, tag, dict(opts.get("schema") or {}))


WHAT_TO_CHECK = (
    "The verdict row of this skim; retention within its ceiling and, with a reference, within "
    "the tolerances. The shapes of the track multiplicity, the track pt and the two-track mass "
    "should agree with the reference (test p-value above the warn threshold): a shifted mass "
    "peak points to a momentum-scale change, a changed multiplicity to a tracking change."
)


def skim_header(skim, verdict: Mapping) -> str:
    """Markdown header of a skim's detail section: owner, description, selection, verdicts."""
    return (
        f"### {skim.name} — {verdict['verdict'].upper()}\n\n"
        f"**Owner:** {skim.owner}  \n**Description:** {skim.description}  \n"
        f"**Selection:** `{' '.join(skim.selection.text.split())}`  \n"
        f"**Retention** ({verdict['retention_basis']}): {100 * verdict['retention']:.2f} % "
        f"(ceiling {100 * verdict['retention_ceiling']:.0f} %, {verdict['ceiling_verdict']}); "
        f"reference: {verdict['reference_verdict']}  \n"
        f"**What to check:** {WHAT_TO_CHECK}"
    )
