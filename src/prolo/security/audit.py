"""The hash-chained audit log: append inside the caller's transaction, verify the chain.

The entry format is :mod:`prolo.security.chain` (version 2): an entry is one canonical
JSON text holding every audited field (``entry``) and its SHA-256 ``digest`` over the
previous entry's digest and that text; the field columns are generated from ``entry``
by the database. The log is a set of chains, "lanes" (64 on PostgreSQL, lane 1 only
on SQLite); ``audit_head`` keeps each lane's newest entry id and hex digest, apart
from the log:

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
  transactions take other lanes: none waits for another's commit.
- Ids come from the table's sequence on PostgreSQL, taken once the lane is held (so they
  increase within a lane), and follow lane 1's head on SQLite; each entry names the
  entry before it in its lane (``prev_id``; entries from before lanes have none and
  follow id - 1).
- N entries cost two statements. SQLite: one conditional ``UPDATE`` of the head (from
  the head this connection saw last; the condition notices another writer or a rolled
  back savepoint, and the head is then re-read) and one ``executemany`` ``INSERT``.
  PostgreSQL: one ``SELECT`` locks a lane and takes the ids, one statement moves the head
  and inserts every entry from a JSON array (psycopg adapting each value was most of
  the client's cost). The returned :class:`AuditEvent` gets its id and digest when
  written.

Verification (:func:`verify_database`) streams (id, lane, prev_id, entry bytes, digest)
in id order and hashes previous digest + entry with hashlib; a batch is checked as
whole lists, and only a failing batch entry by entry, where a suspect entry is re-read
and rechecked by the chain format's own code (:mod:`prolo.security.chain`: version 2,
or version 1 for entries written before it), so the batch check is a fast path, never
the authority. Each lane head must name an entry with its digest, so entries removed
from the end show as missing. ``docs/deploy.md`` has figures.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import sqlite3
import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from operator import add, methodcaller
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, configure_mappers, make_transient_to_detached

from prolo.db import utcnow
from prolo.security import chain
from prolo.security.models import AUDIT_ACTIONS, AUDIT_OUTCOMES, AuditEvent

GENESIS = chain.GENESIS.hex()  # a lane head before its first entry (audit_head.last_hash)
log = logging.getLogger("prolo.audit")


@dataclass(frozen=True)
class Actor:
    """Who did something, from where."""

    user_id: int | None
    role: str | None
    clinic_id: int | None
    source_ip: str | None = None


SYSTEM = Actor(user_id=None, role="system", clinic_id=None)


def entry_digest(prev: bytes, event: AuditEvent) -> bytes:
    """The version 2 digest of ``event`` (its ``entry``) following the digest ``prev``."""
    return chain.digest(prev, event.entry)


_INSERT_COLUMNS = "id, lane, prev_id, entry, digest"
_ID_SEQUENCE = "audit_event_id_seq"  # the BIGSERIAL behind audit_event.id on PostgreSQL
# S608 below: every statement is built from constants only, never from input.
_INSERT = f"INSERT INTO audit_event ({_INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?)"  # noqa: S608
_MOVE_HEAD = (
    "UPDATE audit_head SET last_id = ?, last_hash = ? "
    "WHERE id = ? AND last_id = ? AND last_hash = ?"
)
_IDS = f"ARRAY(SELECT nextval('{_ID_SEQUENCE}') FROM generate_series(1, %s))"  # noqa: S608
_SQL = {
    # SQLite: one writer at a time anyway, so one lane; ids follow the lane's head.
    "sqlite": {
        "take_lane": "SELECT id, last_id, last_hash FROM audit_head WHERE id = 1",
        "wait_lane": "SELECT id, last_id, last_hash FROM audit_head WHERE id = 1",
        "move_head": _MOVE_HEAD,
        "insert": _INSERT,
        "create_head": "INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, ?, ?)",
        "last_entry": "SELECT id, digest FROM audit_event WHERE lane = 1 ORDER BY id DESC LIMIT 1",
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
        # Rows travel as one JSON array of [id, prev id, hex digest, entry]: the json
        # type (not jsonb) keeps each entry's text exactly as sent, byte for byte.
        "(r->>0)::bigint, %s, (r->>1)::bigint, (r->3)::text, decode(r->>2, 'hex') "
        "FROM json_array_elements(%s::json) AS r WHERE EXISTS (SELECT FROM moved)",
        "insert": _INSERT.replace("?", "%s"),
        "create_head": "INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, %s, %s)",
        "last_entry": "SELECT id, digest FROM audit_event WHERE lane = 1 ORDER BY id DESC LIMIT 1",
    },
}
_HEAD_KEY = "prolo.audit.head"  # in Connection.info: (transaction, lane, last id, last digest)
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
    """A transaction's entries recorded but not yet written: canonical texts and objects."""

    transaction: object
    rows: list[str] = field(default_factory=list)
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
    text = chain.encode(now, fields)
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
        entry=text,
    )
    pending.rows.append(text)
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


