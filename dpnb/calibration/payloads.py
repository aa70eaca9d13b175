"""Payload schemas: the one place that says what each calibration payload holds.

A schema maps each field to a :class:`Field`: its dtype, its shape (``()`` for a scalar,
``("n_channels",)`` for a per-channel array, where a symbolic dimension must have the
same length in every field of the payload) and, for status codes, the allowed values.

=================  =====================================================================
payload            fields
=================  =====================================================================
ChannelMask        ``status`` int8[n_channels] (0 ok, 1 hot, 2 dead),
                   ``occupancy`` f8[n_channels] (hits per event per channel)
ChannelT0          ``t0_ns`` f8[n_channels], ``t0_err_ns`` f8[n_channels],
                   ``status`` int8[n_channels] (0 ok, 1 masked, 2 not enough data)
ModuleAlignment    ``dx_um dy_um dx_err_um dy_err_um`` f8[n_modules], ``iterations`` int
BeamSpot           ``x_cm y_cm z_cm x_err_cm y_err_cm z_err_cm size_x_cm size_y_cm size_z_cm`` float
DedxGain           ``gain gain_err`` float (dimensionless, MIP = 1)
BeamEnergy         ``ecm_gev ecm_err_gev`` float (GeV)
=================  =====================================================================

:func:`validate_payload` checks data against its schema and returns it normalised to the
schema's dtypes (numpy arrays, numpy scalars); anything else raises
:class:`~dpnb.errors.InputError` naming the payload and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..errors import InputError, nearest

__all__ = [
    "Field",
    "PAYLOAD_SCHEMAS",
    "PAYLOAD_NAMES",
    "MASK_OK", "MASK_HOT", "MASK_DEAD",
    "T0_OK", "T0_MASKED", "T0_NOT_ENOUGH_DATA",
    "validate_payload",
    "schema_for",
]

# status codes (one place; algorithms and notebooks import these)
MASK_OK, MASK_HOT, MASK_DEAD = 0, 1, 2
T0_OK, T0_MASKED, T0_NOT_ENOUGH_DATA = 0, 1, 2


@dataclass(frozen=True)
class Field:
    """One field of a payload: numpy dtype name, shape (symbolic dims), allowed values, unit."""

    dtype: str
    shape: tuple[str, ...] = ()
    allowed: tuple[int, ...] | None = None
    unit: str = ""
    description: str = ""


def _f8(unit: str, description: str = "") -> Field:
    return Field("float64", (), None, unit, description)


def _chan(dtype: str, unit: str = "", allowed=None, description: str = "") -> Field:
    return Field(dtype, ("n_channels",), allowed, unit, description)


def _mod(unit: str, description: str = "") -> Field:
    return Field("float64", ("n_modules",), None, unit, description)


PAYLOAD_SCHEMAS: dict[str, dict[str, Field]] = {
    "ChannelMask": {
        "status": _chan("int8", allowed=(MASK_OK, MASK_HOT, MASK_DEAD), description="0 ok, 1 hot, 2 dead"),
        "occupancy": _chan("float64", "hits/event", description="occupancy per channel"),
    },
    "ChannelT0": {
        "t0_ns": _chan("float64", "ns", description="time offset per channel"),
        "t0_err_ns": _chan("float64", "ns", description="uncertainty of t0_ns"),
        "status": _chan("int8", allowed=(T0_OK, T0_MASKED, T0_NOT_ENOUGH_DATA),
                        description="0 ok, 1 masked, 2 not enough data"),
    },
    "ModuleAlignment": {
        "dx_um": _mod("um", "x shift per module"),
        "dy_um": _mod("um", "y shift per module"),
        "dx_err_um": _mod("um", "uncertainty of dx_um"),
        "dy_err_um": _mod("um", "uncertainty of dy_um"),
        "iterations": Field("int64", (), None, "", "iterations used"),
    },
    "BeamSpot": {
        **{f"{c}_cm": _f8("cm", f"beam-spot {c} position") for c in "xyz"},
        **{f"{c}_err_cm": _f8("cm", f"uncertainty of {c}_cm") for c in "xyz"},
        **{f"size_{c}_cm": _f8("cm", f"beam-spot size (sigma) in {c}") for c in "xyz"},
    },
    "DedxGain": {
        "gain": _f8("", "dE/dx gain (MIP = 1)"),
        "gain_err": _f8("", "uncertainty of gain"),
    },
    "BeamEnergy": {
        "ecm_gev": _f8("GeV", "centre-of-mass energy"),
        "ecm_err_gev": _f8("GeV", "uncertainty of ecm_gev"),
    },
}
PAYLOAD_NAMES = tuple(PAYLOAD_SCHEMAS)


def schema_for(name: str) -> dict[str, Field]:
    """The schema of payload ``name``; an unknown name lists the known ones."""
    if name not in PAYLOAD_SCHEMAS:
        msg = (f"unknown payload name {name!r}; expected one of {list(PAYLOAD_NAMES)} "
               f"(nearest: {nearest(str(name), PAYLOAD_NAMES)[0]!r})")
        raise InputError(msg)
    return PAYLOAD_SCHEMAS[name]


def _convert(payload: str, key: str, spec: Field, value: Any):
    """``value`` as the field's dtype, refusing conversions that would change or reinterpret it."""
    where = f"payload {payload!r} field {key!r}"
    target = np.dtype(spec.dtype)
    if isinstance(value, (str, bytes)) or value is None:
        msg = f"{where}: expected {spec.dtype}{list(spec.shape) if spec.shape else ' scalar'}, got {value!r}"
        raise InputError(msg)
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged lists
        msg = f"{where}: cannot be read as an array ({exc})"
        raise InputError(msg) from None
    if arr.ndim != len(spec.shape):
        want = f"a {len(spec.shape)}-d array {list(spec.shape)}" if spec.shape else "a scalar"
        msg = f"{where}: expected {want} of {spec.dtype}, got shape {list(arr.shape)}"
        raise InputError(msg)
    kind = arr.dtype.kind
    if target.kind == "f":
        ok = kind in "fiu" and np.can_cast(arr.dtype, target, casting="safe")
    else:  # integer fields take integers whose values fit exactly
        ok = kind in "iu" and (arr.size == 0 or np.array_equal(arr.astype(target), arr))
    if not ok:
        msg = f"{where}: expected dtype {spec.dtype}, got {arr.dtype} (values {arr.ravel()[:3].tolist()}...)"
        raise InputError(msg)
    out = arr.astype(target)
    if spec.allowed is not None and out.size:
        bad = np.setdiff1d(np.unique(out), np.asarray(spec.allowed, dtype=target))
        if bad.size:
            msg = f"{where}: values {bad[:5].tolist()} not allowed; expected one of {list(spec.allowed)}"
            raise InputError(msg)
    return out[()] if out.ndim == 0 else out


