"""The hash-chained audit log: append inside the caller's transaction, verify the chain.

Each entry's hash is SHA-256 over the previous entry's hash and the entry's own
fields in a fixed order (:func:`entry_hash`). The log is a set of chains, "lanes"
(64 on PostgreSQL, lane 1 only on SQLite); ``audit_head`` keeps each lane's newest
entry id and hash, apart from the log:

- A transaction's first entry locks the first lane head no other transaction holds
  (PostgreSQL ``FOR UPDATE SKIP LOCKED``, which never waits; all busy, it waits for
  one) and keeps it to its end. Appends to one lane queue, so a lane never forks
  (under stricter isolation than READ COMMITTED an append fails rather than fork),
  while concurrent transactions take other lanes: none waits for another's commit.
  This replaced one transaction-scoped advisory lock for the whole log, which made
  every audited request wait for the previous one's commit to reach the disk.
- Ids come from the table's sequence on PostgreSQL (in time order across lanes) and
  follow lane 1's head on SQLite; each entry names the entry before it in its lane
  (``prev_id``; entries from before lanes have none and follow id - 1).
- Within one transaction the lane is remembered, so each further entry costs one
  conditional ``UPDATE`` of the head and one ``INSERT``; the condition notices when
  a savepoint rolled entries back underneath, and the slow path then re-reads.
- Rows go in through the DBAPI cursor as plain tuples: building and flushing ORM
  objects was most of the cost of an append (``bench/audit.py`` measures it). The
  returned :class:`AuditEvent` is attached to the session as already persistent.

Verification (:func:`verify_database`) streams the log in id order with each hash's
input built by the database (a few C string functions per row) and hashes it with
hashlib; a batch is checked as whole lists, and only a failing batch entry by entry,
where a suspect hash is recomputed with the chain format's own Python code, so the
SQL is a fast path, never the authority. Each lane head must name an entry with its
hash, so entries removed from the end show as missing. ``docs/deploy.md`` has figures.
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
    "entity_id, patient_id, outcome, source_ip, detail, prev_hash, hash, lane, prev_id"
)
_ENTRY_COLUMNS = _INSERT_COLUMNS.removesuffix(", lane, prev_id")
_ID_SEQUENCE = "audit_event_id_seq"  # the BIGSERIAL behind audit_event.id on PostgreSQL
# S608 below: every statement is built from constants only, never from input.
_INSERT = f"INSERT INTO audit_event ({_INSERT_COLUMNS}) VALUES ({', '.join('?' * 17)})"  # noqa: S608
_MOVE_HEAD = (
    "UPDATE audit_head SET last_id = ?, last_hash = ? "
    "WHERE id = ? AND last_id = ? AND last_hash = ?"
)
_SQL = {
    # SQLite: one writer at a time anyway, so one lane; ids follow the lane's head.
    "sqlite": {
        "take_lane": "SELECT id, last_id, last_hash FROM audit_head WHERE id = 1",
        "wait_lane": "SELECT id, last_id, last_hash FROM audit_head WHERE id = 1",
        "move_head": _MOVE_HEAD,
        "insert": _INSERT,
        "create_head": "INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, ?, ?)",
        "last_entry": "SELECT id, hash FROM audit_event WHERE lane = 1 ORDER BY id DESC LIMIT 1",
    },
    # PostgreSQL: a transaction takes the first lane nobody holds (SKIP LOCKED never
    # waits), ids come from the sequence (increasing within a lane, whose appends
    # are serialised by its row lock).
    "postgresql": {
        "take_lane": "SELECT id, last_id, last_hash FROM audit_head ORDER BY id "
        "LIMIT 1 FOR UPDATE SKIP LOCKED",
        "wait_lane": "SELECT id, last_id, last_hash FROM audit_head "
        "ORDER BY random() LIMIT 1 FOR UPDATE",
        "next_id": f"SELECT nextval('{_ID_SEQUENCE}')",
        "move_head": _MOVE_HEAD.replace("?", "%s"),
        "insert": _INSERT.replace("?", "%s"),
        "create_head": "INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, %s, %s)",
        "last_entry": "SELECT id, hash FROM audit_event WHERE lane = 1 ORDER BY id DESC LIMIT 1",
    },
}
_HEAD_KEY = "prolo.audit.head"  # in Connection.info: (transaction, lane, last id, last hash)


def _raw_error(conn: Connection, statement: str, exc: Exception) -> Exception:
    """A DBAPI error raised through our raw cursor, wrapped as SQLAlchemy would."""
    dbapi = conn.dialect.loaded_dbapi
    if isinstance(exc, dbapi.Error):
        return DBAPIError.instance(statement, None, exc, dbapi.Error)
    return exc


def _take_lane(cur: Any, sql: dict[str, str]) -> tuple[int, int, str]:
    """Lock a lane's head and read it: (lane, last id, last hash).

    Takes a free lane when there is one, else waits for a busy one; recreates lane 1
    from the log when the heads are missing.
    """
    for statement in ("take_lane", "wait_lane"):
        cur.execute(sql[statement])
        row = cur.fetchone()
        if row is not None:
            return int(row[0]), int(row[1]), str(row[2])
    # Only a database the migrations did not initialise, or whose heads were deleted:
    # rebuild lane 1 so clinical work goes on; verify reports the missing heads.
    log.warning("the audit chain head was missing; recreated from the log's last entry")
    cur.execute(sql["last_entry"])
    last = cur.fetchone()
    head = (int(last[0]), str(last[1])) if last else (0, GENESIS)
    cur.execute(sql["create_head"], head)
    return 1, head[0], head[1]


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
    sql = _SQL["sqlite" if sqlite else "postgresql"]
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
    statement = sql["move_head"]
    try:
        moved = False
        if cached is not None and cached[0] is transaction:
            lane, prev_id, prev_hash = cached[1], cached[2], cached[3]
            new_id = _next_id(cur, sql, prev_id)
            new_hash = _sha(_preimage(prev_hash, new_id, recorded_iso, *fields))
            cur.execute(statement, (new_id, new_hash, lane, prev_id, prev_hash))
            moved = cur.rowcount == 1
        if not moved:
            statement = sql["take_lane"]
            lane, prev_id, prev_hash = _take_lane(cur, sql)
            new_id = _next_id(cur, sql, prev_id)
            new_hash = _sha(_preimage(prev_hash, new_id, recorded_iso, *fields))
            statement = sql["move_head"]
            cur.execute(statement, (new_id, new_hash, lane, prev_id, prev_hash))
            if cur.rowcount != 1:  # pragma: no cover - the row is locked by us
                raise RuntimeError("the audit chain head moved while locked")
        statement = sql["insert"]
        stored_at: object = (
            now.replace(tzinfo=None).isoformat(" ", "microseconds") if sqlite else now
        )
        cur.execute(statement, (new_id, stored_at, *fields, prev_hash, new_hash, lane, prev_id))
    except Exception as exc:
        conn.info.pop(_HEAD_KEY, None)
        raise _raw_error(conn, statement, exc) from exc
    finally:
        cur.close()
    conn.info[_HEAD_KEY] = (transaction, lane, new_id, new_hash)
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
        lane=lane,
        prev_id=prev_id,
    )
    make_transient_to_detached(entry)
    session.add(entry)
    return entry


def _next_id(cur: Any, sql: dict[str, str], prev_id: int) -> int:
    """The new entry's id: the sequence's next (PostgreSQL), or the lane's next (SQLite)."""
    if "next_id" not in sql:
        return prev_id + 1
    cur.execute(sql["next_id"])
    return int(cur.fetchone()[0])


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
# S608: these are built from constants only, never from input. An entry's link is
# the id of the entry before it in its lane; before lanes, that was simply id - 1.
_SCAN = {
    True: "SELECT id, lane, ifnull(prev_id, id - 1), prev_hash, hash, "  # noqa: S608
    f"{_SQLITE_PREIMAGE} FROM audit_event WHERE id BETWEEN ? AND ? ORDER BY id",
    False: "SELECT id, lane, coalesce(prev_id, id - 1), prev_hash, hash, "  # noqa: S608
    f"{_POSTGRES_PREIMAGE} FROM audit_event WHERE id BETWEEN %s AND %s ORDER BY id",
}
_ONE_ROW = {
    True: f"SELECT {_ENTRY_COLUMNS}, prev_id FROM audit_event WHERE id = ?",  # noqa: S608
    False: f"SELECT {_ENTRY_COLUMNS}, prev_id FROM audit_event WHERE id = %s",  # noqa: S608
}
_LANE_BEFORE = {
    True: "SELECT id, hash FROM audit_event WHERE lane = ? AND id < ? ORDER BY id DESC LIMIT 1",
    False: "SELECT id, hash FROM audit_event WHERE lane = %s AND id < %s ORDER BY id DESC LIMIT 1",
}
_ENTRY_AT = {
    True: "SELECT lane, hash FROM audit_event WHERE id = ?",
    False: "SELECT lane, hash FROM audit_event WHERE id = %s",
}
_HEXDIGEST = methodcaller("hexdigest")
PARALLEL_FROM = 1_000_000  # entries; below this, starting processes costs more than it saves
Lanes = dict[int, tuple[int, str]]  # lane -> (id, hash) of its last entry checked so far