_COMMIT_HOOKED: weakref.WeakSet[Engine] = weakref.WeakSet()


def hook_commit(engine: Engine) -> None:
    """Write a transaction's pending entries at commit, before any commit listener
    registered on ``engine`` after this call.

    prolo.db calls it first thing when it makes an engine, so that no commit listener
    added later can end the DBAPI transaction before the entries are written in it
    (they would then commit on their own, apart from the data they record). SQLAlchemy
    ignores ``insert=True`` for engine events, so the order is that of registration.
    """
    with _HOOK_LOCK:
        if engine not in _COMMIT_HOOKED:
            event.listen(engine, "commit", _write_pending)
            _COMMIT_HOOKED.add(engine)


def _hook(engine: Engine) -> None:
    with _HOOK_LOCK:
        if engine in _HOOKED:
            return
        event.listen(engine, "before_cursor_execute", _before_statement)
        if engine not in _COMMIT_HOOKED:
            event.listen(engine, "commit", _write_pending)
            _COMMIT_HOOKED.add(engine)
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
    every entry (from one JSON array).
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
    last_id, last_digest, _ = chained[-1]
    conn.info[_HEAD_KEY] = (transaction, lane, last_id, last_digest)
    for entry, (entry_id, digest, prev_id) in zip(pending.entries, chained, strict=True):
        entry.__dict__.update(id=entry_id, digest=digest, lane=lane, prev_id=prev_id)
        make_transient_to_detached(entry)


Chained = list[tuple[int, bytes, int]]  # (id, digest, prev id) per entry


def _chain(entries: Sequence[str], ids: Sequence[int], last_id: int, last: bytes) -> Chained:
    """Each entry's (id, digest, prev id), continuing a lane at its last entry."""
    chained: Chained = []
    for text, entry_id in zip(entries, ids, strict=True):
        digest = chain.digest(last, text)
        chained.append((entry_id, digest, last_id))
        last_id, last = entry_id, digest
    return chained


def _append_sqlite(
    cur: Any, sql: dict[str, str], cached: tuple[object, int, int, bytes] | None, rows: list[str]
) -> tuple[int, Chained]:
    # The head this connection left last time is right unless another connection
    # appended since: the conditional UPDATE (which takes the write lock) tells.
    head = None if cached is None else cached[1:]
    for _ in range(2):
        lane, last_id, last = head if head is not None else _take_lane(cur, sql)[:3]
        chained = _chain(rows, range(last_id + 1, last_id + 1 + len(rows)), last_id, last)
        moved = (chained[-1][0], chained[-1][1].hex(), lane, last_id, last.hex())
        cur.execute(sql["move_head"], moved)
        if cur.rowcount == 1:
            break
        head = None
    else:  # pragma: no cover - the head was just read under the write lock
        raise RuntimeError("the audit chain head moved while locked")
    cur.executemany(
        sql["insert"],
        [
            (entry_id, lane, prev_id, text, digest)
            for text, (entry_id, digest, prev_id) in zip(rows, chained, strict=True)
        ],
    )
    return lane, chained


def _append_postgres(
    cur: Any,
    sql: dict[str, str],
    cached: tuple[object, int, int, bytes] | None,
    transaction: object,
    rows: list[str],
) -> tuple[int, Chained]:
    n = len(rows)
    for _ in range(2):
        if cached is not None and cached[0] is transaction:  # this transaction holds a lane
            _, lane, last_id, last = cached
            cur.execute(sql["next_ids"], (n,))
            ids = cur.fetchone()[0]
        else:
            lane, last_id, last, ids = _take_lane(cur, sql, n)
        chained = _chain(rows, ids, last_id, last)
        # Each entry is already JSON: it goes into the array as it is, not re-escaped.
        payload = (
            "["
            + ",".join(
                f'[{entry_id},{prev_id},"{digest.hex()}",{text}]'
                for text, (entry_id, digest, prev_id) in zip(rows, chained, strict=True)
            )
            + "]"
        )
        head = (chained[-1][0], chained[-1][1].hex(), lane, last_id, last.hex())
        cur.execute(sql["append"], (*head, lane, payload))
        if cur.rowcount == n:
            return lane, chained
        # The head was not where this transaction left it: a savepoint was rolled back
        # underneath (releasing the lane's lock too). Take a lane afresh.
        cached = None
    raise RuntimeError("the audit chain head moved while locked")  # pragma: no cover


