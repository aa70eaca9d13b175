"""Units: the one place where luminosity and cross-section units are converted.

Internal conventions
--------------------
* instantaneous luminosity: Hz/µb (= 1e30 cm^-2 s^-1)
* integrated luminosity: pb^-1 in tables, µb^-1 in Massi summary files
* cross sections: nb internally
* time: seconds (UNIX time for timestamps), ns for detector times
"""

from __future__ import annotations

from .errors import InputError

__all__ = [
    "UB_INV_PER_PB_INV",
    "integrated_to_pb",
    "pb_to",
    "cross_section_to_nb",
    "expected_events",
]

#: 1 pb^-1 = 1e6 µb^-1
UB_INV_PER_PB_INV = 1.0e6

# integrated luminosity unit -> factor to pb^-1
_INTEGRATED_TO_PB = {
    "/ub": 1.0e-6,
    "ub^-1": 1.0e-6,
    "/nb": 1.0e-3,
    "nb^-1": 1.0e-3,
    "/pb": 1.0,
    "pb^-1": 1.0,
    "/fb": 1.0e3,
    "fb^-1": 1.0e3,
    "/ab": 1.0e6,
    "ab^-1": 1.0e6,
}

# cross-section unit -> factor to nb
_XSEC_TO_NB = {"mb": 1.0e6, "ub": 1.0e3, "nb": 1.0, "pb": 1.0e-3, "fb": 1.0e-6, "ab": 1.0e-9}


def _norm(unit: str) -> str:
    return str(unit).strip().replace("µ", "u").replace("μ", "u").replace(" ", "")


def integrated_to_pb(value, unit: str):
    """Convert an integrated luminosity ``value`` in ``unit`` (e.g. ``"/fb"``, ``"ub^-1"``) to pb^-1."""
    u = _norm(unit)
    if u not in _INTEGRATED_TO_PB:
        msg = f"unknown integrated-luminosity unit {unit!r}; expected one of {sorted(_INTEGRATED_TO_PB)}"
        raise InputError(msg)
    return value * _INTEGRATED_TO_PB[u]


def pb_to(value_pb, unit: str):
    """Convert an integrated luminosity in pb^-1 to ``unit``."""
    u = _norm(unit)
    if u not in _INTEGRATED_TO_PB:
        msg = f"unknown integrated-luminosity unit {unit!r}; expected one of {sorted(_INTEGRATED_TO_PB)}"
        raise InputError(msg)
    return value_pb / _INTEGRATED_TO_PB[u]


def cross_section_to_nb(value, unit: str):
    """Convert a cross section in ``unit`` (mb, ub, nb, pb, fb, ab) to nb."""
    u = _norm(unit)
    if u not in _XSEC_TO_NB:
        msg = f"unknown cross-section unit {unit!r}; expected one of {sorted(_XSEC_TO_NB)}"
        raise InputError(msg)
    return value * _XSEC_TO_NB[u]


def expected_events(sigma_nb, lumi_pb):
    """Expected events N = sigma * L for sigma in nb and L in pb^-1 (1 nb * 1 pb^-1 = 1000)."""
    return sigma_nb * 1.0e3 * lumi_pb
