"""The hash-chained audit log: append inside the caller's transaction, verify the chain.

Each entry's hash is SHA-256 over the previous entry's hash and the entry's own
fields in a fixed order (:func:`entry_hash`). The newest entry's id and hash are also
kept apart from the log, in the one-row table ``audit_head``:

- An append first locks that row (PostgreSQL ``SELECT ... FOR UPDATE``; SQLite has a
  single writer anyway), so concurrent appends queue behind each other and the chain
  never forks. Under READ COMMITTED the waiting append then reads the new head;
  under stricter isolation it fails with a serialisation error instead of forking.
  This replaced a transaction-scoped advisory lock plus ``ORDER BY id DESC LIMIT 1``:
  the same number of statements, and the row doubles as the truncation check.
- Within one transaction the head is remembered, so each further entry costs one
  conditional ``UPDATE`` and one ``INSERT``; the condition notices when a savepoint
  rolled entries back underneath, and the slow path then re-reads the head.
- Rows go in through the DBAPI cursor as plain tuples: building and flushing ORM
  objects was most of the cost of an append (``bench/audit.py`` measures it). The
  returned :class:`AuditEvent` is attached to the session as already persistent.

Verification (:func:`verify_database`) streams the log in id order with each hash's
input built by the database (a few C string functions per row) and hashes it with
hashlib; a row whose hash does not match is re-checked with :func:`entry_hash`
itself, so the SQL is only a fast path, never the authority. The log's last entry
is compared with ``audit_head``, so entries removed from the end show as missing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import multiprocessing
import sqlite3
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from operator import methodcaller
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, configure_mappers, make_transient_to_detached

from prolo.db import utcnow
from prolo.security.models import AuditEvent

GENESIS = "0" * 64
SEPARATOR = "\x1f"
log = logging.getLogger("prolo.audit")


@dataclass(frozen=True)
class Actor:
    """Who did something, from where."""

    user_id: int | None
    role: str | None
    clinic_id: int | None
    source_ip: str | None = None


SYSTEM = Actor(user_id=None, role="system", clinic_id=None)


def _preimage(prev_hash: str, entry_id: object, recorded_iso: str, *fields: object) -> str:
    # The chain format: prev hash, id, time, then the fields in column order, with
    # str() of each (so None is "None"), joined by the unit separator.
    return SEPARATOR.join((prev_hash, str(entry_id), recorded_iso, *map(str, fields)))


def entry_hash(prev_hash: str, event: AuditEvent) -> str:
    """The chain hash of ``event`` following ``prev_hash``."""
    return hashlib.sha256(
        _preimage(
            prev_hash,
            event.id,
            event.recorded_at.astimezone(dt.UTC).isoformat(),
            event.user_id,
            event.user_role,
            event.clinic_id,
            event.action,
            event.event,
            event.entity_type,
            event.entity_id,
            event.patient_id,
            event.outcome,
            event.source_ip,
            event.detail,
        ).encode()
    ).hexdigest()


_INSERT_COLUMNS = (
    "id, recorded_at, user_id, user_role, clinic_id, action, event, entity_type, "
    "entity_id, patient_id, outcome, source_ip, detail, prev_hash, hash"
)


@dataclass(frozen=True)
class _Statements:
    """The few statements an append runs, in one dialect's parameter style."""

    read_head: str
    move_head: str
    create_head: str
    last_entry: str
    insert_entry: str

    @classmethod
    def build(cls, *, for_update: bool, placeholder: str) -> _Statements:
        def p(sql: str) -> str:
            return sql.replace("?", placeholder)

        return cls(
            read_head="SELECT last_id, last_hash FROM audit_head WHERE id = 1"  # noqa: S608
            + (" FOR UPDATE" if for_update else ""),
            move_head=p(
                "UPDATE audit_head SET last_id = ?, last_hash = ? "
                "WHERE id = 1 AND last_id = ? AND last_hash = ?"
            ),
            create_head=p("INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, ?, ?)"),
            last_entry="SELECT id, hash FROM audit_event ORDER BY id DESC LIMIT 1",
            insert_entry=p(
                f"INSERT INTO audit_event ({_INSERT_COLUMNS}) VALUES ({', '.join('?' * 15)})"  # noqa: S608
            ),
        )