def validate_payload(name: str, data: Mapping[str, Any], dims: Mapping[str, int] | None = None) -> dict:
    """Check ``data`` against the schema of payload ``name``; return it with the schema's dtypes.

    ``dims`` optionally fixes symbolic dimensions (e.g. ``{"n_channels": 14336}``);
    otherwise every field sharing a dimension must have the same length (>= 1).
    Missing or extra fields, wrong dtype or shape, or disallowed status values raise
    :class:`InputError` naming the payload and field.
    """
    schema = schema_for(name)
    if not isinstance(data, Mapping):
        msg = f"payload {name!r}: data must be a mapping of field -> value, got {type(data).__name__}"
        raise InputError(msg)
    missing = [k for k in schema if k not in data]
    extra = [str(k) for k in data if k not in schema]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing field(s) {missing}")
        if extra:
            parts.append(f"unexpected field(s) {extra}")
        msg = f"payload {name!r}: {'; '.join(parts)}; expected fields {list(schema)}"
        raise InputError(msg)
    seen: dict[str, tuple[int, str]] = {k: (v, "parameter dims") for k, v in (dims or {}).items()}
    out = {}
    for key, spec in schema.items():
        val = _convert(name, key, spec, data[key])
        for axis, dim in enumerate(spec.shape):
            n = val.shape[axis]
            if n == 0:
                msg = f"payload {name!r} field {key!r}: dimension {dim} is empty"
                raise InputError(msg)
            if dim in seen and seen[dim][0] != n:
                msg = (f"payload {name!r} field {key!r}: length {n} along {dim}, "
                       f"but {seen[dim][1]} has {seen[dim][0]}")
                raise InputError(msg)
            seen.setdefault(dim, (n, f"field {key!r}"))
        out[key] = val
    return out