def _take_lane(cur: Any, sql: dict[str, str], count: int = 0) -> tuple[int, int, bytes, list[int]]:
    """Lock a lane's head and read it: (lane, last id, last digest, ids for ``count`` entries).

    Takes a free lane when there is one, else waits for a busy one; recreates lane 1
    from the log when the heads are missing. The ids come from PostgreSQL's sequence,
    taken once the lane is held; on SQLite the list is empty.
    """
    params = (count,) if "next_ids" in sql else ()
    for statement in ("take_lane", "wait_lane"):
        cur.execute(sql[statement], params)
        row = cur.fetchone()
        if row is not None:
            taken = list(row[3]) if params else []
            return int(row[0]), int(row[1]), bytes.fromhex(str(row[2])), taken
    # Only a database the migrations did not initialise, or whose heads were deleted:
    # rebuild lane 1 so clinical work goes on; verify reports the missing heads.
    log.warning("the audit chain head was missing; recreated from the log's last entry")
    cur.execute(sql["last_entry"])
    last = cur.fetchone()
    head = (int(last[0]), bytes(last[1])) if last else (0, chain.GENESIS)
    cur.execute(sql["create_head"], (head[0], head[1].hex()))
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


@dataclass(frozen=True)
class ChainBreak:
    """The first entry where the chain does not hold, and why."""

    entry_id: int
    reason: str


_EDITED = "its content does not match its hash (edited)"
_BAD_LINK = "its link to the previous entry does not match"


def check_entry(entry_id: int, entry: str, stored: bytes, prev: bytes) -> str | None:
    """Why the entry (its ``entry`` text and stored digest) does not follow ``prev``, or
    None when it holds: the chain format's own check, version 2 or version 1."""
    if chain.digest(prev, entry) == stored:
        return None
    doc = chain.parse(entry)
    if doc is not None and doc.get("v") == 1:  # written before version 2: its own hash input
        return chain.v1_check(entry, entry_id, prev, stored, doc)
    return _EDITED


# S608: these are built from constants only, never from input. An entry's link is
# the id of the entry before it in its lane; before lanes, that was simply id - 1 (such
# an entry, with no prev_id, takes the entry-by-entry check). The entry's stored bytes
# come back as they are (SQLite: a cast of text to blob copies no character; PostgreSQL:
# the database is UTF-8), so the batch check hashes exactly what was stored.
_SCAN = {
    True: "SELECT id, lane, prev_id, CAST(entry AS BLOB), digest FROM audit_event "  # noqa: S608
    "WHERE id BETWEEN ? AND ? ORDER BY id",
    False: "SELECT id, lane, prev_id, convert_to(entry, 'UTF8'), digest FROM audit_event "  # noqa: S608
    "WHERE id BETWEEN %s AND %s ORDER BY id",
}
_ONE_ROW = {
    True: "SELECT entry, digest, prev_id FROM audit_event WHERE id = ?",
    False: "SELECT entry, digest, prev_id FROM audit_event WHERE id = %s",
}
_LANE_BEFORE = {
    True: "SELECT id, digest FROM audit_event WHERE lane = ? AND id < ? ORDER BY id DESC LIMIT 1",
    False: "SELECT id, digest FROM audit_event WHERE lane = %s AND id < %s "
    "ORDER BY id DESC LIMIT 1",
}
_ENTRY_AT = {
    True: "SELECT lane, digest FROM audit_event WHERE id = ?",
    False: "SELECT lane, digest FROM audit_event WHERE id = %s",
}
_DIGEST = methodcaller("digest")
PARALLEL_FROM = 1_000_000  # entries; below this, starting processes costs more than it saves
# Entries checked together. Small batches stay in the CPU cache between reading and
# hashing: on 200,000 entries, 1.24 µs of CPU per entry with 500, 1.82 with 10,000 and
# 2.13 with 50,000. PostgreSQL still fetches _PG_FETCH rows per round trip.
BATCH = 500
_PG_FETCH = 20_000
Lanes = dict[int, tuple[int, bytes]]  # lane -> (id, digest) of its last entry checked so far


def _one_row(raw: Any, sqlite: bool, entry_id: int) -> Any:
    cur = raw.cursor()
    try:
        cur.execute(_ONE_ROW[sqlite], (entry_id,))
        return cur.fetchone()
    finally:
        cur.close()


def _lane_of(raw: Any, sqlite: bool, entry_id: int) -> int | None:
    cur = raw.cursor()
    try:
        cur.execute(_ENTRY_AT[sqlite], (entry_id,))
        row = cur.fetchone()
    finally:
        cur.close()
    return None if row is None else int(row[0])


