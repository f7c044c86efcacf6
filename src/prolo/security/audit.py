"""The hash-chained audit log: append inside the caller's transaction, verify the chain.

Each entry's hash is SHA-256 over the previous entry's hash and the entry's own
fields in a fixed order (:func:`entry_hash`). The log is a set of chains, "lanes"
(64 on PostgreSQL, lane 1 only on SQLite); ``audit_head`` keeps each lane's newest
entry id and hash, apart from the log:

- :func:`record` only queues the entry on the connection. The transaction's entries
  are chained and written together just before it commits (SQLAlchemy's connection
  ``commit`` event), or earlier: before any statement naming an audit table runs on
  that connection (a transaction reads its own entries), before a savepoint begins (so
  rolling one back drops exactly the entries recorded inside it), and when
  :func:`verify_database` or :func:`flush_pending` asks. Written inside the transaction,
  before its COMMIT, they commit or vanish with the caller's data; a failed write fails
  the commit.
- Writing locks the first lane head no other transaction holds (PostgreSQL ``FOR UPDATE
  SKIP LOCKED``, which never waits; all busy, it waits for one) and keeps it to the end
  of the transaction. Appends to one lane queue, so a lane never forks (under stricter
  isolation than READ COMMITTED an append fails rather than fork), while concurrent
  transactions take other lanes: none waits for another's commit. This replaced one
  transaction-scoped advisory lock for the whole log, which made every audited request
  wait for the previous one's commit.
- Ids come from the table's sequence on PostgreSQL, taken once the lane is held (so they
  increase within a lane), and follow lane 1's head on SQLite; each entry names the
  entry before it in its lane (``prev_id``; entries from before lanes have none and
  follow id - 1).
- N entries cost two statements. SQLite: one conditional ``UPDATE`` of the head (from
  the head this connection saw last; the condition notices another writer or a rolled
  back savepoint, and the head is then re-read) and one ``executemany`` ``INSERT``.
  PostgreSQL: one ``SELECT`` locks a lane and takes the ids, one statement moves the head
  and inserts every entry from a JSON array (psycopg adapting each value was most of
  the client's cost). The returned :class:`AuditEvent` gets its id and hash when written.

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
import json
import logging
import multiprocessing
import sqlite3
import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from operator import methodcaller
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, configure_mappers, make_transient_to_detached

from prolo.db import utcnow
from prolo.security.models import AUDIT_ACTIONS, AUDIT_OUTCOMES, AuditEvent

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
_IDS = f"ARRAY(SELECT nextval('{_ID_SEQUENCE}') FROM generate_series(1, %s))"  # noqa: S608
# The column types of audit_event, in _INSERT_COLUMNS order: PostgreSQL reads the entries
# from one JSON array of rows. psycopg adapting 17 values (or 17 arrays) per entry cost
# 12-15 µs of client CPU per entry; json.dumps and one text parameter cost about 4.
_PG_TYPES = (
    "bigint timestamptz integer text integer text text text text integer text text text "
    "text text smallint bigint"
).split()
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
    # waits) and, in the same statement, once it holds it, the ids of its entries from
    # the sequence (so ids increase within a lane, whose appends its row lock serialises;
    # the lock is in a sub-select, which PostgreSQL never flattens, so the ids are taken
    # after it). The head moves and the entries go in with one statement.
    "postgresql": {
        "take_lane": f"SELECT h.id, h.last_id, h.last_hash, {_IDS} FROM (SELECT id, last_id, "  # noqa: S608
        "last_hash FROM audit_head ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) AS h",
        "wait_lane": f"SELECT h.id, h.last_id, h.last_hash, {_IDS} FROM (SELECT id, last_id, "  # noqa: S608
        "last_hash FROM audit_head ORDER BY random() LIMIT 1 FOR UPDATE) AS h",
        "next_ids": f"SELECT {_IDS}",
        "move_head": _MOVE_HEAD.replace("?", "%s"),
        "append": "WITH moved AS ("  # noqa: S608
        + _MOVE_HEAD.replace("?", "%s")
        + f" RETURNING id) INSERT INTO audit_event ({_INSERT_COLUMNS}) SELECT "  # noqa: S608
        + ", ".join(f"(r->>{i})::{t}" for i, t in enumerate(_PG_TYPES))
        + " FROM jsonb_array_elements(%s::jsonb) AS r WHERE EXISTS (SELECT FROM moved)",
        "insert": _INSERT.replace("?", "%s"),
        "create_head": "INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, %s, %s)",
        "last_entry": "SELECT id, hash FROM audit_event WHERE lane = 1 ORDER BY id DESC LIMIT 1",
    },
}
_HEAD_KEY = "prolo.audit.head"  # in Connection.info: (transaction, lane, last id, last hash)
_PENDING_KEY = "prolo.audit.pending"  # in Connection.info: the entries not written yet
_ACTIONS = frozenset(AUDIT_ACTIONS)
_OUTCOMES = frozenset(AUDIT_OUTCOMES)


def _raw_error(conn: Connection, statement: str, exc: Exception) -> Exception:
    """A DBAPI error raised through our raw cursor, wrapped as SQLAlchemy would."""
    dbapi = conn.dialect.loaded_dbapi
    if isinstance(exc, dbapi.Error):
        return DBAPIError.instance(statement, None, exc, dbapi.Error)
    return exc


@dataclass
class _Pending:
    """A transaction's entries recorded but not yet written: (time, fields) and objects."""

    transaction: object
    rows: list[tuple[dt.datetime, tuple[object, ...]]] = field(default_factory=list)
    entries: list[AuditEvent] = field(default_factory=list)


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

    The entry is written with the transaction's other entries just before the
    transaction commits (or earlier: before any statement reads the audit tables on
    that connection, before a savepoint, or by :func:`flush_pending`), so it commits
    or rolls back with the caller's data; one recorded inside a savepoint that is
    rolled back is dropped with it. The returned :class:`AuditEvent` carries its id,
    hash and chain link once written; it is detached (``session.add`` it to change it).
    """
    if session.new or session.dirty or session.deleted:
        session.flush()  # pending changes reach the database first, as they always did
    entity = None if entity_id is None else str(entity_id)
    if (
        action not in _ACTIONS
        or outcome not in _OUTCOMES
        or _too_long(actor, event, entity_type, entity, detail)
    ):  # caught here: written at commit, a bad row would fail the caller's commit
        raise ValueError(f"not a valid audit entry: action {action!r}, outcome {outcome!r}")
    conn = session.connection()
    engine = conn.engine
    if engine not in _HOOKED:
        _hook(engine)
    transaction = conn.get_transaction()
    pending = conn.info.get(_PENDING_KEY)
    if pending is None or pending.transaction is not transaction:
        pending = conn.info[_PENDING_KEY] = _Pending(transaction)
    now = utcnow()
    fields = (
        actor.user_id,
        actor.role,
        actor.clinic_id,
        action,
        event,
        entity_type,
        entity,
        patient_id,
        outcome,
        actor.source_ip,
        detail,
    )
    # A blank object made the way a query load makes one (no constructor, no attribute
    # events): constructing it through __init__ cost more than the append itself.
    entry = _new_event()
    entry.__dict__.update(
        recorded_at=now,
        user_id=actor.user_id,
        user_role=actor.role,
        clinic_id=actor.clinic_id,
        action=action,
        event=event,
        entity_type=entity_type,
        entity_id=entity,
        patient_id=patient_id,
        outcome=outcome,
        source_ip=actor.source_ip,
        detail=detail,
    )
    pending.rows.append((now, fields))
    pending.entries.append(entry)
    return entry


def _too_long(
    actor: Actor, event: str, entity_type: str, entity: str | None, detail: str | None
) -> bool:
    """Whether a text is longer than its column (PostgreSQL would refuse it at commit)."""
    return (
        len(event) > 60
        or len(entity_type) > 40
        or (entity is not None and len(entity) > 64)
        or (detail is not None and len(detail) > 300)
        or (actor.role is not None and len(actor.role) > 20)
        or (actor.source_ip is not None and len(actor.source_ip) > 45)
    )


def flush_pending(session: Session | Connection) -> None:
    """Write the entries recorded in the current transaction that are not written yet.

    Never needed for correctness (a commit, a savepoint and any statement reading the
    audit tables write them first); for code that reads the log through a raw DBAPI
    cursor, or wants the returned entries' ids now.
    """
    conn = session.connection() if isinstance(session, Session) else session
    _write_pending(conn)


# Engines whose connections write pending entries at the right moments (event hooks,
# added on an engine's first append: registered on every engine, they would cost every
# statement of engines that never audit).
_HOOKED: weakref.WeakSet[Engine] = weakref.WeakSet()
_HOOK_LOCK = threading.Lock()


def _hook(engine: Engine) -> None:
    with _HOOK_LOCK:
        if engine in _HOOKED:
            return
        event.listen(engine, "before_cursor_execute", _before_statement)
        event.listen(engine, "commit", _write_pending)
        event.listen(engine, "savepoint", _before_savepoint)
        event.listen(engine, "rollback_savepoint", _drop_savepoint_entries)
        event.listen(engine, "rollback", _drop_pending)
        _HOOKED.add(engine)


def _before_statement(
    conn: Connection, _cursor: Any, statement: str, *_args: Any, **_kwargs: Any
) -> None:
    # Read-your-writes: any statement naming an audit table sees the entries recorded so far.
    if "audit_" in statement and conn.info.get(_PENDING_KEY) is not None:
        _write_pending(conn)


def _before_savepoint(conn: Connection, _name: str | None) -> None:
    # Entries recorded before a savepoint are written before it, so rolling it back
    # drops exactly the entries recorded inside it: those still pending.
    _write_pending(conn)


def _drop_savepoint_entries(conn: Connection, _name: str, _context: Any) -> None:
    pending = conn.info.get(_PENDING_KEY)
    if pending is not None:
        pending.rows.clear()
        pending.entries.clear()


def _drop_pending(conn: Connection) -> None:
    conn.info.pop(_PENDING_KEY, None)


def _write_pending(conn: Connection) -> None:
    """Write the connection's pending entries: hash them in a chain, move the head, insert.

    SQLite: one conditional ``UPDATE`` of lane 1's head (from the head this connection
    last saw; a stale one is re-read) and one ``executemany`` ``INSERT``. PostgreSQL:
    one statement locks a free lane and takes the ids, one moves its head and inserts
    every entry (``unnest`` of one array per column).
    """
    pending = conn.info.pop(_PENDING_KEY, None)
    if pending is None or not pending.rows:
        return
    transaction = conn.get_transaction()
    if pending.transaction is not transaction:
        return  # left over from a transaction that ended without telling us
    sqlite = conn.dialect.name == "sqlite"
    sql = _SQL["sqlite" if sqlite else "postgresql"]
    cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    statement = sql["move_head"]
    try:
        if sqlite:
            lane, chained = _append_sqlite(cur, sql, conn.info.get(_HEAD_KEY), pending.rows)
        else:
            statement = sql["append"]
            lane, chained = _append_postgres(
                cur, sql, conn.info.get(_HEAD_KEY), transaction, pending.rows
            )
    except Exception as exc:
        conn.info.pop(_HEAD_KEY, None)
        raise _raw_error(conn, statement, exc) from exc
    finally:
        cur.close()
    last_id, _, last_hash, _ = chained[-1]
    conn.info[_HEAD_KEY] = (transaction, lane, last_id, last_hash)
    for entry, (entry_id, prev_hash, entry_hash_, prev_id) in zip(
        pending.entries, chained, strict=True
    ):
        entry.__dict__.update(
            id=entry_id, prev_hash=prev_hash, hash=entry_hash_, lane=lane, prev_id=prev_id
        )
        make_transient_to_detached(entry)


Chained = list[tuple[int, str, str, int]]  # (id, prev hash, hash, prev id) per entry


def _chain(
    rows: Sequence[tuple[dt.datetime, tuple[object, ...]]],
    ids: Sequence[int],
    last_id: int,
    last_hash: str,
) -> Chained:
    """Each entry's (id, prev hash, hash, prev id), continuing a lane at its last entry."""
    chained: Chained = []
    for (now, fields), entry_id in zip(rows, ids, strict=True):
        digest = _sha(_preimage(last_hash, entry_id, now.isoformat(), *fields))
        chained.append((entry_id, last_hash, digest, last_id))
        last_id, last_hash = entry_id, digest
    return chained


