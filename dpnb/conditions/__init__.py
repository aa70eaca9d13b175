"""Conditions database: calibration payloads with intervals of validity, collected in global tags.

``ConditionsDB(path)`` is the store (one SQLite file; see :mod:`dpnb.conditions.store` for
the tables and :mod:`dpnb.conditions.encoding` for the payload data format, which can be
read without dpnb; ``docs/conditions.md`` has the overview and a reading snippet).
"""

from __future__ import annotations

from .encoding import content_revision, decode_data, encode_data
from .model import LEGAL_TRANSITIONS, TAG_STATES, CoverageReport, DiffEntry, Payload, TagDiff, TagInfo
from .store import SCHEMA_VERSION, ConditionsDB, provenance_for, tag_chain

__all__ = [
    "ConditionsDB",
    "tag_chain",
    "provenance_for",
    "Payload",
    "CoverageReport",
    "TagDiff",
    "DiffEntry",
    "TagInfo",
    "TAG_STATES",
    "LEGAL_TRANSITIONS",
    "SCHEMA_VERSION",
    "encode_data",
    "decode_data",
    "content_revision",
]