def _one_row(raw: Any, sqlite: bool, entry_id: int) -> Any:
    cur = raw.cursor()
    try:
        cur.execute(_ONE_ROW[sqlite], (entry_id,))
        return cur.fetchone()
    finally:
        cur.close()


def _exact_hash(raw: Any, sqlite: bool, entry_id: int, prev_hash: str) -> tuple[str, str]:
    """(recomputed, stored) hash of one entry, with the chain format's own code."""
    row = _one_row(raw, sqlite, entry_id)
    recorded = row[1]
    if isinstance(recorded, str):  # SQLite keeps UTC as naive text
        recorded = dt.datetime.fromisoformat(recorded)
    if recorded.tzinfo is None:
        recorded = recorded.replace(tzinfo=dt.UTC)
    iso = recorded.astimezone(dt.UTC).isoformat()
    return _sha(_preimage(prev_hash, row[0], iso, *row[2:13])), str(row[14])


def _batch_holds(rows: Sequence[Any], computed: list[str], lanes: Lanes) -> bool:
    """Whether every entry of the batch links and hashes right (no detail: fast)."""
    if computed != [r[4] for r in rows]:
        return False
    groups: dict[int, Sequence[Any]]
    if len({r[1] for r in rows}) == 1:  # the usual case: one lane (always so on SQLite)
        groups = {rows[0][1]: rows}
    else:
        groups = {}
        for row in rows:
            groups.setdefault(row[1], []).append(row)  # type: ignore[attr-defined]
    for lane, group in groups.items():
        last_id, last_hash = lanes.get(lane, (0, GENESIS))
        ids = [r[0] for r in group]
        if [r[2] for r in group] != [last_id, *ids[:-1]]:
            return False
        hashes = [r[4] for r in group]
        if [r[3] for r in group] != [last_hash, *hashes[:-1]]:
            return False
    return True