def _append_sqlite(
    cur: Any,
    sql: dict[str, str],
    cached: tuple[object, int, int, str] | None,
    rows: list[tuple[dt.datetime, tuple[object, ...]]],
) -> tuple[int, Chained]:
    # The head this connection left last time is right unless another connection
    # appended since: the conditional UPDATE (which takes the write lock) tells.
    head = None if cached is None else cached[1:]
    for _ in range(2):
        lane, last_id, last_hash = head if head is not None else _take_lane(cur, sql)[:3]
        chained = _chain(rows, range(last_id + 1, last_id + 1 + len(rows)), last_id, last_hash)
        cur.execute(sql["move_head"], (chained[-1][0], chained[-1][2], lane, last_id, last_hash))
        if cur.rowcount == 1:
            break
        head = None
    else:  # pragma: no cover - the head was just read under the write lock
        raise RuntimeError("the audit chain head moved while locked")
    cur.executemany(
        sql["insert"],
        [
            (
                entry_id,
                now.replace(tzinfo=None).isoformat(" ", "microseconds"),
                *fields,
                prev_hash,
                digest,
                lane,
                prev_id,
            )
            for (now, fields), (entry_id, prev_hash, digest, prev_id) in zip(
                rows, chained, strict=True
            )
        ],
    )
    return lane, chained


