"""Canonical, dpnb-free encoding of payload data and the checksums over it.

Payload data is stored as JSON text: an object with one entry per field, sorted by field
name, each ``{"dtype": "<numpy dtype name>", "shape": [..], "data": <nested lists or a
scalar>}`` (``shape`` is ``[]`` for a scalar). Floats are written with Python's shortest
round-trip ``repr`` (exact for float64 and float32); NaN and infinities appear as the
tokens ``NaN``, ``Infinity`` and ``-Infinity`` that Python's ``json`` reads back. Strings
are stored with dtype ``"str"``.

The revision of a payload is ``sha256(name + "\\n" + data_json)`` (hex): it depends on the
content only, not on the IOV or the provenance, so a rerun that produces the same
constants produces the same revision.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Mapping

import numpy as np

from ..errors import InputError

__all__ = ["encode_data", "decode_data", "content_revision", "sha256_text", "canonical_json"]


def canonical_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, NaN/Infinity allowed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)


def sha256_text(text: str) -> str:
    """Hex sha256 of ``text`` encoded as UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _encode_value(name: str, key: str, value: Any) -> dict:
    if isinstance(value, str):
        return {"dtype": "str", "shape": [], "data": value}
    arr = np.asarray(value)
    if arr.dtype.kind in "US":
        return {"dtype": "str", "shape": list(arr.shape), "data": arr.astype(str).tolist()}
    if arr.dtype.kind not in "biuf":
        msg = f"payload {name!r} field {key!r}: cannot store dtype {arr.dtype} (numbers, booleans or strings only)"
        raise InputError(msg)
    # tolist() gives Python numbers whose repr round-trips the stored dtype exactly
    return {"dtype": arr.dtype.name, "shape": list(arr.shape), "data": arr.tolist()}


def encode_data(name: str, data: Mapping[str, Any]) -> str:
    """Canonical JSON text of a payload's data (see the module docstring)."""
    return canonical_json({str(k): _encode_value(name, str(k), v) for k, v in data.items()})


def decode_data(text: str) -> dict:
    """Inverse of :func:`encode_data`: numpy arrays of the stored dtype, numpy scalars for shape ``[]``."""
    out = {}
    for key, entry in json.loads(text).items():
        dtype, shape, values = entry["dtype"], tuple(entry["shape"]), entry["data"]
        if dtype == "str":
            out[key] = values if not shape else np.asarray(values, dtype=str).reshape(shape)
            continue
        arr = np.asarray(values, dtype=np.dtype(dtype)).reshape(shape)
        out[key] = arr[()] if not shape else arr
    return out


def content_revision(name: str, data_json: str) -> str:
    """The revision (content checksum) of payload ``name`` with encoded data ``data_json``."""
    return sha256_text(f"{name}\n{data_json}")


def clean_json_value(x: Any) -> Any:
    """JSON-safe provenance value: numpy to Python, paths and other objects to strings."""
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, np.ndarray):
        x = x.tolist()
    if isinstance(x, Mapping):
        return {str(k): clean_json_value(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        items = sorted(x, key=str) if isinstance(x, (set, frozenset)) else x
        return [clean_json_value(v) for v in items]
    if x is None or isinstance(x, (bool, int, str)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    return str(x)
