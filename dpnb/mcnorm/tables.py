"""Versioned cross-section tables (``parameters/cross_sections/<name>_v<version>.yaml``).

A table states its name, version, default unit and the source of every value::

    name: belle2_generic_4S
    version: 1
    unit: nb                      # default unit of the entries (mb, ub, nb, pb, fb, ab)
    source: "where the numbers come from"
    processes:
      mixed: {sigma: 0.555, source: "..."}
      ee:    {sigma: 74.4, unit: nb, prescale: 0.02, source: "...",
              by_run_type: {continuum: 75.3}}   # optional per-run-type values

``prescale`` (default 1) is the fraction of produced events the data keeps (a trigger
prescale): the expected number of events in the data is ``sigma * L * prescale``.
Every value is converted to nb through :mod:`dpnb.units` when the table is loaded.

Optional energy dependence: when the machine ran at a measured E_cm different from the
nominal one (the beam-energy calibration's ``BeamEnergy`` payloads), a process with an
``ecm_dependence`` is evaluated there. The table then says at which E_cm its values hold,
per run type (``default`` for the others)::

    nominal_ecm_gev: {4S: 10.58, continuum: 10.52}
    processes:
      uubar: {sigma: 1.61, ecm_dependence: inverse_s, ...}        # sigma ~ 1/s
      mixed: {sigma: 0.51, ecm_dependence: {breit_wigner: {mass_gev: 10.5794,
              half_width_gev: 0.0103, threshold_gev: 10.5588}}, ...}   # 0 below threshold

``sigma(E) = sigma(run type) * shape(E) / shape(E_nominal(run type))``, with
``shape = 1/E^2`` (``inverse_s``) or ``1 / (1 + ((E - mass) / half_width)^2)`` above the
threshold and 0 below (``breit_wigner``). A value of 0 stays 0.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..errors import InputError, ParameterError, nearest
from ..params import load_yaml, project_root
from ..units import cross_section_to_nb

__all__ = ["CrossSection", "CrossSectionTable", "load_cross_sections", "table_path", "parse_cross_sections",
           "tables_frame"]


@dataclass(frozen=True)
class CrossSection:
    """One process of a table; all cross sections in nb."""

    process: str
    sigma_nb: float
    prescale: float = 1.0
    source: str = ""
    by_run_type_nb: dict = field(default_factory=dict)
    #: None, ("inverse_s",) or ("breit_wigner", mass_gev, half_width_gev, threshold_gev)
    ecm_dependence: tuple | None = None

    def sigma_for(self, run_type: str | None = None) -> float:
        """Cross section (nb) for runs of ``run_type`` (the table's default when not listed)."""
        if run_type is not None and run_type in self.by_run_type_nb:
            return self.by_run_type_nb[run_type]
        return self.sigma_nb

    def shape(self, ecm_gev: float) -> float:
        """Relative energy dependence at ``ecm_gev`` (1 without an ``ecm_dependence``)."""
        dep = self.ecm_dependence
        if dep is None:
            return 1.0
        if dep[0] == "inverse_s":
            return 1.0 / (ecm_gev * ecm_gev)
        _, mass, half_width, threshold = dep
        if ecm_gev < threshold:
            return 0.0
        x = (ecm_gev - mass) / half_width
        return 1.0 / (1.0 + x * x)


@dataclass(frozen=True)
class CrossSectionTable:
    """A loaded table: ``entries[process]`` is a :class:`CrossSection` (nb)."""

    name: str
    version: int
    path: str
    source: str
    entries: dict
    #: E_cm (GeV) at which the values hold, per run type ("default" for the others); {} = unstated
    nominal_ecm_gev: dict = field(default_factory=dict)

    @property
    def energy_dependent(self) -> list[str]:
        """Processes with an ``ecm_dependence``."""
        return sorted(p for p, e in self.entries.items() if e.ecm_dependence is not None)

    def nominal_ecm(self, run_type: str | None) -> float:
        """E_cm (GeV) at which the table's values for ``run_type`` hold."""
        if run_type in self.nominal_ecm_gev:
            return self.nominal_ecm_gev[run_type]
        if "default" in self.nominal_ecm_gev:
            return self.nominal_ecm_gev["default"]
        msg = (f"cross-section table {self.tag} ({self.path}): nominal_ecm_gev has no entry for run type "
               f"{run_type!r} (and no 'default'); entries: {sorted(self.nominal_ecm_gev)}")
        raise InputError(msg)

    def sigma_at(self, process: str, run_type: str | None, ecm_gev: float | None = None) -> float:
        """Cross section (nb) of ``process`` for a run of ``run_type`` taken at ``ecm_gev``
        (the table's value for the run type when ``ecm_gev`` is None or the process has no
        energy dependence)."""
        xs = self[process]
        sigma = xs.sigma_for(run_type)
        if ecm_gev is None or xs.ecm_dependence is None or sigma == 0.0:
            return sigma
        e0 = self.nominal_ecm(run_type)
        ref = xs.shape(e0)
        if ref == 0.0:
            msg = (f"cross-section table {self.tag} ({self.path}): process {process!r} has sigma {sigma} nb for run "
                   f"type {run_type!r} but its ecm_dependence is 0 at the nominal {e0} GeV")
            raise InputError(msg)
        return sigma * xs.shape(float(ecm_gev)) / ref

    @property
    def tag(self) -> str:
        """``<name>_v<version>``: what results record as the table used."""
        return f"{self.name}_v{self.version}"

    @property
    def processes(self) -> list[str]:
        return sorted(self.entries)

    def __getitem__(self, process: str) -> CrossSection:
        if process not in self.entries:
            msg = (
                f"cross-section table {self.tag} ({self.path}): no process {process!r}; "
                f"nearest: {nearest(process, self.entries)}; processes in the table: {self.processes}"
            )
            raise InputError(msg)
        return self.entries[process]

    def check_processes(self, processes: Iterable[str], where: str) -> None:
        """Raise :class:`InputError` naming every process of ``where`` that the table lacks."""
        missing = sorted({str(p) for p in processes} - set(self.entries))
        if missing:
            hints = "; ".join(f"{m!r} (nearest: {', '.join(nearest(m, self.entries))})" for m in missing)
            msg = (
                f"{where}: process {hints} not in cross-section table {self.tag} ({self.path}); "
                f"processes in the table: {self.processes}"
            )
            raise InputError(msg)


def table_path(name: str, version: int, root: str | os.PathLike | None = None) -> Path:
    """Path of table ``name`` version ``version`` under ``parameters/cross_sections``."""
    base = Path(root) if root is not None else project_root()
    return base / "parameters" / "cross_sections" / f"{name}_v{int(version)}.yaml"


def _number(value, where: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        msg = f"{where}: {what} = {value!r}; expected a finite number"
        raise InputError(msg)
    return float(value)


def _sigma_nb(value, unit, where: str) -> float:
    sigma = _number(value, where, "sigma")
    if sigma < 0:
        msg = f"{where}: sigma = {sigma!r}; expected a cross section >= 0"
        raise InputError(msg)
    try:
        return float(cross_section_to_nb(sigma, unit))
    except InputError as exc:
        msg = f"{where}: {exc}"
        raise InputError(msg) from None


def require_keys(raw, keys, path: str) -> None:
    """Raise :class:`InputError` naming ``path`` unless ``raw`` is a mapping with every key of ``keys``."""
    if not isinstance(raw, dict):
        msg = f"{path}: expected a mapping with keys {', '.join(keys)}"
        raise InputError(msg)
    missing = [k for k in keys if k not in raw]
    if missing:
        msg = f"{path}: missing keys {missing}; keys present: {sorted(raw)}"
        raise InputError(msg)


def parse_cross_sections(raw, path: str = "<table>") -> CrossSectionTable:
    """Validate a table read from YAML (a mapping) and convert it to nb."""
    require_keys(raw, ("name", "version", "unit", "source", "processes"), path)
    unit = raw["unit"]
    procs = raw["processes"]
    if not isinstance(procs, dict) or not procs:
        msg = f"{path}: key 'processes': expected a non-empty mapping process -> {{sigma, source}}"
        raise InputError(msg)
    entries = {}
    for proc, item in procs.items():
        where = f"{path}: processes.{proc}"
        if not isinstance(item, dict) or "sigma" not in item:
            msg = f"{where}: expected a mapping with 'sigma' (and 'source'), got {item!r}"
            raise InputError(msg)
        if not str(item.get("source") or raw["source"]).strip():
            msg = f"{where}: no source given for the value"
            raise InputError(msg)
        punit = item.get("unit", unit)
        prescale = _number(item.get("prescale", 1.0), where, "prescale")
        if not 0.0 < prescale <= 1.0:
            msg = f"{where}: prescale = {prescale!r}; expected a fraction in (0, 1]"
            raise InputError(msg)
        by_type = {}
        for rtype, val in (item.get("by_run_type") or {}).items():
            by_type[str(rtype)] = _sigma_nb(val, punit, f"{where}.by_run_type.{rtype}")
        entries[str(proc)] = CrossSection(
            process=str(proc),
            sigma_nb=_sigma_nb(item["sigma"], punit, where),
            prescale=prescale,
            source=str(item.get("source") or raw["source"]),
            by_run_type_nb=by_type,
            ecm_dependence=_ecm_dependence(item.get("ecm_dependence"), f"{where}.ecm_dependence"),
        )
    nominal = raw.get("nominal_ecm_gev") or {}
    if not isinstance(nominal, dict):
        msg = f"{path}: nominal_ecm_gev = {nominal!r}; expected a mapping run type -> E_cm in GeV"
        raise InputError(msg)
    nominal = {str(k): _number(v, f"{path}: nominal_ecm_gev.{k}", "E_cm") for k, v in nominal.items()}
    dependent = sorted(p for p, e in entries.items() if e.ecm_dependence is not None)
    if dependent and not nominal:
        msg = (f"{path}: processes {dependent} have an ecm_dependence but the table has no nominal_ecm_gev "
               "(the E_cm, per run type, at which its values hold)")
        raise InputError(msg)
    try:
        version = int(raw["version"])
    except (TypeError, ValueError):
        msg = f"{path}: version = {raw['version']!r}; expected an integer"
        raise InputError(msg) from None
    return CrossSectionTable(str(raw["name"]), version, str(path), str(raw["source"]), entries, nominal)


def _ecm_dependence(raw, where: str) -> tuple | None:
    """None, ("inverse_s",) or ("breit_wigner", mass, half_width, threshold) from the YAML form."""
    if raw is None:
        return None
    if raw == "inverse_s":
        return ("inverse_s",)
    if isinstance(raw, dict) and set(raw) == {"breit_wigner"} and isinstance(raw["breit_wigner"], dict):
        bw = raw["breit_wigner"]
        missing = [k for k in ("mass_gev", "half_width_gev", "threshold_gev") if k not in bw]
        if missing:
            msg = f"{where}.breit_wigner: missing {missing}; keys present: {sorted(bw)}"
            raise InputError(msg)
        mass, half, thr = (_number(bw[k], f"{where}.breit_wigner", k)
                           for k in ("mass_gev", "half_width_gev", "threshold_gev"))
        if half <= 0:
            msg = f"{where}.breit_wigner: half_width_gev = {half!r}; expected > 0"
            raise InputError(msg)
        return ("breit_wigner", mass, half, thr)
    msg = (f"{where}: {raw!r}; expected 'inverse_s' or {{breit_wigner: {{mass_gev, half_width_gev, "
           "threshold_gev}}}}")
    raise InputError(msg)


def load_cross_sections(name: str, version: int, root: str | os.PathLike | None = None) -> CrossSectionTable:
    """Load table ``name`` version ``version``; the file's own name/version must match."""
    path = table_path(name, version, root)
    if not path.is_file():
        have = sorted(p.stem for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        msg = (
            f"cross-section table {name!r} version {version} not found: {path} does not exist; "
            f"tables present: {have} (nearest: {nearest(f'{name}_v{version}', have) if have else []})"
        )
        raise ParameterError(msg)
    table = parse_cross_sections(load_yaml(path), str(path))
    if (table.name, table.version) != (name, int(version)):
        msg = f"{path}: the file says name={table.name!r}, version={table.version}; expected {name!r}, {version}"
        raise InputError(msg)
    return table


def tables_frame(table: CrossSectionTable):
    """One row per process: sigma_nb, prescale, per-run-type values (nb), energy dependence and source."""
    import pandas as pd

    def dep(e):
        if e.ecm_dependence is None:
            return ""
        if e.ecm_dependence[0] == "inverse_s":
            return "1/s"
        _, m, w, t = e.ecm_dependence
        return f"Breit-Wigner m={m:g} GeV, half width={w:g} GeV, threshold={t:g} GeV"

    rows = [{"process": e.process, "sigma_nb": e.sigma_nb, "prescale": e.prescale,
             "by_run_type_nb": ", ".join(f"{k}: {v:.6g}" for k, v in sorted(e.by_run_type_nb.items())),
             "ecm_dependence": dep(e), "source": e.source} for e in (table.entries[p] for p in table.processes)]
    return pd.DataFrame(rows, columns=["process", "sigma_nb", "prescale", "by_run_type_nb", "ecm_dependence",
                                       "source"])