def _lane_holds(columns: Sequence[tuple[Any, ...]], last_id: int, last: bytes) -> bool:
    """Whether a lane's entries of one batch, in id order, link and hash right.

    ``columns``: the batch's (ids, lanes, links, entries, digests), one tuple each.
    """
    ids, _, links, entries, digests = columns
    if links != (last_id, *ids[:-1]):
        return False
    computed = map(_DIGEST, map(hashlib.sha256, map(add, (last, *digests[:-1]), entries)))
    return list(computed) == list(digests)


def _batch_holds(rows: Sequence[Any], lanes: Lanes) -> bool:
    """Whether every entry of the batch links and hashes right (no detail: fast).

    On success ``lanes`` moves to each lane's last entry of the batch. Whole columns
    are compared and hashed with C-level iteration: a Python loop over the rows cost
    as much again as reading them.
    """
    columns = tuple(zip(*rows, strict=True))
    lane_of = columns[1]
    if lane_of.count(lane_of[0]) == len(lane_of):  # the usual case: one lane (always SQLite)
        groups = {lane_of[0]: columns}
    else:
        by_lane: dict[int, list[Any]] = {}
        for row in rows:
            by_lane.setdefault(row[1], []).append(row)
        groups = {lane: tuple(zip(*group, strict=True)) for lane, group in by_lane.items()}
    for lane, group in groups.items():
        if not _lane_holds(group, *lanes.get(lane, (0, chain.GENESIS))):
            return False
    for lane, (ids, _, _, _, digests) in groups.items():
        lanes[lane] = (ids[-1], digests[-1])
    return True


def _fails(entry: bytes, entry_id: int, stored: bytes, prev: bytes) -> bool:
    """Whether the entry as the batch read it fails :func:`check_entry` (bytes not UTF-8
    fail): version 1 entries are checked here without reading each row again."""
    try:
        text = entry.decode()
    except UnicodeDecodeError:
        return True
    return check_entry(entry_id, text, stored, prev) is not None


def _first_break(
    raw: Any, sqlite: bool, rows: Sequence[Any], lanes: Lanes
) -> tuple[int, ChainBreak | None]:
    """Check one batch in id order, carrying each lane's last entry in ``lanes``.

    Returns (entries that held before the first break, the break or None).
    """
    if _batch_holds(rows, lanes):
        return len(rows), None
    for i, (entry_id, lane, prev_id, entry, stored) in enumerate(rows):
        last_id, last = lanes.get(lane, (0, chain.GENESIS))
        link = entry_id - 1 if prev_id is None else prev_id
        if link != last_id:
            if link > last_id:
                missing = last_id + 1 if prev_id is None else link  # no gaps before lanes
                if _lane_of(raw, sqlite, missing) is None:
                    return i, ChainBreak(missing, f"entry {missing} is missing")
            # The entry it names is there, in another lane: this entry's link is wrong.
            return i, ChainBreak(entry_id, _BAD_LINK)
        stored = bytes(stored)
        if hashlib.sha256(last + entry).digest() != stored and (
            _fails(entry, entry_id, stored, last)  # a version 1 entry passes here
        ):
            # The authority: the row read anew, checked by the chain format's own code.
            text, digest, _ = _one_row(raw, sqlite, entry_id)
            reason = check_entry(entry_id, text, bytes(digest), last)
            if reason is not None:
                return i, ChainBreak(entry_id, reason)
        lanes[lane] = (entry_id, stored)
    return len(rows), None


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
                found[lane] = (int(row[0]), bytes(row[1]))
    finally:
        cur.close()
    return found


def _check_range(
    raw: Any, *, sqlite: bool, first: int, last: int, lanes: Lanes, batch: int
) -> _Checked:
    """Check entries with ids ``first``..``last`` in id order, each lane continuing ``lanes``."""
    if sqlite:
        cur = raw.cursor()
        fetch = batch
    else:  # a server-side cursor: the log streams in batches, never whole into memory
        cur = raw.cursor(name=f"prolo_audit_verify_{first}")
        fetch = cur.itersize = max(batch, _PG_FETCH)  # fewer round trips
    checked = 0
    try:
        cur.execute(_SCAN[sqlite], (first, last))
        while rows := cur.fetchmany(fetch):
            for start in range(0, len(rows), batch):
                held, broken = _first_break(raw, sqlite, rows[start : start + batch], lanes)
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
    session: Session, *, batch: int = BATCH, workers: int = 1
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
        elif int(row[0]) != lane or bytes(row[1]).hex() != head_hash:
            breaks.append(ChainBreak(head_id, _ALTERED))
    return min(breaks, key=lambda b: b.entry_id, default=None)


_ALTERED = "it does not match the recorded chain head (audit_head was altered)"