_SQLITE = _Statements.build(for_update=False, placeholder="?")
_POSTGRES = _Statements.build(for_update=True, placeholder="%s")
_HEAD_KEY = "prolo.audit.head"  # in Connection.info: (transaction, last id, last hash)


def _raw_error(conn: Connection, statement: str, exc: Exception) -> Exception:
    """A DBAPI error raised through our raw cursor, wrapped as SQLAlchemy would."""
    dbapi = conn.dialect.loaded_dbapi
    if isinstance(exc, dbapi.Error):
        return DBAPIError.instance(statement, None, exc, dbapi.Error)
    return exc


def _locked_head(cur: Any, sql: _Statements) -> tuple[int, str]:
    """Lock the chain head and read it; recreate it from the log when it is missing."""
    cur.execute(sql.read_head)
    row = cur.fetchone()
    if row is not None:
        return int(row[0]), str(row[1])
    # Only a database the migration did not initialise, or one whose head was
    # deleted: rebuild it so clinical work goes on; verify still compares it.
    log.warning("the audit chain head was missing; recreated from the log's last entry")
    cur.execute(sql.last_entry)
    last = cur.fetchone()
    head = (int(last[0]), str(last[1])) if last else (0, GENESIS)
    cur.execute(sql.create_head, head)
    return head


def record(
    session: Session,
    actor: Actor,
    *,
    action: str,
    event: str,
    entity_type: str,
    entity_id: object = None,
    patient_id: int | None = None,
    outcome: str = "0",
    detail: str | None = None,
) -> AuditEvent:
    """Append one audit entry in the caller's transaction.

    ``action`` is a FHIR AuditEvent action code (C, R, U, D, E); ``outcome`` a FHIR
    outcome code ("0" success, "4" minor failure such as a denied access, "8" serious).
    ``detail`` must never hold health information.
    """
    if session.new or session.dirty or session.deleted:
        session.flush()  # pending changes reach the database first, as they always did
    conn = session.connection()
    sqlite = conn.dialect.name == "sqlite"
    sql = _SQLITE if sqlite else _POSTGRES
    now = utcnow()
    recorded_iso = now.isoformat()
    fields = (
        actor.user_id,
        actor.role,
        actor.clinic_id,
        action,
        event,
        entity_type,
        None if entity_id is None else str(entity_id),
        patient_id,
        outcome,
        actor.source_ip,
        detail,
    )
    transaction = conn.get_transaction()
    cached = conn.info.get(_HEAD_KEY)
    cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    statement = sql.move_head
    try:
        moved = False
        if cached is not None and cached[0] is transaction:
            prev_id, prev_hash = cached[1], cached[2]
            new_id = prev_id + 1
            new_hash = _sha(_preimage(prev_hash, new_id, recorded_iso, *fields))
            cur.execute(statement, (new_id, new_hash, prev_id, prev_hash))
            moved = cur.rowcount == 1
        if not moved:
            statement = sql.read_head
            prev_id, prev_hash = _locked_head(cur, sql)
            new_id = prev_id + 1
            new_hash = _sha(_preimage(prev_hash, new_id, recorded_iso, *fields))
            statement = sql.move_head
            cur.execute(statement, (new_id, new_hash, prev_id, prev_hash))
            if cur.rowcount != 1:  # pragma: no cover - the row is locked by us
                raise RuntimeError("the audit chain head moved while locked")
        statement = sql.insert_entry
        stored_at: object = (
            now.replace(tzinfo=None).isoformat(" ", "microseconds") if sqlite else now
        )
        cur.execute(statement, (new_id, stored_at, *fields, prev_hash, new_hash))
    except Exception as exc:
        conn.info.pop(_HEAD_KEY, None)
        raise _raw_error(conn, statement, exc) from exc
    finally:
        cur.close()
    conn.info[_HEAD_KEY] = (transaction, new_id, new_hash)
    # Attach the row as a persistent object the way a query load does (no INSERT,
    # no attribute events): constructing it through __init__ cost more than the append.
    entry = _new_event()
    entry.__dict__.update(
        id=new_id,
        recorded_at=now,
        user_id=actor.user_id,
        user_role=actor.role,
        clinic_id=actor.clinic_id,
        action=action,
        event=event,
        entity_type=entity_type,
        entity_id=fields[6],
        patient_id=patient_id,
        outcome=outcome,
        source_ip=actor.source_ip,
        detail=detail,
        prev_hash=prev_hash,
        hash=new_hash,
    )
    make_transient_to_detached(entry)
    session.add(entry)
    return entry


