"""The conditions database: payloads with IOVs collected in global tags, in one SQLite file.

The tables are described in :mod:`dpnb.conditions.sqlschema`, the payload data format in
:mod:`dpnb.conditions.encoding`. Every write is one ``BEGIN IMMEDIATE`` transaction (all
or nothing); the journal is WAL and the busy timeout lets notebooks in parallel processes
add payloads to the same file. Every read verifies ``row_sha256`` and, when the data is
read, the revision.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..calibration.payloads import schema_for, validate_payload
from ..errors import ChecksumError, ConditionsError, InputError, TagStateError, nearest
from ..params import LABEL_RE
from ..runs import IOV, RunId
from .compare import coverage_report, diff_contents, field_changes, uncovered_runs
from .encoding import canonical_json, clean_json_value, content_revision, decode_data, encode_data
from .model import LEGAL_TRANSITIONS, TAG_STATES, CoverageReport, Payload, TagDiff, TagInfo
from .sqlschema import SCHEMA_STATEMENTS, SCHEMA_VERSION, row_sha

__all__ = ["ConditionsDB", "SCHEMA_VERSION", "tag_chain", "provenance_for"]

BUSY_TIMEOUT_S = 60.0
# connections inherited through fork are kept, not closed: closing them in the child could
# disturb the parent's SQLite locks on the same file
_INHERITED: list = []

_COLS = "p.id, p.name, p.revision, p.exp_first, p.run_first, p.exp_last, p.run_last, p.provenance, p.row_sha256"
# IOV contains (exp, run); -1 is an open end (exp_last = -1: open; run_last = -1: to the end of exp_last)
_CONTAINS = """(p.exp_first < :e OR (p.exp_first = :e AND p.run_first <= :r))
    AND (p.exp_last = -1 OR p.exp_last > :e OR (p.exp_last = :e AND (p.run_last = -1 OR p.run_last >= :r)))"""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _who(by: str) -> str:
    if by:
        return str(by)
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (containers)
        return "unknown"


def _as_run(run) -> RunId:
    if isinstance(run, RunId):
        return run
    try:
        exp, r = run
        return RunId(int(exp), int(r))
    except (TypeError, ValueError):
        msg = f"expected a RunId(exp, run) or an (exp, run) pair, got {run!r}"
        raise InputError(msg) from None


def _as_iov(iov) -> IOV:
    if isinstance(iov, IOV):
        return iov
    if isinstance(iov, (str, bytes)):
        msg = f"expected an IOV(exp_first, run_first, exp_last, run_last), got the string {iov!r}"
        raise InputError(msg)
    try:
        return IOV(*(int(x) for x in iov))
    except (TypeError, ValueError):
        msg = f"expected an IOV(exp_first, run_first, exp_last, run_last), got {iov!r}"
        raise InputError(msg) from None


def tag_chain(conditions: Mapping) -> list[str]:
    """The lookup chain ``[global_tag, *chain]`` of a bucket's ``conditions`` parameters (``ctx.conditions``)."""
    tag = conditions.get("global_tag")
    if not tag:
        msg = "conditions.global_tag is not set; expected the bucket's global tag name"
        raise InputError(msg)
    return [tag, *[t for t in conditions.get("chain") or [] if t != tag]]


def provenance_for(ctx, step: str, inputs: Iterable = ()) -> dict[str, Any]:
    """Provenance of a payload written by a notebook: bucket, step, notebook, report output dir, inputs."""
    return {"bucket": ctx.label, "step": str(step), "notebook": ctx.name, "report": str(ctx.output_dir),
            "inputs": [str(x) for x in inputs]}


def _as_tags(tags) -> list[str]:
    chain = [tags] if isinstance(tags, str) else list(tags or [])
    if not chain:
        msg = "no global tag given: expected a tag name or a chain (list of tag names, first wins)"
        raise InputError(msg)
    return chain


