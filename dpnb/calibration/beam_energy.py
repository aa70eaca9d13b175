"""Step 5, beam energy: E_cm from the dimuon mass peak per run, change point, levels per range.

1. **Peak per run.** The mu+mu- invariant mass is E_cm smeared by the momentum
   resolution (a Gaussian core), plus an initial-state-radiation (ISR) tail on the low
   side: a fraction ``f`` of the events lost an exponentially distributed energy (mean
   ``tau``). :func:`fit_mass_peak` does an unbinned maximum-likelihood fit (iminuit) of
   ``(1 - f) Gauss(mu, sigma) + f Gauss (x) Exp(tau)`` normalised in a window around the
   median; ``mu`` (GeV) with its Hesse uncertainty is the run's E_cm.
2. **Change point.** Runs of different types sit at different nominal energies (4S,
   continuum; every scan run is its own point), and a machine change moves all of them
   by the same step. :func:`scan_change_point` fits, by weighted least squares, one
   level per group plus a common step at each candidate run, and compares the best with
   the no-step fit: the step is accepted when ``delta_chi2 = chi2(no step) - chi2(best)``
   exceeds ``min_delta_chi2`` (which must cover the look-elsewhere effect of scanning).
   If the chosen model's ``chi2/ndf`` exceeds 1, the covariance is scaled by it.
3. **Payloads.** Every run gets the fitted level of its group and range; consecutive
   runs with the same level form one IOV of the ``BeamEnergy`` payload
   (:func:`energy_iovs`). A run without a measurement takes its group's level, or joins
   the previous IOV when its group has none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import InputError
from ..runs import IOV, RunId

__all__ = [
    "PeakFit", "fit_mass_peak", "mass_pdf", "run_group", "LevelFit", "fit_levels",
    "ChangePointResult", "scan_change_point", "energy_iovs", "validate_global_tag", "mass_fit_figure",
]


# --- mass peak ---------------------------------------------------------------------------


def _core_tail(m, mu, sigma, tau):
    from scipy.stats import exponnorm, norm

    # the tail is mu - Exp(tau) + Gauss(sigma): an exponentially modified Gaussian in -m
    core = norm.pdf(m, mu, sigma)
    tail = exponnorm.pdf(-m, tau / sigma, loc=-mu, scale=sigma)
    return core, tail


def _norms(lo, hi, mu, sigma, tau):
    from scipy.stats import exponnorm, norm

    n_core = norm.cdf(hi, mu, sigma) - norm.cdf(lo, mu, sigma)
    n_tail = exponnorm.cdf(-lo, tau / sigma, loc=-mu, scale=sigma) - exponnorm.cdf(-hi, tau / sigma, loc=-mu, scale=sigma)
    return n_core, n_tail


def mass_pdf(m, mu, sigma, f, tau, lo, hi):
    """Density (1/GeV) of the mass model normalised in the window ``[lo, hi]`` (GeV)."""
    core, tail = _core_tail(np.asarray(m, dtype=np.float64), mu, sigma, tau)
    n_core, n_tail = _norms(lo, hi, mu, sigma, tau)
    return (1.0 - f) * core / n_core + f * tail / n_tail


@dataclass
class PeakFit:
    """Result of one mass-peak fit (GeV); ``valid`` is Minuit's verdict."""

    mu: float
    mu_err: float
    sigma: float
    f_isr: float
    tau: float
    n: int
    window: tuple
    valid: bool
    status: str = "OK"