def _new_event() -> AuditEvent:
    """A blank AuditEvent, made without running its constructor."""
    mapper = AuditEvent.__mapper__
    if not mapper.configured:  # first use: mappers must be configured to load objects
        configure_mappers()
    event: AuditEvent = mapper.class_manager.new_instance()
    return event


def _sha(preimage: str) -> str:
    return hashlib.sha256(preimage.encode()).hexdigest()


@dataclass(frozen=True)
class ChainBreak:
    """The first entry where the chain does not hold, and why."""

    entry_id: int
    reason: str


def check_entry(entry: AuditEvent, *, expected_id: int, prev_hash: str) -> str | None:
    """Why ``entry`` breaks the chain at position ``expected_id``, or None when it holds."""
    if entry.id != expected_id:
        return f"entry {expected_id} is missing"
    if entry.prev_hash != prev_hash:
        return "its link to the previous entry does not match"
    if entry_hash(prev_hash, entry) != entry.hash:
        return "its content does not match its hash (edited)"
    return None


# The hash input of each row, built by the database. SQLite keeps ".000000" where
# Python's isoformat() drops a zero microsecond part: such a row (one in a million)
# simply takes the exact re-check.
_SQLITE_PREIMAGE = (
    "CAST(format('%s\x1f%d\x1f%s+00:00\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s"
    "\x1f%s\x1f%s\x1f%s', prev_hash, id, replace(recorded_at, ' ', 'T'), "
    "ifnull(user_id, 'None'), ifnull(user_role, 'None'), ifnull(clinic_id, 'None'), "
    "action, event, entity_type, ifnull(entity_id, 'None'), ifnull(patient_id, 'None'), "
    "outcome, ifnull(source_ip, 'None'), ifnull(detail, 'None')) AS BLOB)"
)
_POSTGRES_PREIMAGE = (
    "convert_to(concat_ws(chr(31), prev_hash, id::text, "
    "to_char(recorded_at AT TIME ZONE 'UTC', CASE WHEN "
    "mod(extract(microseconds FROM recorded_at)::int, 1000000) = 0 "
    "THEN 'YYYY-MM-DD\"T\"HH24:MI:SS' ELSE 'YYYY-MM-DD\"T\"HH24:MI:SS.US' END) || '+00:00', "
    "coalesce(user_id::text, 'None'), coalesce(user_role, 'None'), "
    "coalesce(clinic_id::text, 'None'), action, event, entity_type, "
    "coalesce(entity_id, 'None'), coalesce(patient_id::text, 'None'), outcome, "
    "coalesce(source_ip, 'None'), coalesce(detail, 'None')), 'UTF8')"
)
# S608: these are built from constants only, never from input.
_SCAN = {
    True: f"SELECT id, prev_hash, hash, {_SQLITE_PREIMAGE} FROM audit_event "  # noqa: S608
    "WHERE id BETWEEN ? AND ? ORDER BY id",
    False: f"SELECT id, prev_hash, hash, {_POSTGRES_PREIMAGE} FROM audit_event "  # noqa: S608
    "WHERE id BETWEEN %s AND %s ORDER BY id",
}
_ONE_ROW = {
    True: f"SELECT {_INSERT_COLUMNS} FROM audit_event WHERE id = ?",  # noqa: S608
    False: f"SELECT {_INSERT_COLUMNS} FROM audit_event WHERE id = %s",  # noqa: S608
}
_HASH_OF = {
    True: "SELECT hash FROM audit_event WHERE id = ?",
    False: "SELECT hash FROM audit_event WHERE id = %s",
}
_HEXDIGEST = methodcaller("hexdigest")
PARALLEL_FROM = 1_000_000  # entries; below this, starting processes costs more than it saves


