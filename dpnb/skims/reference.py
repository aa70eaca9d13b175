"""Compare skim statistics and histograms with a reference release; verdicts per skim.

A *reference* is what an earlier run of ``notebooks/skim_validation.ipynb`` measured. It
can be given as

* the ``skim_reference.json`` artifact of that run (``{"schema": 1, "kind":
  "dpnb.skim_reference", "statistics": [rows], "histograms": [rows]}``),
* that run's ``results.json`` (its tables ``skim_statistics`` and ``skim_histograms``), or
* the same mapping inline in the parameters.

A reference of another schema version is refused with a clear error: quantities may have
changed meaning between versions.

Quantities are compared with a relative tolerance per quantity (``warn``, ``fail``, and an
absolute floor ``abs`` below which a difference always passes); histograms with a
two-sample χ² test (default) or Kolmogorov–Smirnov test, whose p-value is compared with
the ``warn`` and ``error`` thresholds.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import InputError, ParameterError, SchemaError
from ..notebook import RESULTS_SCHEMA, VERDICT_ORDER

__all__ = [
    "SKIM_REFERENCE_SCHEMA",
    "REFERENCE_KIND",
    "COMPARED_QUANTITIES",
    "reference_payload",
    "load_reference",
    "compare_quantity",
    "compare_statistics",
    "chi2_two_sample",
    "ks_two_sample_binned",
    "compare_histograms",
    "worst",
    "combined_mc_retention",
    "overlap_fractions",
]

SKIM_REFERENCE_SCHEMA = 1
REFERENCE_KIND = "dpnb.skim_reference"
#: statistics compared with the reference (columns of the statistics rows)
COMPARED_QUANTITIES = (
    "retention", "retention_bytes", "size_kb_per_selected_event", "size_kb_per_input_event",
    "cpu_ms_per_event", "mean_multiplicity",
)


def worst(verdicts) -> str:
    """The worst of ``pass`` < ``warn`` < ``fail`` (``pass`` for none)."""
    out = "pass"
    for v in verdicts:
        if VERDICT_ORDER.get(v, 2) > VERDICT_ORDER[out]:
            out = v
    return out


def reference_payload(stat_rows: list[dict], hist_rows: list[dict], release: str = "") -> dict:
    """The ``skim_reference.json`` content from statistics and histogram rows."""
    return {
        "schema": SKIM_REFERENCE_SCHEMA,
        "kind": REFERENCE_KIND,
        "release": release,
        "statistics": list(stat_rows),
        "histograms": list(hist_rows),
    }


def load_reference(ref, root: str | os.PathLike | None = None) -> dict | None:
    """A reference (path, inline mapping, or None) as a payload; None when no reference is given.

    Raises :class:`SchemaError` for another schema version or a file of another kind, and
    :class:`InputError` for a missing or unreadable file.
    """
    if ref is None or ref == "":
        return None
    where = "parameter 'reference' (inline)"
    if isinstance(ref, (str, os.PathLike)):
        path = Path(ref)
        if not path.is_absolute() and root is not None:
            path = Path(root) / path
        where = str(path)
        if not path.is_file():
            msg = f"{path}: reference file not found (point 'reference' at a skim_reference.json or results.json of skim_validation)"
            raise InputError(msg)
        try:
            ref = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            msg = f"{path}, line {exc.lineno} column {exc.colno}: not valid JSON ({exc.msg})"
            raise InputError(msg) from None
    if not isinstance(ref, Mapping):
        msg = f"{where}: expected a mapping (skim_reference.json or results.json), got {type(ref).__name__}"
        raise ParameterError(msg)
    if ref.get("kind") == REFERENCE_KIND:
        expected, got = SKIM_REFERENCE_SCHEMA, ref.get("schema")
        if got != expected:
            msg = (
                f"{where}: skim reference of schema version {got!r}, this dpnb reads version {expected}; "
                "re-run notebooks/skim_validation.ipynb with the reference release to make a new skim_reference.json"
            )
            raise SchemaError(msg)
        stats, hists = ref.get("statistics"), ref.get("histograms")
    elif ref.get("notebook") == "skim_validation":
        got = ref.get("schema")
        if got != RESULTS_SCHEMA:
            msg = (
                f"{where}: results.json of schema version {got!r}, this dpnb reads version {RESULTS_SCHEMA}; "
                "re-run notebooks/skim_validation.ipynb with the reference release"
            )
            raise SchemaError(msg)
        tables = ref.get("tables") or {}
        stats, hists = tables.get("skim_statistics"), tables.get("skim_histograms")
    else:
        msg = (
            f"{where}: not a skim reference: expected 'kind': {REFERENCE_KIND!r} (skim_reference.json) or "
            f"'notebook': 'skim_validation' (results.json); keys present: {sorted(ref)}"
        )
        raise SchemaError(msg)
    if not isinstance(stats, list) or not isinstance(hists, list):
        msg = f"{where}: expected lists 'statistics' and 'histograms' (tables skim_statistics, skim_histograms)"
        raise SchemaError(msg)
    return {"schema": SKIM_REFERENCE_SCHEMA, "kind": REFERENCE_KIND, "release": ref.get("release", ""),
            "statistics": stats, "histograms": hists, "source": where}


def compare_quantity(value, reference, tol: Mapping) -> tuple[str, float | None]:
    """Verdict and relative difference of ``value`` against ``reference``.

    ``tol``: ``warn`` and ``fail`` are relative tolerances (None: never that verdict), ``abs``
    an absolute difference that always passes. A value missing on one side only fails.
    """
    if value is None and reference is None:
        return "pass", None
    if value is None or reference is None:
        return "fail", None
    diff = abs(float(value) - float(reference))
    rel = diff / abs(float(reference)) if reference else (0.0 if diff == 0 else math.inf)
    if diff <= float(tol.get("abs", 0.0) or 0.0):
        return "pass", rel
    fail, warn = tol.get("fail"), tol.get("warn")
    if fail is not None and rel > float(fail):
        return "fail", rel
    if warn is not None and rel > float(warn):
        return "warn", rel
    return "pass", rel


def compare_statistics(current: list[dict], reference: list[dict], tolerances: Mapping) -> list[dict]:
    """One row per (skim, sample, quantity) with value, reference, relative difference, verdict.

    A (skim, sample) absent from the reference is reported with verdict ``warn`` (new).
    """
    ref = {(r["skim"], r["sample"]): r for r in reference}
    rows = []
    for cur in current:
        key = (cur["skim"], cur["sample"])
        r = ref.get(key)
        for q in COMPARED_QUANTITIES:
            if q not in tolerances:
                continue
            if r is None:
                rows.append({"skim": key[0], "sample": key[1], "quantity": q, "value": cur.get(q), "reference": None,
                             "rel_diff": None, "verdict": "warn", "note": "not in the reference"})
                continue
            verdict, rel = compare_quantity(cur.get(q), r.get(q), tolerances[q])
            rows.append({"skim": key[0], "sample": key[1], "quantity": q, "value": cur.get(q), "reference": r.get(q),
                         "rel_diff": rel, "verdict": verdict, "note": ""})
    return rows


def chi2_two_sample(a, b) -> tuple[float, int, float]:
    """χ², ndf and p-value that two histograms (unweighted counts, any normalisation) come
    from the same distribution: χ² = Σ (N_b a_i − N_a b_i)² / (N_a N_b (a_i + b_i)) over bins
    with entries, ndf = that number of bins − 1."""
    from scipy import stats

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    na, nb = a.sum(), b.sum()
    if na == 0 or nb == 0:
        return math.nan, 0, (1.0 if na == nb else 0.0)
    used = (a + b) > 0
    ndf = int(used.sum()) - 1
    if ndf <= 0:
        return 0.0, 0, 1.0
    chi2 = float(np.sum((nb * a[used] - na * b[used]) ** 2 / (a[used] + b[used])) / (na * nb))
    return chi2, ndf, float(stats.chi2.sf(chi2, ndf))


def ks_two_sample_binned(a, b) -> tuple[float, float]:
    """Kolmogorov–Smirnov distance of two binned distributions and its asymptotic p-value
    (effective n = N_a N_b / (N_a + N_b)); binning makes it conservative."""
    from scipy import stats

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    na, nb = a.sum(), b.sum()
    if na == 0 or nb == 0:
        return math.nan, (1.0 if na == nb else 0.0)
    d = float(np.max(np.abs(np.cumsum(a) / na - np.cumsum(b) / nb)))
    n_eff = na * nb / (na + nb)
    return d, float(stats.kstwobign.sf(d * math.sqrt(n_eff)))


def compare_histograms(current: list[dict], reference: list[dict], test: str = "chi2", warn_p: float = 0.01,
                       error_p: float = 0.001) -> list[dict]:
    """One row per (skim, sample, variable): statistic, p-value and verdict (p < ``error_p``
    fails, p < ``warn_p`` warns). Histograms must have the same edges as in the reference."""
    if test not in ("chi2", "ks"):
        msg = f"histogram test {test!r}: expected 'chi2' or 'ks'"
        raise ParameterError(msg)
    ref = {(r["skim"], r["sample"], r["variable"]): r for r in reference}
    rows = []
    for cur in current:
        key = (cur["skim"], cur["sample"], cur["variable"])
        r = ref.get(key)
        row = {"skim": key[0], "sample": key[1], "variable": key[2], "test": test, "statistic": None, "ndf": None,
               "p_value": None, "n": int(np.sum(cur["counts"])), "n_reference": None, "verdict": "warn",
               "note": "not in the reference"}
        if r is not None:
            row["n_reference"] = int(np.sum(r["counts"]))
            if not np.allclose(cur["edges"], r["edges"]):
                row.update(verdict="warn", note="binning differs from the reference; not compared")
            elif test == "chi2":
                chi2, ndf, p = chi2_two_sample(cur["counts"], r["counts"])
                row.update(statistic=chi2, ndf=ndf, p_value=p, note="")
            else:
                d, p = ks_two_sample_binned(cur["counts"], r["counts"])
                row.update(statistic=d, p_value=p, note="")
            if row["p_value"] is not None:
                p = row["p_value"]
                row["verdict"] = "fail" if p < error_p else ("warn" if p < warn_p else "pass")
        rows.append(row)
    return rows


def combined_mc_retention(retentions: Mapping[str, float], sigma_nb: Mapping[str, float]) -> float | None:
    """Cross-section-weighted retention Σ rᵢσᵢ / Σ σᵢ over the samples in ``retentions``
    (``sigma_nb[sample]``: the cross section of the sample's process, nb)."""
    num = den = 0.0
    for sample, r in retentions.items():
        if r is None:
            continue
        s = float(sigma_nb[sample])
        num += r * s
        den += s
    return num / den if den > 0 else None


def overlap_fractions(counts: np.ndarray) -> np.ndarray:
    """Row-normalised overlap: ``f[i, j]`` = events selected by skims i and j / events selected by i."""
    counts = np.asarray(counts, dtype=np.float64)
    diag = np.diag(counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = counts / diag[:, None]
    out[diag == 0, :] = np.nan
    return out
