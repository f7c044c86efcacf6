"""The fast paths of the audit chain: cached head, raw appends, generated columns, the
batch check, parallel verification, truncation, concurrency. Each must agree with the
chain format's own code (prolo.security.chain)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from prolo.db import create_db_engine, make_sessionmaker
from prolo.migrate import upgrade
from prolo.security import audit, chain
from prolo.security.models import AuditEvent, AuditHead
from prolo.settings import Settings
from tests.conftest import fresh_postgres_url

ACTOR = audit.Actor(user_id=3, role="clinician", clinic_id=1, source_ip="192.0.2.7")


def _append(session: Session, n: int, **fields: object) -> list[AuditEvent]:
    values: dict[str, object] = {
        "action": "R",
        "event": "patient.read",
        "entity_type": "Patient",
    }
    values.update(fields)
    entries = [
        audit.record(session, ACTOR, entity_id=i, patient_id=i, **values)  # type: ignore[arg-type]
        for i in range(n)
    ]
    audit.flush_pending(session)  # written now, so their ids are known
    return entries


def _verify(session: Session) -> tuple[int, audit.ChainBreak | None]:
    return audit.verify_database(session)


def test_the_returned_entry_is_the_stored_row(session: Session) -> None:
    entry = _append(session, 1)[0]
    stored = session.get(AuditEvent, entry.id)
    assert stored is not None and stored is not entry  # returned detached, loaded anew
    columns = [c.key for c in AuditEvent.__table__.columns]
    assert [getattr(stored, c) for c in columns] == [getattr(entry, c) for c in columns]
    before = session.get(AuditEvent, entry.prev_id) if entry.prev_id else None
    prev = before.digest if before is not None else chain.GENESIS
    assert stored.digest == audit.entry_digest(prev, entry) and len(stored.digest) == 32


def test_entries_are_written_at_the_latest_when_the_audit_tables_are_read(
    session: Session,
) -> None:
    entry = audit.record(session, ACTOR, action="R", event="patient.read", entity_type="Patient")
    assert entry.id is None  # pending: not written yet
    newest = session.scalar(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1))
    assert newest is not None and entry.id == newest.id and entry.digest == newest.digest


def test_an_invalid_entry_is_refused_when_recorded_not_at_commit(session: Session) -> None:
    with pytest.raises(ValueError, match="not a valid audit entry"):
        audit.record(session, ACTOR, action="X", event="patient.read", entity_type="Patient")
    with pytest.raises(ValueError, match="not a valid audit entry"):
        audit.record(session, ACTOR, action="R", event="e" * 61, entity_type="Patient")
    assert audit.verify_database(session) == (0, None)


def test_the_lane_head_follows_each_append(session: Session) -> None:
    first = _append(session, 1)[0]
    second = _append(session, 1)[0]
    assert second.lane == first.lane and second.prev_id == first.id
    head = session.get(AuditHead, second.lane)
    assert head is not None
    session.refresh(head)
    assert (head.last_id, head.last_hash) == (second.id, second.digest.hex())


def test_entries_removed_from_the_end_are_named(session: Session) -> None:
    entries = _append(session, 4)
    session.execute(delete(AuditEvent).where(AuditEvent.id >= entries[2].id))
    session.expire_all()
    checked, broken = _verify(session)
    assert checked == 2
    assert broken is not None and broken.entry_id == entries[-1].id
    assert "removed from the end" in broken.reason


def test_an_altered_head_is_named(session: Session) -> None:
    entries = _append(session, 3)
    lane = AuditHead.id == entries[-1].lane
    session.execute(update(AuditHead).where(lane).values(last_hash="f" * 64))
    _, broken = _verify(session)
    assert broken is not None and broken.entry_id == entries[-1].id
    assert "chain head" in broken.reason


def test_a_deleted_head_is_named_and_appends_recreate_it(
    session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    _append(session, 2)
    session.execute(delete(AuditHead))
    _, broken = _verify(session)
    assert broken is not None and "audit_head" in broken.reason
    with caplog.at_level(logging.WARNING, logger="prolo.audit"):
        _append(session, 1)
    assert "recreated" in caplog.text
    assert _verify(session)[1] is None


def test_a_rolled_back_savepoint_does_not_fork_the_chain(session: Session) -> None:
    _append(session, 2)
    nested = session.begin_nested()
    _append(session, 3)
    nested.rollback()
    _append(session, 2)  # the cached head is stale now; the append must notice
    assert _verify(session) == (4, None)


def test_sessions_sharing_a_connection_interleave(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as first, session_factory() as second:
        for _ in range(3):
            _append(first, 2)
            _append(second, 1)
        assert _verify(first) == (9, None)


def _flip(data: bytes) -> bytes:
    return bytes([data[0] ^ 1]) + data[1:]


@pytest.mark.parametrize("column", ["entry", "entry spacing", "digest", "prev_id", "lane"])
def test_any_stored_column_edited_is_named(session: Session, column: str) -> None:
    entries = _append(session, 4)
    target = entries[2]
    values: dict[str, object] = {
        "entry": target.entry.replace('"action":"R"', '"action":"C"'),
        "entry spacing": target.entry.replace(",", ", ", 1),  # same fields, other bytes
        "digest": _flip(target.digest),
        "prev_id": (target.prev_id or 0) - 1,
        "lane": target.lane + 1,
    }
    assert values[column] != getattr(target, column.split()[0])
    where = AuditEvent.id == target.id
    session.execute(update(AuditEvent).where(where).values({column.split()[0]: values[column]}))
    session.expire_all()
    checked, broken = _verify(session)
    assert broken is not None and broken.entry_id == target.id, broken
    assert checked == 2


def test_an_entry_rehashed_on_another_previous_digest_is_named(session: Session) -> None:
    entries = _append(session, 3)
    last = entries[-1]
    session.add(last)
    last.digest = chain.digest(chain.GENESIS, last.entry)  # consistent in itself
    session.execute(
        update(AuditHead).where(AuditHead.id == last.lane).values(last_hash=last.digest.hex())
    )
    session.flush()
    checked, broken = _verify(session)
    assert checked == 2
    assert broken is not None and broken.entry_id == last.id and "edited" in broken.reason


texts = st.one_of(st.none(), st.text(max_size=40).filter(lambda s: "\x00" not in s))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    rows=st.lists(
        st.tuples(texts, st.one_of(st.none(), st.integers(0, 2**31 - 1))),
        min_size=1,
        max_size=6,
    ),
    victim=st.integers(0, 5),
    column=st.sampled_from(["detail", "entity_id", "user_role", "patient_id", "source_ip"]),
)
def test_any_content_verifies_and_any_edit_is_named(
    session_factory: sessionmaker[Session],
    rows: list[tuple[str | None, int | None]],
    victim: int,
    column: str,
) -> None:
    with session_factory() as session:
        nested = session.begin_nested()
        actor = audit.Actor(user_id=None, role=None, clinic_id=None, source_ip=None)
        entries = [
            audit.record(
                session,
                actor,
                action="E",
                event="login",
                entity_type="User",
                entity_id=None if detail is None else detail[:64],
                patient_id=patient,
                detail=None if detail is None else detail[:300],
            )
            for detail, patient in rows
        ]
        assert audit.verify_database(session) == (len(rows), None)
        for entry in entries:  # the generated columns give back exactly what was recorded
            stored = session.execute(
                select(AuditEvent.detail, AuditEvent.entity_id, AuditEvent.patient_id).where(
                    AuditEvent.id == entry.id
                )
            ).one()
            assert tuple(stored) == (entry.detail, entry.entity_id, entry.patient_id)
        target = entries[victim % len(entries)]
        key = {c: k for k, c in chain.FIELDS}[column]
        doc = json.loads(target.entry)
        old = doc[key]
        doc[key] = 123456 if column == "patient_id" else "tampered"
        edited = chain._ENCODER.encode(doc)  # still canonical: only the value differs
        session.execute(update(AuditEvent).where(AuditEvent.id == target.id).values(entry=edited))
        if old != doc[key]:
            _, broken = audit.verify_database(session)
            assert broken is not None and broken.entry_id == target.id
        nested.rollback()


# Committed logs on databases of their own: parallel workers and concurrent writers
# use their own connections, so they cannot see a test's rolled-back transaction.


def _own_postgres(suffix: str) -> str:
    return fresh_postgres_url(suffix)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def committed_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('audit') / 'audit.db'}"
    else:
        url = _own_postgres("audit")
    engine = create_db_engine(Settings(env="test", database_url=url), pool_size=10)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def committed(committed_engine: Engine) -> Engine:
    """An engine on a database whose log starts empty; what a test writes is committed."""
    with committed_engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_event"))
        conn.execute(
            text("UPDATE audit_head SET last_id = 0, last_hash = :g"), {"g": audit.GENESIS}
        )
    return committed_engine


def _fill(engine: Engine, n: int) -> None:
    factory = make_sessionmaker(engine)
    with factory() as session, session.begin():
        _append(session, n)


def _verify_parallel(engine: Engine) -> tuple[int, audit.ChainBreak | None]:
    with make_sessionmaker(engine)() as session, session.begin():
        return audit.verify_database(session, workers=2, batch=7)


def test_parallel_verify_agrees_and_names_breaks_across_the_split(
    committed: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit, "PARALLEL_FROM", 10)
    _fill(committed, 40)
    with committed.connect() as conn:
        ids = list(conn.execute(text("SELECT id FROM audit_event ORDER BY id")).scalars())
    assert _verify_parallel(committed) == (40, None)
    with committed.begin() as conn:  # an edit in the second worker's half ...
        conn.execute(
            text("UPDATE audit_event SET entry = replace(entry, '.read', '.reed') WHERE id = :i"),
            {"i": ids[32]},
        )
    assert _verify_parallel(committed) == (32, audit.ChainBreak(ids[32], _EDITED))
    with committed.begin() as conn:  # ... and a gap near the end of the first
        conn.execute(text("DELETE FROM audit_event WHERE id = :i"), {"i": ids[19]})
    missing = audit.ChainBreak(ids[19], f"entry {ids[19]} is missing")
    assert _verify_parallel(committed) == (19, missing)


_EDITED = "its content does not match its hash (edited)"


def test_concurrent_writers_never_fork_the_chain(committed: Engine) -> None:
    factory = make_sessionmaker(committed)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for _ in range(15):
                with factory() as session, session.begin():
                    if committed.dialect.name == "sqlite":
                        # Take SQLite's write lock up front, as a request that writes does.
                        session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
                    _append(session, 2)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with factory() as session, session.begin():
        assert audit.verify_database(session) == (180, None)
        heads = session.execute(select(AuditHead.id, AuditHead.last_id)).all()
        lanes = session.execute(
            select(AuditEvent.lane, func.max(AuditEvent.id)).group_by(AuditEvent.lane)
        ).all()
        assert dict(lanes) == {lane: last for lane, last in heads if last}  # type: ignore[arg-type]


def test_a_transaction_holding_a_lane_does_not_hold_up_others(committed: Engine) -> None:
    if committed.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: one lane")
    factory = make_sessionmaker(committed)
    with factory() as slow, slow.begin():
        held = _append(slow, 1)[0]  # its lane stays locked until this commits
        with factory() as quick, quick.begin():
            quick.execute(text("SET LOCAL lock_timeout = '2s'"))  # waiting would fail
            other = _append(quick, 1)[0]
        assert other.lane != held.lane
    with factory() as session, session.begin():
        assert audit.verify_database(session) == (2, None)


def test_recorded_times_are_utc_on_both_databases(committed: Engine) -> None:
    _fill(committed, 1)
    with make_sessionmaker(committed)() as session:
        stored = session.scalar(select(AuditEvent.recorded_at))
    assert stored is not None and stored.tzinfo is not None
    assert abs(dt.datetime.now(dt.UTC) - stored) < dt.timedelta(minutes=5)