def _exact_hash(raw: Any, sqlite: bool, entry_id: int, prev_hash: str) -> tuple[str, str]:
    """(recomputed, stored) hash of one entry, with the chain format's own code."""
    cur = raw.cursor()
    try:
        cur.execute(_ONE_ROW[sqlite], (entry_id,))
        row = cur.fetchone()
    finally:
        cur.close()
    recorded = row[1]
    if isinstance(recorded, str):  # SQLite keeps UTC as naive text
        recorded = dt.datetime.fromisoformat(recorded)
    if recorded.tzinfo is None:
        recorded = recorded.replace(tzinfo=dt.UTC)
    iso = recorded.astimezone(dt.UTC).isoformat()
    return _sha(_preimage(prev_hash, row[0], iso, *row[2:13])), str(row[14])


def _first_break(
    raw: Any, sqlite: bool, rows: Sequence[Any], *, next_id: int, prev_hash: str
) -> ChainBreak | None:
    """The first break in one batch, looking in check_entry's order (id, link, content)."""
    ids, prevs, hashes, preimages = zip(*rows, strict=True)
    n = len(ids)
    ids_ok = ids == tuple(range(next_id, next_id + n))
    links_ok = prevs[0] == prev_hash and prevs[1:] == hashes[:-1]
    computed = list(map(_HEXDIGEST, map(hashlib.sha256, preimages)))
    if ids_ok and links_ok and computed == list(hashes):
        return None
    for i in range(n):
        expected = next_id + i
        if ids[i] != expected:
            return ChainBreak(expected, f"entry {expected} is missing")
        link = hashes[i - 1] if i else prev_hash
        if prevs[i] != link:
            return ChainBreak(expected, "its link to the previous entry does not match")
        if computed[i] != hashes[i]:
            recomputed, stored = _exact_hash(raw, sqlite, ids[i], link)
            if recomputed != stored:
                return ChainBreak(expected, "its content does not match its hash (edited)")
    return None  # pragma: no cover - only false alarms of the SQL fast path


@dataclass(frozen=True)
class _Checked:
    """How checking a range of entries went."""

    checked: int
    broken: ChainBreak | None


def _check_range(
    raw: Any, *, sqlite: bool, first: int, last: int, prev_hash: str, batch: int
) -> _Checked:
    """Check entries ``first``..``last`` in id order, the first one following ``prev_hash``."""
    if sqlite:
        cur = raw.cursor()
    else:  # a server-side cursor: the log streams in batches, never whole into memory
        cur = raw.cursor(name=f"prolo_audit_verify_{first}")
        cur.itersize = batch
    checked = 0
    try:
        cur.execute(_SCAN[sqlite], (first, last))
        while rows := cur.fetchmany(batch):
            broken = _first_break(raw, sqlite, rows, next_id=first + checked, prev_hash=prev_hash)
            if broken is not None:
                return _Checked(broken.entry_id - first, broken)
            checked += len(rows)
            prev_hash = rows[-1][2]
    finally:
        cur.close()
    if first + checked <= last:
        return _Checked(checked, ChainBreak(first + checked, f"entry {first + checked} is missing"))
    return _Checked(checked, None)