class ConditionsDB:
    """Payloads, IOVs and global tags in one SQLite file (created with its schema if absent).

    Use as a context manager or call :meth:`close`. A connection is per process: after a
    fork the child opens its own, and a pickled ConditionsDB (process pools, Dask) reopens
    the file where it is unpickled. Threads share the connection under a lock.
    """

    def __init__(self, path: str | os.PathLike, create: bool = True, timeout_s: float = BUSY_TIMEOUT_S):
        self.path = Path(path)
        self.timeout_s = float(timeout_s)
        if not self.path.exists():
            if not create:
                msg = f"{self.path}: no conditions database there (run the calibration first, or check --db/--bucket)"
                raise ConditionsError(msg)
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._lock = threading.RLock()
        self._init_schema()

    def __getstate__(self) -> dict:
        return {"path": self.path, "timeout_s": self.timeout_s}

    def __setstate__(self, state: dict) -> None:
        self.path, self.timeout_s = state["path"], state["timeout_s"]
        self._conn, self._pid, self._lock = None, -1, threading.RLock()

    # --- connection and transactions ----------------------------------------------
    def _con(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            if self._conn is not None:  # forked: the parent's connection stays untouched
                _INHERITED.append(self._conn)
                self._lock = threading.RLock()
            try:
                con = sqlite3.connect(str(self.path), timeout=self.timeout_s, isolation_level=None,
                                      check_same_thread=False)
            except sqlite3.Error as exc:
                msg = f"{self.path}: cannot open conditions database ({exc})"
                raise ConditionsError(msg) from None
            con.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
            con.execute("PRAGMA foreign_keys = ON")
            self._conn, self._pid = con, os.getpid()
        return self._conn

    @contextmanager
    def _tx(self, write: bool):
        """One transaction: IMMEDIATE (takes the write lock now) for writes, a consistent snapshot for reads."""
        con = self._con()
        with self._lock:
            try:
                con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.Error as exc:
                msg = f"{self.path}: cannot start a transaction ({exc})"
                raise ConditionsError(msg) from None
            try:
                yield con
            except BaseException as exc:
                self._rollback(con)
                if isinstance(exc, sqlite3.Error):
                    msg = f"{self.path}: {exc}"
                    raise ConditionsError(msg) from None
                raise
            else:
                try:
                    con.execute("COMMIT")
                except sqlite3.Error as exc:
                    self._rollback(con)
                    msg = f"{self.path}: commit failed, nothing written ({exc})"
                    raise ConditionsError(msg) from None

    @staticmethod
    def _rollback(con) -> None:
        try:
            con.execute("ROLLBACK")
        except sqlite3.Error:  # SQLite already rolled back (e.g. disk full)
            pass

    def _inspect_and_enable_wal(self, con) -> str:
        """Check the file is ours (or empty) and switch it to WAL; returns the journal mode.

        Two processes opening a new database at once can see "database is locked" here:
        SQLite does not call the busy handler while changing the journal mode, so retry
        with a short back-off until ``timeout_s``.
        """
        deadline = time.monotonic() + self.timeout_s
        delay = 0.01
        while True:
            try:
                tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if tables and "meta" not in tables:  # someone else's SQLite file: do not touch it
                    msg = (f"{self.path}: an SQLite file but not a dpnb conditions database "
                           f"(tables {sorted(tables)}; expected meta, payloads, tags, tag_payloads, tag_history)")
                    raise ConditionsError(msg)
                return con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(0.2, delay * 2)

    def _init_schema(self) -> None:
        con = self._con()
        try:
            mode = self._inspect_and_enable_wal(con)
        except ConditionsError:
            self.close()
            raise
        except sqlite3.Error as exc:
            msg = f"{self.path}: not a usable SQLite file ({exc})"
            self.close()
            raise ConditionsError(msg) from None
        if str(mode).lower() != "wal":
            msg = f"{self.path}: could not switch to WAL journal (got {mode!r}); is it on a network file system?"
            self.close()
            raise ConditionsError(msg)
        try:
            with self._tx(write=True) as c:
                for stmt in SCHEMA_STATEMENTS:
                    c.execute(stmt)
                row = c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if row is None:
                    c.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                elif int(row[0]) != SCHEMA_VERSION:
                    msg = f"{self.path}: conditions schema version {row[0]}, this dpnb reads {SCHEMA_VERSION}"
                    raise ConditionsError(msg)
        except ConditionsError:
            self.close()
            raise

    def close(self) -> None:
        """Close this process's connection (idempotent)."""
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None

    def __enter__(self) -> "ConditionsDB":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ConditionsDB({str(self.path)!r})"

    # --- tags ---------------------------------------------------------------------
    def _tag_state(self, con, tag: str) -> str:
        row = con.execute("SELECT state FROM tags WHERE name = ?", (tag,)).fetchone()
        if row is None:
            names = [r[0] for r in con.execute("SELECT name FROM tags ORDER BY name")]
            near = f"; nearest: {nearest(tag, names)}" if names else " (the database has no tags yet)"
            msg = f"{self.path}: no global tag {tag!r}{near}"
            raise ConditionsError(msg)
        return row[0]

    def _log(self, con, tag: str, old: str | None, new: str, by: str, override: bool = False, note: str = ""):
        con.execute(
            "INSERT INTO tag_history (tag, from_state, to_state, who, at, override, note) VALUES (?,?,?,?,?,?,?)",
            (tag, old, new, _who(by), _now(), int(bool(override)), note),
        )

    def create_tag(self, tag: str, description: str = "", by: str = "") -> None:
        """Create global tag ``tag`` in state OPEN; a no-op if it exists and is OPEN (TagStateError otherwise)."""
        if not isinstance(tag, str) or not LABEL_RE.match(tag):
            msg = f"global tag name {tag!r}: expected characters [A-Za-z0-9_.-] only"
            raise InputError(msg)
        with self._tx(write=True) as con:
            row = con.execute("SELECT state FROM tags WHERE name = ?", (tag,)).fetchone()
            if row is not None:
                if row[0] != "OPEN":
                    msg = f"global tag {tag!r} exists and is {row[0]}, not OPEN; create a new tag instead"
                    raise TagStateError(msg)
                return
            con.execute("INSERT INTO tags (name, state, description, created) VALUES (?, 'OPEN', ?, ?)",
                        (tag, str(description), _now()))
            self._log(con, tag, None, "OPEN", by, note="created")

    def state(self, tag: str) -> str:
        """The state of ``tag``: OPEN, TESTING, VALIDATED, PUBLISHED or INVALID."""
        with self._tx(write=False) as con:
            return self._tag_state(con, tag)

    def list_tags(self) -> list[TagInfo]:
        """Every tag with its state and number of payloads, sorted by name."""
        with self._tx(write=False) as con:
            rows = con.execute(
                "SELECT t.name, t.state, t.description, t.created, COUNT(tp.payload_id) FROM tags t "
                "LEFT JOIN tag_payloads tp ON tp.tag = t.name GROUP BY t.name ORDER BY t.name"
            ).fetchall()
        return [TagInfo(*r) for r in rows]

    def history(self, tag: str) -> list[dict[str, Any]]:
        """State transitions of ``tag``, oldest first: from_state, to_state, who, at (UTC), override, note."""
        with self._tx(write=False) as con:
            self._tag_state(con, tag)
            rows = con.execute("SELECT from_state, to_state, who, at, override, note FROM tag_history "
                               "WHERE tag = ? ORDER BY id", (tag,)).fetchall()
        keys = ("from_state", "to_state", "who", "at", "override", "note")
        return [dict(zip(keys, r)) | {"override": bool(r[4])} for r in rows]

    # --- payloads -----------------------------------------------------------------
    def _rows(self, con, tag: str, name: str | None = None, run: RunId | None = None) -> list[tuple]:
        sql = f"SELECT {_COLS} FROM payloads p JOIN tag_payloads tp ON tp.payload_id = p.id WHERE tp.tag = :t"
        args: dict[str, Any] = {"t": tag}
        if name is not None:
            sql += " AND p.name = :n"
            args["n"] = name
        if run is not None:
            sql += f" AND {_CONTAINS}"
            args.update(e=run.exp, r=run.run)
        sql += " ORDER BY p.name, p.exp_first, p.run_first, p.revision"
        return con.execute(sql, args).fetchall()

    def _payload(self, con, row: tuple, tag: str | None, with_data: bool) -> Payload:
        pid, name, revision, e0, r0, e1, r1, prov_json, stored_sha = row
        where = f"{self.path}: payload {name!r} revision {revision[:12]} IOV ({e0},{r0},{e1},{r1})"
        if row_sha(name, revision, (e0, r0, e1, r1), prov_json) != stored_sha:
            msg = f"{where}: row checksum mismatch (IOV or provenance changed after writing); refusing to use it"
            raise ChecksumError(msg)
        data = None
        if with_data:
            text = con.execute("SELECT data FROM payloads WHERE id = ?", (pid,)).fetchone()[0]
            if content_revision(name, text) != revision:
                msg = f"{where}: data checksum mismatch (content changed after writing); refusing to use it"
                raise ChecksumError(msg)
            try:
                data = decode_data(text)
            except (ValueError, KeyError, TypeError) as exc:
                msg = f"{where}: data cannot be decoded ({exc})"
                raise ChecksumError(msg) from None
        return Payload(name, revision, IOV(e0, r0, e1, r1), data, json.loads(prov_json), tag)

    def add_payload(self, tag: str, name: str, data: Mapping[str, Any], iov, provenance: Mapping | None = None,
                    replace: bool = False) -> str:
        """Add payload ``name`` with ``data`` valid for ``iov`` to the OPEN tag ``tag``; return its revision.

        ``data`` is validated against :mod:`dpnb.calibration.payloads` (InputError naming the
        field). Adding a payload identical to one in the tag (same name, revision and IOV) is
        a no-op, even when the tag is frozen. Otherwise a tag out of OPEN raises
        TagStateError, and an IOV overlapping another payload of the same name in the tag
        raises ConditionsError naming both, unless ``replace=True`` (OPEN tags only), which
        takes the overlapping payloads out of the tag. ``provenance`` is a JSON-able mapping
        (bucket, step, report, inputs); it is stored with the first copy of the payload.
        """
        iov = _as_iov(iov)
        if provenance is not None and not isinstance(provenance, Mapping):
            msg = f"payload {name!r}: provenance must be a mapping (bucket, step, report, inputs), got {provenance!r}"
            raise InputError(msg)
        clean = validate_payload(name, data)
        data_json = encode_data(name, clean)
        revision = content_revision(name, data_json)
        prov_json = canonical_json(clean_json_value(dict(provenance or {})))
        key = iov.as_tuple()
        with self._tx(write=True) as con:
            state = self._tag_state(con, tag)
            existing = [(r[2], IOV(*r[3:7])) for r in self._rows(con, tag, name)]
            if (revision, iov) in existing:
                return revision  # rerun with identical content
            if state != "OPEN":
                msg = (f"global tag {tag!r} is {state}, not OPEN: refusing to add payload {name!r} "
                       f"revision {revision[:12]} IOV {iov}; the tag is unchanged")
                raise TagStateError(msg)
            clash = [(rev, other) for rev, other in existing if other.overlaps(iov)]
            if clash and not replace:
                shown = ", ".join(f"IOV {o} (revision {r[:12]})" for r, o in clash[:3])
                msg = (f"global tag {tag!r}: payload {name!r} IOV {iov} (revision {revision[:12]}) overlaps "
                       f"{shown}; remove the old payload (add with replace=True) or fix the IOVs")
                raise ConditionsError(msg)
            for rev, other in clash:
                con.execute(
                    "DELETE FROM tag_payloads WHERE tag = ? AND payload_id IN (SELECT id FROM payloads WHERE name = ? "
                    "AND revision = ? AND exp_first = ? AND run_first = ? AND exp_last = ? AND run_last = ?)",
                    (tag, name, rev, *other.as_tuple()))
            row = con.execute(
                "SELECT id FROM payloads WHERE name = ? AND revision = ? AND exp_first = ? AND run_first = ? "
                "AND exp_last = ? AND run_last = ?", (name, revision, *key)).fetchone()
            if row is None:
                cur = con.execute(
                    "INSERT INTO payloads (name, revision, exp_first, run_first, exp_last, run_last, data, provenance, "
                    "created, row_sha256) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (name, revision, *key, data_json, prov_json, _now(), row_sha(name, revision, key, prov_json)))
                pid = cur.lastrowid
            else:
                pid = row[0]
            con.execute("INSERT INTO tag_payloads (tag, payload_id, added) VALUES (?,?,?)", (tag, pid, _now()))
        return revision

    def get(self, name: str, run, tags) -> Payload:
        """The payload ``name`` valid for ``run`` from the first tag of the chain ``tags`` that has one.

        The data's checksum is verified (ChecksumError). An unknown or INVALID tag in the
        chain, or no payload in any tag, raises ConditionsError naming payload, run and tags.
        """
        schema_for(name)  # a misspelt name gets the nearest known one
        run, chain = _as_run(run), _as_tags(tags)
        with self._tx(write=False) as con:
            for tag in chain:
                self._usable(con, tag)
            for tag in chain:
                rows = self._rows(con, tag, name, run)
                if len(rows) > 1:
                    revs = ", ".join(f"{r[2][:12]} IOV ({r[3]},{r[4]},{r[5]},{r[6]})" for r in rows)
                    msg = f"global tag {tag!r}: {len(rows)} payloads {name!r} cover run {run}: {revs}"
                    raise ConditionsError(msg)
                if rows:
                    return self._payload(con, rows[0], tag, with_data=True)
            have = self._rows(con, chain[0], name)
        hint = (f"; {chain[0]!r} has {name!r} for IOVs " + ", ".join(str(IOV(*r[3:7])) for r in have[:5])
                if have else "")
        msg = f"no payload {name!r} for run {run} in global tag chain {chain}{hint}"
        raise ConditionsError(msg)

    def _usable(self, con, tag: str) -> None:
        state = self._tag_state(con, tag)
        if state == "INVALID":
            msg = f"global tag {tag!r} is INVALID and must not be used for lookups; remove it from the chain"
            raise TagStateError(msg)

    def runs_missing(self, name: str, runs: Iterable, tags) -> list[RunId]:
        """The runs (sorted) for which no tag of the chain has payload ``name``."""
        schema_for(name)
        chain = _as_tags(tags)
        runs = sorted({_as_run(r) for r in runs})
        with self._tx(write=False) as con:
            iovs = []
            for tag in chain:
                self._usable(con, tag)
                iovs += [self._payload(con, r, tag, with_data=False).iov for r in self._rows(con, tag, name)]
        return uncovered_runs(runs, iovs)

    def payloads(self, tag: str, name: str | None = None, with_data: bool = True) -> list[Payload]:
        """The payloads of ``tag`` (optionally only ``name``), sorted by name and IOV; checksums verified."""
        with self._tx(write=False) as con:
            self._tag_state(con, tag)
            return [self._payload(con, r, tag, with_data) for r in self._rows(con, tag, name)]

    # --- coverage and states ------------------------------------------------------
    def _coverage(self, con, tag: str, runs: Sequence[RunId], names) -> CoverageReport:
        by_name: dict[str, list[tuple[IOV, str]]] = {}
        for r in self._rows(con, tag):
            p = self._payload(con, r, tag, with_data=False)  # row checksum verified
            by_name.setdefault(p.name, []).append((p.iov, p.revision))
        return coverage_report(by_name, runs, names)

    def coverage(self, tag: str, runs: Iterable, names: Iterable[str] | None = None) -> CoverageReport:
        """Gaps and overlaps of every payload name of ``tag`` (or of ``names``) against the run list ``runs``.

        Only ``tag`` itself is checked, not a chain. ``ok`` needs at least one name and one
        run, no run without a payload, and no two payloads of a name with overlapping IOVs.
        """
        runs = sorted({_as_run(r) for r in runs})
        with self._tx(write=False) as con:
            self._tag_state(con, tag)
            return self._coverage(con, tag, runs, None if names is None else list(names))

    def set_state(self, tag: str, state: str, runs: Iterable | None = None, by: str = "",
                  names: Iterable[str] | None = None, note: str = "") -> str:
        """Move ``tag`` to ``state`` along a legal transition and log it in tag_history; return the state.

        OPEN -> TESTING needs ``runs`` (the bucket's run list) and a passing coverage check
        (of ``names``, default every name in the tag). Asking for the current state is a
        no-op. PUBLISHED goes through :meth:`publish`. Illegal transitions raise TagStateError.
        """
        new = str(state).upper()
        if new not in TAG_STATES:
            msg = f"global tag {tag!r}: unknown state {state!r}; expected one of {list(TAG_STATES)}"
            raise InputError(msg)
        if new == "PUBLISHED":
            return self.publish(tag, by=by, note=note)
        run_list = None if runs is None else sorted({_as_run(r) for r in runs})
        with self._tx(write=True) as con:
            cur = self._tag_state(con, tag)
            if cur == new:
                return cur
            if new not in LEGAL_TRANSITIONS[cur]:
                msg = (f"global tag {tag!r}: illegal transition {cur} -> {new}; from {cur} the legal next states are "
                       f"{list(LEGAL_TRANSITIONS[cur]) or 'none (final)'}")
                raise TagStateError(msg)
            if cur == "OPEN" and new != "INVALID":
                if not run_list:
                    msg = (f"global tag {tag!r}: leaving OPEN needs the bucket's run list for the coverage check "
                           "(set_state(tag, 'TESTING', runs=[...]))")
                    raise TagStateError(msg)
                cov = self._coverage(con, tag, run_list, None if names is None else list(names))
                if not cov.ok:
                    msg = f"global tag {tag!r} stays OPEN: coverage check failed: {cov.summary()}"
                    raise TagStateError(msg)
                note = "; ".join(x for x in (note, cov.summary()) if x)
            con.execute("UPDATE tags SET state = ? WHERE name = ?", (new, tag))
            self._log(con, tag, cur, new, by, note=note)
        return new

    def advance(self, tag: str, state: str, runs: Iterable, by: str = "", names: Iterable[str] | None = None) -> str:
        """Bring ``tag`` to TESTING or VALIDATED along the legal path; safe to call again on a rerun.

        From OPEN the coverage check against ``runs`` must pass (as in :meth:`set_state`). A
        tag already at or past ``state`` (but not INVALID) is left as it is after checking
        that it still covers ``runs`` (ConditionsError otherwise: make a new tag). Returns
        the tag's state.
        """
        target = str(state).upper()
        order = ("OPEN", "TESTING", "VALIDATED", "PUBLISHED")
        if target not in ("TESTING", "VALIDATED"):
            msg = f"global tag {tag!r}: advance() goes to TESTING or VALIDATED, not {state!r}; use publish()"
            raise InputError(msg)
        run_list = sorted({_as_run(r) for r in runs})
        cur = self.state(tag)
        if cur == "INVALID":
            msg = f"global tag {tag!r} is INVALID; calibrate into a new tag"
            raise TagStateError(msg)
        if order.index(cur) >= order.index(target):
            cov = self.coverage(tag, run_list, names)
            if not cov.ok:
                msg = f"global tag {tag!r} is already {cur} but does not cover the runs: {cov.summary()}; use a new tag"
                raise ConditionsError(msg)
            return cur
        for nxt in order[order.index(cur) + 1: order.index(target) + 1]:
            cur = self.set_state(tag, nxt, runs=run_list, by=by, names=names)
        return cur

    def publish(self, tag: str, by: str = "", approvals_ok: bool = True, override: bool = False,
                note: str = "") -> str:
        """Move a VALIDATED ``tag`` to PUBLISHED, recording who and whether an override was used.

        ``approvals_ok`` is the verdict of the reviewer sign-off rule; when it is False the
        tag is published only with ``override=True`` (logged). Publishing a PUBLISHED tag is a no-op.
        """
        with self._tx(write=True) as con:
            cur = self._tag_state(con, tag)
            if cur == "PUBLISHED":
                return cur
            if cur != "VALIDATED":
                msg = f"global tag {tag!r} is {cur}: only a VALIDATED tag can be published"
                raise TagStateError(msg)
            if not approvals_ok and not override:
                msg = f"global tag {tag!r}: reviewer approvals are missing; not published (override=True forces it)"
                raise TagStateError(msg)
            used = bool(override and not approvals_ok)
            con.execute("UPDATE tags SET state = 'PUBLISHED' WHERE name = ?", (tag,))
            self._log(con, tag, cur, "PUBLISHED", by, override=used,
                      note="; ".join(x for x in (note, "approvals overridden" if used else "") if x))
        return "PUBLISHED"

    # --- comparison ---------------------------------------------------------------
    def diff(self, tag_a: str, tag_b: str, fields: bool = False) -> TagDiff:
        """Payloads added to, removed from, changed (same IOV, new revision) or moved (same
        revision, new IOV) in ``tag_b`` relative to ``tag_a``. With ``fields=True`` each
        changed entry lists the differing fields with their largest absolute change."""
        with self._tx(write=False) as con:
            side, rows = {}, {}
            for tag in (tag_a, tag_b):
                self._tag_state(con, tag)
                for r in self._rows(con, tag):
                    p = self._payload(con, r, tag, False)
                    side.setdefault(tag, set()).add((p.name, p.iov, p.revision))
                    rows[(tag, p.name, p.iov, p.revision)] = r
            d = diff_contents(tag_a, tag_b, side.get(tag_a, set()), side.get(tag_b, set()))
            if fields:
                for i, e in enumerate(d.entries):
                    if e.kind == "changed":
                        a = self._payload(con, rows[(tag_a, e.name, e.iov_a, e.revision_a)], tag_a, True)
                        b = self._payload(con, rows[(tag_b, e.name, e.iov_b, e.revision_b)], tag_b, True)
                        d.entries[i] = dataclasses.replace(e, fields=field_changes(a.data, b.data))
        return d