def fit_mass_peak(masses, window_gev=(-0.5, 0.15), min_events: int = 30) -> PeakFit:
    """Unbinned ML fit of the dimuon mass peak (see the module docstring); masses in GeV.

    ``window_gev`` is (low, high) relative to the median. ``NOT_ENOUGH_DATA`` with fewer
    than ``min_events`` masses in the window, ``FAILURE`` when the fit is not valid.
    """
    from iminuit import Minuit

    m = np.asarray(masses, dtype=np.float64)
    m = m[np.isfinite(m)]
    nan = math.nan
    if m.size == 0:
        return PeakFit(nan, nan, nan, nan, nan, 0, (nan, nan), False, "NOT_ENOUGH_DATA")
    med = float(np.median(m))
    lo, hi = med + float(window_gev[0]), med + float(window_gev[1])
    x = m[(m >= lo) & (m <= hi)]
    if x.size < max(min_events, 5):
        return PeakFit(nan, nan, nan, nan, nan, int(x.size), (lo, hi), False, "NOT_ENOUGH_DATA")
    near = x[np.abs(x - med) < 0.1]
    s0 = max(1.4826 * float(np.median(np.abs(near - np.median(near)))), 0.005) if near.size > 3 else 0.03

    def nll(mu, sigma, f, tau):
        with np.errstate(divide="ignore"):
            p = mass_pdf(x, mu, sigma, f, tau, lo, hi)
        return -float(np.sum(np.log(np.maximum(p, 1e-300))))

    fit = Minuit(nll, mu=med, sigma=s0, f=0.15, tau=0.2)
    fit.errordef = Minuit.LIKELIHOOD
    fit.limits["mu"] = (lo, hi)
    fit.limits["sigma"] = (0.001, 0.5)
    fit.limits["f"] = (0.0, 0.95)
    fit.limits["tau"] = (0.01, 2.0)
    fit.migrad()
    fit.hesse()
    valid = bool(fit.valid) and fit.accurate
    v, e = fit.values, fit.errors
    return PeakFit(float(v["mu"]), float(e["mu"]), float(v["sigma"]), float(v["f"]), float(v["tau"]), int(x.size),
                   (lo, hi), valid, "OK" if valid else "FAILURE")


# --- change point ------------------------------------------------------------------------


def run_group(run_type: str, run: RunId) -> str:
    """The nominal-energy group of a run: its type, except that each scan run is its own point."""
    return f"scan {run}" if run_type == "scan" else str(run_type)


@dataclass
class LevelFit:
    """Weighted least-squares fit of per-group levels (+ a common step) to per-run values (GeV)."""

    groups: list
    step_index: int | None
    beta: np.ndarray
    cov: np.ndarray
    chi2: float
    ndf: int
    design: np.ndarray

    def fitted(self) -> tuple[np.ndarray, np.ndarray]:
        """Fitted value and its uncertainty per run (GeV)."""
        val = self.design @ self.beta
        err = np.sqrt(np.einsum("ij,jk,ik->i", self.design, self.cov, self.design))
        return val, err

    @property
    def step(self) -> tuple[float, float]:
        if self.step_index is None:
            return 0.0, 0.0
        return float(self.beta[-1]), float(np.sqrt(self.cov[-1, -1]))


def _design(groups: Sequence[str], step_index: int | None) -> tuple[np.ndarray, list]:
    names = list(dict.fromkeys(groups))
    x = np.zeros((len(groups), len(names) + (step_index is not None)))
    for i, g in enumerate(groups):
        x[i, names.index(g)] = 1.0
    if step_index is not None:
        x[step_index:, -1] = 1.0
    return x, names


def fit_levels(values, errors, groups: Sequence[str], step_index: int | None = None) -> LevelFit:
    """Per-group levels plus, if ``step_index`` is given, a common step from that run on."""
    y = np.asarray(values, dtype=np.float64)
    w = 1.0 / np.asarray(errors, dtype=np.float64) ** 2
    x, names = _design(groups, step_index)
    a = x.T @ (w[:, None] * x)
    cov = np.linalg.inv(a)
    beta = cov @ (x.T @ (w * y))
    chi2 = float(np.sum(w * (y - x @ beta) ** 2))
    return LevelFit(names, step_index, beta, cov, chi2, int(y.size - x.shape[1]), x)


def _identifiable(groups: Sequence[str], k: int) -> bool:
    """A common step at index k is separable from the levels if some group has runs on both sides."""
    return bool(set(groups[:k]) & set(groups[k:]))


