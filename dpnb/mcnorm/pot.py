"""Livetime / POT mode: protons on target from on-spill time, and expected counts per POT.

For fixed-target and muon experiments (as Mu2e does) the normalisation is the number of
protons on target (POT), computed two ways from the on-spill time ``t`` (s):

* spill method:  POT = t / spill_length × protons_per_spill
* cycle method:  POT = t / (cycle_time × duty_factor) × POT_per_cycle

(the duty factor is the on-spill fraction of a cycle, so t / duty_factor is the wall time).
Both are reported with their relative difference. The constants per beam mode come from a
table in ``parameters/cross_sections/`` (e.g. ``mu2e_normalization_v1.yaml``, values of
Mu2e/Production ``JobConfig/ensemble/python/constants.py``). Expected counts of a process
are ``POT × rate_per_pot × fraction`` where ``fraction`` is a per-stopped-muon constant of
the table (e.g. captures or DIO per stopped muon) or 1.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterable, Mapping

import pandas as pd

from ..errors import InputError, ParameterError, nearest
from ..params import load_yaml
from .tables import require_keys, table_path

__all__ = ["BeamMode", "PotConstants", "load_pot_constants", "parse_pot_constants", "pot_spill", "pot_cycle",
           "pot_both", "expected_counts"]

_MODE_KEYS = ("spill_length_s", "duty_factor", "protons_per_spill", "pot_per_cycle", "cycle_time_s")


@dataclass(frozen=True)
class BeamMode:
    """Beam constants of one mode (e.g. one or two booster batches); times in s."""

    name: str
    spill_length_s: float
    duty_factor: float
    protons_per_spill: float
    pot_per_cycle: float
    cycle_time_s: float


@dataclass(frozen=True)
class PotConstants:
    name: str
    version: int
    path: str
    source: str
    modes: dict  # name -> BeamMode
    fractions: dict  # e.g. captures_per_stopped_muon -> 0.609

    @property
    def tag(self) -> str:
        return f"{self.name}_v{self.version}"

    def mode(self, name: str) -> BeamMode:
        if name not in self.modes:
            msg = (f"{self.path}: no beam mode {name!r}; modes: {sorted(self.modes)} "
                   f"(nearest: {nearest(name, self.modes)})")
            raise ParameterError(msg)
        return self.modes[name]

    def fraction(self, key: str, where: str = "livetime.processes") -> float:
        """A per-stopped-particle constant of the table; ``""`` means 1."""
        if not key:
            return 1.0
        if key not in self.fractions:
            msg = (f"{where}: fraction {key!r} is not in {self.path}; constants there: {sorted(self.fractions)} "
                   f"(nearest: {nearest(key, self.fractions)})")
            raise ParameterError(msg)
        return self.fractions[key]


def _positive(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        msg = f"{where} = {value!r}; expected a positive number"
        raise InputError(msg)
    return float(value)


def parse_pot_constants(raw, path: str = "<table>") -> PotConstants:
    """Validate a POT constants table (mapping with name, version, source, fractions, beam_modes)."""
    require_keys(raw, ("name", "version", "source", "fractions", "beam_modes"), path)
    modes = {}
    for mname, item in (raw["beam_modes"] or {}).items():
        where = f"{path}: beam_modes.{mname}"
        if not isinstance(item, dict):
            msg = f"{where}: expected a mapping with {list(_MODE_KEYS)}"
            raise InputError(msg)
        lacking = [k for k in _MODE_KEYS if k not in item]
        if lacking:
            msg = f"{where}: missing {lacking}; expected {list(_MODE_KEYS)}"
            raise InputError(msg)
        vals = {k: _positive(item[k], f"{where}.{k}") for k in _MODE_KEYS}
        if vals["duty_factor"] > 1:
            msg = f"{where}.duty_factor = {vals['duty_factor']}; expected a fraction in (0, 1]"
            raise InputError(msg)
        modes[str(mname)] = BeamMode(str(mname), **vals)
    fractions = {str(k): _positive(v, f"{path}: fractions.{k}") for k, v in (raw["fractions"] or {}).items()}
    return PotConstants(str(raw["name"]), int(raw["version"]), str(path), str(raw["source"]), modes, fractions)


def load_pot_constants(name: str, version: int, root: str | os.PathLike | None = None) -> PotConstants:
    """Load ``parameters/cross_sections/<name>_v<version>.yaml`` as POT constants."""
    path = table_path(name, version, root)
    if not path.is_file():
        msg = f"POT constants table {name!r} version {version} not found: {path} does not exist"
        raise ParameterError(msg)
    return parse_pot_constants(load_yaml(path), str(path))


def pot_spill(on_spill_s: float, mode: BeamMode) -> float:
    """POT by the spill method: on-spill time (s) / spill length (s) × protons per spill."""
    return on_spill_s / mode.spill_length_s * mode.protons_per_spill


def pot_cycle(on_spill_s: float, mode: BeamMode) -> float:
    """POT by the cycle method: on-spill time (s) / (cycle time (s) × duty factor) × POT per cycle."""
    return on_spill_s / (mode.cycle_time_s * mode.duty_factor) * mode.pot_per_cycle


def pot_both(on_spill_s: float, mode: BeamMode) -> dict:
    """Both POT estimates, their difference (cycle − spill) and relative difference (to spill)."""
    if not math.isfinite(on_spill_s) or on_spill_s < 0:
        msg = f"on-spill time = {on_spill_s!r} s; expected a time >= 0"
        raise InputError(msg)
    spill = pot_spill(on_spill_s, mode)
    cycle = pot_cycle(on_spill_s, mode)
    return {
        "mode": mode.name, "on_spill_s": on_spill_s, "wall_time_s": on_spill_s / mode.duty_factor,
        "pot_spill": spill, "pot_cycle": cycle, "difference": cycle - spill,
        "relative_difference": (cycle - spill) / spill if spill > 0 else 0.0,
    }


def expected_counts(pot: Mapping[str, float], processes: Iterable[Mapping], constants: PotConstants) -> pd.DataFrame:
    """Expected counts per process for each POT estimate.

    ``processes`` items: ``{"process": name, "rate_per_pot": r, "fraction": key or ""}``;
    columns ``process, rate_per_pot, fraction, expected_spill, expected_cycle``.
    """
    rows = []
    for i, item in enumerate(processes):
        where = f"livetime.processes[{i}]"
        if not isinstance(item, Mapping) or "process" not in item or "rate_per_pot" not in item:
            msg = f"{where} = {item!r}; expected a mapping with process, rate_per_pot (and fraction)"
            raise ParameterError(msg)
        rate = _positive(item["rate_per_pot"], f"{where}.rate_per_pot")
        frac = constants.fraction(str(item.get("fraction") or ""), where)
        per_pot = rate * frac
        rows.append({
            "process": str(item["process"]), "rate_per_pot": rate, "fraction": frac, "per_pot": per_pot,
            "expected_spill": pot["pot_spill"] * per_pot, "expected_cycle": pot["pot_cycle"] * per_pot,
        })
    return pd.DataFrame(rows, columns=["process", "rate_per_pot", "fraction", "per_pot", "expected_spill",
                                       "expected_cycle"])