def _check_range_alone(
    target: str, sqlite: bool, first: int, last: int, prev_hash: str, batch: int
) -> _Checked:
    """:func:`_check_range` in a worker process, on a connection of its own."""
    if sqlite:
        raw: Any = sqlite3.connect(target, timeout=30)
    else:
        import psycopg

        raw = psycopg.connect(target)
    try:
        return _check_range(
            raw, sqlite=sqlite, first=first, last=last, prev_hash=prev_hash, batch=batch
        )
    finally:
        raw.close()


def _scalar(raw: Any, sql: str, params: tuple[object, ...] = ()) -> Any:
    cur = raw.cursor()
    try:
        cur.execute(sql, params)
        row = cur.fetchone()
    finally:
        cur.close()
    return None if row is None else row[0]


def verify_database(
    session: Session, *, batch: int = 50_000, workers: int = 1
) -> tuple[int, ChainBreak | None]:
    """Verify the whole log in the database; returns (entries checked, first break).

    Checks every entry's hash and link in id order, that no id is skipped, and that
    the log ends at the entry the chain head (``audit_head``) records. With
    ``workers`` > 1 a log of a million entries or more is checked in that many
    processes, each on its own connection, so they see only committed entries: pass
    it only from a transaction that has written nothing (the CLI does).
    """
    conn = session.connection()
    sqlite = conn.dialect.name == "sqlite"
    raw: Any = conn.connection.dbapi_connection
    cur = raw.cursor()
    try:
        cur.execute("SELECT last_id, last_hash FROM audit_head WHERE id = 1")
        head = cur.fetchone()
    finally:
        cur.close()
    last = int(_scalar(raw, "SELECT max(id) FROM audit_event") or 0)
    parts = max(1, workers) if last >= PARALLEL_FROM else 1
    bounds = [(1 + last * k // parts, last * (k + 1) // parts) for k in range(parts)]
    if parts == 1:
        results = [
            _check_range(raw, sqlite=sqlite, first=1, last=last, prev_hash=GENESIS, batch=batch)
        ]
    else:
        url = conn.engine.url
        target = (
            url.database or ""
            if sqlite
            else (url.set(drivername="postgresql").render_as_string(hide_password=False))
        )
        prevs = [GENESIS] + [
            str(_scalar(raw, _HASH_OF[sqlite], (first - 1,))) for first, _ in bounds[1:]
        ]
        # fork starts a worker in milliseconds where spawn re-imports everything; the
        # workers never touch the connections they inherit and leave with os._exit.
        # With other threads running, fork could inherit a held lock: spawn then.
        single = threading.active_count() == 1
        method = "fork" if single and "fork" in multiprocessing.get_all_start_methods() else "spawn"
        context = multiprocessing.get_context(method)
        with ProcessPoolExecutor(max_workers=parts, mp_context=context) as pool:
            futures = [
                pool.submit(_check_range_alone, target, sqlite, first, end, prev, batch)
                for (first, end), prev in zip(bounds, prevs, strict=True)
            ]
            results = [f.result() for f in futures]
    checked = 0
    for result in results:
        checked += result.checked
        if result.broken is not None:
            return checked, result.broken
    return checked, _check_head(raw, head, last=last, sqlite=sqlite)


def _check_head(raw: Any, head: Any, *, last: int, sqlite: bool) -> ChainBreak | None:
    """Compare the verified log (entries 1..``last``) with the recorded chain head."""
    if head is None:
        if last == 0:
            return None
        return ChainBreak(last, "the chain head record (audit_head) is missing")
    head_id, head_hash = int(head[0]), str(head[1])
    if last < head_id:
        return ChainBreak(
            last + 1,
            f"entry {last + 1} is missing: the log ends at entry {last} but its chain "
            f"head records entry {head_id} (entries were removed from the end)",
        )
    stored = GENESIS if head_id == 0 else _scalar(raw, _HASH_OF[sqlite], (head_id,))
    if stored != head_hash:
        return ChainBreak(
            max(head_id, 1), "it does not match the recorded chain head (audit_head was altered)"
        )
    return None
