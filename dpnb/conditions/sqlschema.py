"""SQLite schema of the conditions database (one file; readable with any SQLite client).

Tables (schema version 1):

``payloads``
    ``id`` integer key; ``name``; ``revision`` = sha256 of the content (see
    :mod:`dpnb.conditions.encoding`); ``exp_first run_first exp_last run_last`` (inclusive,
    ``-1`` = open end); ``data`` = JSON text ``{field: {"dtype", "shape", "data"}}``;
    ``provenance`` = JSON text (``bucket``, ``step``, ``report`` output dir, ``inputs``, ...);
    ``created`` (UTC ISO); ``row_sha256`` = sha256 of the canonical JSON list
    ``[name, revision, [exp_first, run_first, exp_last, run_last], provenance]``.
    Rows are immutable (triggers refuse UPDATE and DELETE); unique on name+revision+IOV.
``tags``
    ``name`` key, ``state`` (OPEN TESTING VALIDATED PUBLISHED INVALID), ``description``, ``created``.
``tag_payloads``
    ``tag``, ``payload_id``, ``added``; a trigger refuses inserts and deletes while the tag is not OPEN.
``tag_history``
    append-only (triggers refuse UPDATE and DELETE): ``tag``, ``from_state``, ``to_state``,
    ``who``, ``at`` (UTC ISO), ``override`` (0/1), ``note``.

``meta`` holds ``schema_version``.
"""

from __future__ import annotations

from .encoding import canonical_json, sha256_text
from .model import TAG_STATES

__all__ = ["SCHEMA_VERSION", "SCHEMA_STATEMENTS", "row_sha"]

SCHEMA_VERSION = 1

SCHEMA_STATEMENTS = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS payloads (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL, revision TEXT NOT NULL,
        exp_first INTEGER NOT NULL, run_first INTEGER NOT NULL,
        exp_last INTEGER NOT NULL, run_last INTEGER NOT NULL,
        data TEXT NOT NULL, provenance TEXT NOT NULL, created TEXT NOT NULL, row_sha256 TEXT NOT NULL,
        UNIQUE (name, revision, exp_first, run_first, exp_last, run_last))""",
    f"""CREATE TABLE IF NOT EXISTS tags (
        name TEXT PRIMARY KEY,
        state TEXT NOT NULL CHECK (state IN ({", ".join(repr(s) for s in TAG_STATES)})),
        description TEXT NOT NULL DEFAULT '', created TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS tag_payloads (
        tag TEXT NOT NULL REFERENCES tags(name), payload_id INTEGER NOT NULL REFERENCES payloads(id),
        added TEXT NOT NULL, PRIMARY KEY (tag, payload_id))""",
    """CREATE TABLE IF NOT EXISTS tag_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT, tag TEXT NOT NULL, from_state TEXT, to_state TEXT NOT NULL,
        who TEXT NOT NULL, at TEXT NOT NULL, override INTEGER NOT NULL DEFAULT 0, note TEXT NOT NULL DEFAULT '')""",
    "CREATE INDEX IF NOT EXISTS payloads_by_name ON payloads (name)",
    # immutability enforced by the file itself, not only by this module
    """CREATE TRIGGER IF NOT EXISTS payloads_no_update BEFORE UPDATE ON payloads
        BEGIN SELECT RAISE(ABORT, 'payloads are immutable'); END""",
    """CREATE TRIGGER IF NOT EXISTS payloads_no_delete BEFORE DELETE ON payloads
        BEGIN SELECT RAISE(ABORT, 'payloads are immutable'); END""",
    """CREATE TRIGGER IF NOT EXISTS history_no_update BEFORE UPDATE ON tag_history
        BEGIN SELECT RAISE(ABORT, 'tag_history is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS history_no_delete BEFORE DELETE ON tag_history
        BEGIN SELECT RAISE(ABORT, 'tag_history is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS tag_frozen_insert BEFORE INSERT ON tag_payloads
        WHEN (SELECT state FROM tags WHERE name = NEW.tag) IS NOT 'OPEN'
        BEGIN SELECT RAISE(ABORT, 'tag is not OPEN'); END""",
    """CREATE TRIGGER IF NOT EXISTS tag_frozen_delete BEFORE DELETE ON tag_payloads
        WHEN (SELECT state FROM tags WHERE name = OLD.tag) IS NOT 'OPEN'
        BEGIN SELECT RAISE(ABORT, 'tag is not OPEN'); END""",
]


def row_sha(name: str, revision: str, iov: tuple, provenance_json: str) -> str:
    """sha256 of ``[name, revision, [exp_first, run_first, exp_last, run_last], provenance_json]`` as canonical JSON."""
    return sha256_text(canonical_json([name, revision, list(iov), provenance_json]))