def _first_break(
    raw: Any, sqlite: bool, rows: Sequence[Any], lanes: Lanes
) -> tuple[int, ChainBreak | None]:
    """Check one batch in id order, carrying each lane's last entry in ``lanes``.

    Returns (entries that held before the first break, the break or None).
    """
    preimages = [r[5] for r in rows]
    computed = list(map(_HEXDIGEST, map(hashlib.sha256, preimages)))
    if _batch_holds(rows, computed, lanes):
        for row in rows:
            lanes[row[1]] = (row[0], row[4])
        return len(rows), None
    for i, (entry_id, lane, link, prev, stored, _) in enumerate(rows):
        last_id, last_hash = lanes.get(lane, (0, GENESIS))
        if link != last_id:
            if link > last_id:
                legacy = _one_row(raw, sqlite, entry_id)[-1] is None
                missing = last_id + 1 if legacy else link  # before lanes, ids had no gaps
                return i, ChainBreak(missing, f"entry {missing} is missing")
            return i, ChainBreak(entry_id, "its link to the previous entry does not match")
        if prev != last_hash:
            return i, ChainBreak(entry_id, "its link to the previous entry does not match")
        if computed[i] != stored:
            recomputed, _ = _exact_hash(raw, sqlite, entry_id, last_hash)
            if recomputed != stored:
                return i, ChainBreak(entry_id, "its content does not match its hash (edited)")
        lanes[lane] = (entry_id, stored)
    return len(rows), None  # pragma: no cover - only false alarms of the SQL fast path


@dataclass(frozen=True)
class _Checked:
    """How checking a range of entries went."""

    checked: int
    broken: ChainBreak | None


def _lanes_before(raw: Any, sqlite: bool, lanes: Sequence[int], first: int) -> Lanes:
    """Each lane's last entry before id ``first``."""
    found: Lanes = {}
    cur = raw.cursor()
    try:
        for lane in lanes:
            cur.execute(_LANE_BEFORE[sqlite], (lane, first))
            row = cur.fetchone()
            if row is not None:
                found[lane] = (int(row[0]), str(row[1]))
    finally:
        cur.close()
    return found


def _check_range(
    raw: Any, *, sqlite: bool, first: int, last: int, lanes: Lanes, batch: int
) -> _Checked:
    """Check entries with ids ``first``..``last`` in id order, each lane continuing ``lanes``."""
    if sqlite:
        cur = raw.cursor()
    else:  # a server-side cursor: the log streams in batches, never whole into memory
        cur = raw.cursor(name=f"prolo_audit_verify_{first}")
        cur.itersize = batch
    checked = 0
    try:
        cur.execute(_SCAN[sqlite], (first, last))
        while rows := cur.fetchmany(batch):
            held, broken = _first_break(raw, sqlite, rows, lanes)
            checked += held
            if broken is not None:
                return _Checked(checked, broken)
    finally:
        cur.close()
    return _Checked(checked, None)