def _append_postgres(
    cur: Any,
    sql: dict[str, str],
    cached: tuple[object, int, int, str] | None,
    transaction: object,
    rows: list[tuple[dt.datetime, tuple[object, ...]]],
) -> tuple[int, Chained]:
    n = len(rows)
    for _ in range(2):
        if cached is not None and cached[0] is transaction:  # this transaction holds a lane
            _, lane, last_id, last_hash = cached
            cur.execute(sql["next_ids"], (n,))
            ids = cur.fetchone()[0]
        else:
            lane, last_id, last_hash, ids = _take_lane(cur, sql, n)
        chained = _chain(rows, ids, last_id, last_hash)
        payload = json.dumps(
            [
                (entry_id, now.isoformat(), *fields, prev_hash, digest, lane, prev_id)
                for (now, fields), (entry_id, prev_hash, digest, prev_id) in zip(
                    rows, chained, strict=True
                )
            ],
            ensure_ascii=False,
        )
        last = chained[-1]
        cur.execute(sql["append"], (last[0], last[2], lane, last_id, last_hash, payload))
        if cur.rowcount == n:
            return lane, chained
        # The head was not where this transaction left it: a savepoint was rolled back
        # underneath (releasing the lane's lock too). Take a lane afresh.
        cached = None
    raise RuntimeError("the audit chain head moved while locked")  # pragma: no cover