@dataclass
class ChangePointResult:
    """Outcome of the change-point scan; ``final`` is the chosen model (errors scaled if needed)."""

    runs: list
    found: bool
    step_run: RunId | None
    delta_chi2: float
    null: LevelFit
    best: LevelFit | None
    final: LevelFit
    error_scale: float
    groups: list = field(default_factory=list)
    scan: pd.DataFrame = field(default_factory=pd.DataFrame)

    def levels(self, truth: Mapping[str, float] | None = None) -> pd.DataFrame:
        """One row per (group, range): level and error (GeV), first and last run; truth/pull if given."""
        val, err = self.final.fitted()
        groups = self.groups
        rows = []
        seg = [0 if (not self.found or i < self.final.step_index) else 1 for i in range(len(self.runs))]
        for key in dict.fromkeys(zip(groups, seg)):
            idx = [i for i in range(len(self.runs)) if (groups[i], seg[i]) == key]
            row = {"group": key[0], "range": "after step" if key[1] else ("before step" if self.found else "all"),
                   "first_run": int(self.runs[idx[0]].run), "last_run": int(self.runs[idx[-1]].run),
                   "n_runs": len(idx), "ecm_gev": float(val[idx[0]]), "ecm_err_gev": float(err[idx[0]])}
            if truth is not None:
                t = truth.get(str(self.runs[idx[0]]))
                row["truth_gev"] = math.nan if t is None else float(t)
                row["pull"] = (row["ecm_gev"] - row["truth_gev"]) / row["ecm_err_gev"]
            rows.append(row)
        return pd.DataFrame(rows)


def scan_change_point(runs: Sequence[RunId], values, errors, groups: Sequence[str], min_delta_chi2: float = 25.0,
                      scale_errors: bool = True) -> ChangePointResult:
    """Single change-point scan over runs (sorted) with per-run values and errors (GeV)."""
    runs = list(runs)
    values = np.asarray(values, dtype=np.float64)
    errors = np.asarray(errors, dtype=np.float64)
    if not (len(runs) == values.size == errors.size == len(groups)):
        msg = f"change-point scan: {len(runs)} runs, {values.size} values, {errors.size} errors, {len(groups)} groups"
        raise InputError(msg)
    if runs != sorted(runs):
        msg = "change-point scan: runs must be sorted"
        raise InputError(msg)
    bad = ~(np.isfinite(values) & np.isfinite(errors) & (errors > 0))
    if bad.any():
        shown = ", ".join(str(r) for r, b in zip(runs, bad) if b)
        msg = f"change-point scan: runs {shown} have no finite value with a positive error; leave them out"
        raise InputError(msg)
    null = fit_levels(values, errors, groups)
    rows, best = [], None
    for k in range(1, len(runs)):
        if not _identifiable(groups, k):
            continue
        f = fit_levels(values, errors, groups, k)
        rows.append({"exp": runs[k].exp, "run": runs[k].run, "chi2": f.chi2, "delta_chi2": null.chi2 - f.chi2,
                     "step_gev": f.step[0], "step_err_gev": f.step[1]})
        if best is None or f.chi2 < best.chi2:
            best = f
    delta = null.chi2 - best.chi2 if best is not None else 0.0
    found = best is not None and delta >= min_delta_chi2
    chosen = best if found else null
    scale = 1.0
    if scale_errors and chosen.ndf > 0 and chosen.chi2 > chosen.ndf:
        scale = math.sqrt(chosen.chi2 / chosen.ndf)
    final = LevelFit(chosen.groups, chosen.step_index, chosen.beta, chosen.cov * scale**2, chosen.chi2, chosen.ndf,
                     chosen.design)
    scan = pd.DataFrame(rows, columns=["exp", "run", "chi2", "delta_chi2", "step_gev", "step_err_gev"])
    return ChangePointResult(runs, found, runs[best.step_index] if found else None, float(delta), null, best, final,
                             scale, list(groups), scan)