def _check_range_alone(
    target: str, sqlite: bool, first: int, last: int, lanes: Sequence[int], batch: int
) -> _Checked:
    """:func:`_check_range` in a worker process, on a connection of its own."""
    if sqlite:
        raw: Any = sqlite3.connect(target, timeout=30)
    else:
        import psycopg

        raw = psycopg.connect(target)
    try:
        start = _lanes_before(raw, sqlite, lanes, first)
        return _check_range(raw, sqlite=sqlite, first=first, last=last, lanes=start, batch=batch)
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

    Checks every entry's hash, and its link to the entry before it in its lane, in id
    order; then that each lane ends at the entry its head (``audit_head``) records.
    With ``workers`` > 1 a log of a million entries or more is checked in that many
    processes, each on its own connection, so they see only committed entries: pass
    it only from a transaction that has written nothing (the CLI does).
    """
    conn = session.connection()
    sqlite = conn.dialect.name == "sqlite"
    raw: Any = conn.connection.dbapi_connection
    cur = raw.cursor()
    try:
        cur.execute("SELECT id, last_id, last_hash FROM audit_head ORDER BY id")
        heads = [(int(r[0]), int(r[1]), str(r[2])) for r in cur.fetchall()]
        cur.execute("SELECT DISTINCT lane FROM audit_event")
        lanes = sorted({int(r[0]) for r in cur.fetchall()} | {h[0] for h in heads})
    finally:
        cur.close()
    last = int(_scalar(raw, "SELECT max(id) FROM audit_event") or 0)
    parts = max(1, workers) if last >= PARALLEL_FROM else 1
    bounds = [(1 + last * k // parts, last * (k + 1) // parts) for k in range(parts)]
    if parts == 1:
        results = [_check_range(raw, sqlite=sqlite, first=0, last=last, lanes={}, batch=batch)]
    else:
        url = conn.engine.url
        target = (
            url.database or ""
            if sqlite
            else url.set(drivername="postgresql").render_as_string(hide_password=False)
        )
        # fork starts a worker in milliseconds where spawn re-imports everything; the
        # workers never touch the connections they inherit and leave with os._exit.
        # With other threads running, fork could inherit a held lock: spawn then.
        single = threading.active_count() == 1
        method = "fork" if single and "fork" in multiprocessing.get_all_start_methods() else "spawn"
        context = multiprocessing.get_context(method)
        with ProcessPoolExecutor(max_workers=parts, mp_context=context) as pool:
            futures = [
                pool.submit(_check_range_alone, target, sqlite, first, end, lanes, batch)
                for first, end in bounds
            ]
            results = [f.result() for f in futures]
    checked = 0
    for result in results:
        checked += result.checked
        if result.broken is not None:
            return checked, result.broken
    return checked, _check_heads(raw, sqlite, heads, lanes)


def _check_heads(
    raw: Any, sqlite: bool, heads: list[tuple[int, int, str]], lanes: list[int]
) -> ChainBreak | None:
    """Compare each lane's head with the entry it names; the lowest entry first."""
    breaks: list[ChainBreak] = []
    headless = set(lanes) - {h[0] for h in heads}
    for lane in sorted(headless):
        last = _lanes_before(raw, sqlite, [lane], 2**62).get(lane)
        if last is not None:
            breaks.append(
                ChainBreak(last[0], f"the chain head record of lane {lane} (audit_head) is missing")
            )
    for lane, head_id, head_hash in heads:
        if head_id == 0:
            if head_hash != GENESIS:
                breaks.append(ChainBreak(1, _ALTERED))
            continue
        cur = raw.cursor()
        try:
            cur.execute(_ENTRY_AT[sqlite], (head_id,))
            row = cur.fetchone()
        finally:
            cur.close()
        if row is None:
            breaks.append(
                ChainBreak(
                    head_id,
                    f"entry {head_id} is missing: it is the last entry the chain head of "
                    f"lane {lane} records (entries were removed from the end)",
                )
            )
        elif int(row[0]) != lane or str(row[1]) != head_hash:
            breaks.append(ChainBreak(head_id, _ALTERED))
    return min(breaks, key=lambda b: b.entry_id, default=None)


_ALTERED = "it does not match the recorded chain head (audit_head was altered)"