def _take_lane(cur: Any, sql: dict[str, str], count: int = 0) -> tuple[int, int, str, list[int]]:
    """Lock a lane's head and read it: (lane, last id, last hash, ids for ``count`` entries).

    Takes a free lane when there is one, else waits for a busy one; recreates lane 1
    from the log when the heads are missing. The ids come from PostgreSQL's sequence,
    taken once the lane is held; on SQLite the list is empty.
    """
    params = (count,) if "next_ids" in sql else ()
    for statement in ("take_lane", "wait_lane"):
        cur.execute(sql[statement], params)
        row = cur.fetchone()
        if row is not None:
            return int(row[0]), int(row[1]), str(row[2]), list(row[3]) if params else []
    # Only a database the migrations did not initialise, or whose heads were deleted:
    # rebuild lane 1 so clinical work goes on; verify reports the missing heads.
    log.warning("the audit chain head was missing; recreated from the log's last entry")
    cur.execute(sql["last_entry"])
    last = cur.fetchone()
    head = (int(last[0]), str(last[1])) if last else (0, GENESIS)
    cur.execute(sql["create_head"], head)
    ids: list[int] = []
    if params:
        cur.execute(sql["next_ids"], params)
        ids = list(cur.fetchone()[0])
    return 1, head[0], head[1], ids


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
    _write_pending(conn)  # this transaction's own entries are part of the log it checks
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