def energy_iovs(all_runs: Sequence[RunId], groups: Mapping[RunId, str], result: ChangePointResult
                ) -> list[tuple[IOV, list[RunId], dict]]:
    """``BeamEnergy`` payloads: ``[(IOV, runs, data)]`` covering ``all_runs`` (sorted).

    Measured runs take their fitted level; other runs the level of their group and range,
    or, when their group has no measured run, they join the previous (else next) IOV.
    """
    val, err = result.final.fitted()
    measured = {r: i for i, r in enumerate(result.runs)}
    step_run = result.step_run
    level: dict[tuple, tuple[float, float]] = {}
    for r, i in measured.items():
        seg = int(step_run is not None and r >= step_run)
        level[(groups[r], seg)] = (float(val[i]), float(err[i]))
    blocks: list[list] = []  # [key, runs, (value, err)]
    pending: list[RunId] = []
    for r in sorted(all_runs):
        seg = int(step_run is not None and r >= step_run)
        key = (groups.get(r), seg)
        if key not in level:
            if blocks:
                blocks[-1][1].append(r)
            else:
                pending.append(r)
            continue
        if blocks and blocks[-1][0] == key:
            blocks[-1][1].append(r)
        else:
            blocks.append([key, pending + [r], level[key]])
            pending = []
    if not blocks:
        msg = "beam energy: no run has a measured or fitted E_cm; cannot make payloads"
        raise InputError(msg)
    out = []
    for _, rs, (v, e) in blocks:
        out.append((IOV(rs[0].exp, rs[0].run, rs[-1].exp, rs[-1].run), rs, {"ecm_gev": v, "ecm_err_gev": e}))
    return out


# --- global tag ----------------------------------------------------------------------------


def validate_global_tag(db, tag: str, runs: Sequence[RunId], gate_verdicts: Mapping[str, Mapping[str, str]],
                        names: Sequence[str], enabled: bool = True, by: str = "dpnb"):
    """Coverage check of ``tag`` over ``runs`` for payload ``names``; when it passes, every
    gate verdict in ``gate_verdicts`` ({notebook: {gate: verdict}}) is ``pass`` and
    ``enabled``, move an OPEN tag to TESTING and then VALIDATED.

    Returns ``(coverage report, failing gates as "notebook:gate", final state)``. A tag
    already out of OPEN is left as it is (it is frozen).
    """
    cov = db.coverage(tag, runs, names=list(names))
    failing = sorted(f"{nb}:{g}" for nb, gates in gate_verdicts.items() for g, v in gates.items() if v != "pass")
    state = db.state(tag)
    if enabled and cov.ok and not failing and state == "OPEN":
        db.set_state(tag, "TESTING", runs=list(runs), names=list(names), by=by)
        state = db.set_state(tag, "VALIDATED", by=by)
    return cov, failing, state


def mass_fit_figure(masses, fit: PeakFit, title: str = ""):
    """Histogram of the pair masses in the fit window with the fitted model (a matplotlib figure)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.3), dpi=80)
    lo, hi = fit.window
    m = np.asarray(masses, dtype=np.float64)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        lo, hi = (float(np.min(m)), float(np.max(m))) if m.size else (10.0, 11.0)
    x = m[(m >= lo) & (m <= hi)]
    bins = np.linspace(lo, hi, 40)
    ax.hist(x, bins, histtype="step", label=f"pairs ({x.size})")
    if fit.status == "OK":
        grid = np.linspace(lo, hi, 300)
        dens = mass_pdf(grid, fit.mu, fit.sigma, fit.f_isr, fit.tau, lo, hi)
        ax.plot(grid, dens * x.size * (bins[1] - bins[0]), color="C3",
                label=f"fit: E_cm = {fit.mu:.4f} ± {fit.mu_err:.4f} GeV\nσ = {1e3 * fit.sigma:.0f} MeV, "
                      f"ISR fraction {fit.f_isr:.2f}")
    ax.set_xlabel("pair invariant mass [GeV]")
    ax.set_ylabel(f"pairs / {1e3 * (bins[1] - bins[0]):.0f} MeV")
    ax.set_title(title or f"mass fit ({fit.status})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
