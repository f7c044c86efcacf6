"""Entries are written with the transaction, not when recorded: they commit with the
caller's data, vanish with its rollback or a rolled-back savepoint, and a failure to
write them fails the commit (nothing of the transaction is kept)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from prolo.db import create_db_engine, make_sessionmaker, make_writer_sessionmaker
from prolo.migrate import upgrade
from prolo.security import audit
from prolo.settings import Settings
from tests.security.test_audit_perf_paths import _own_postgres

ACTOR = audit.Actor(user_id=5, role="clinician", clinic_id=1, source_ip="192.0.2.9")


def _read(session: Session, n: int) -> None:
    for i in range(n):
        audit.record(
            session, ACTOR, action="R", event="patient.read", entity_type="Patient", entity_id=i
        )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('deferred') / 'audit.db'}"
    else:
        url = _own_postgres("deferred")
    engine = create_db_engine(Settings(env="test", database_url=url))
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE clinical_note (body TEXT)"))
    yield engine
    engine.dispose()


@pytest.fixture
def engine(db: Engine) -> Engine:
    with db.begin() as conn:
        conn.execute(text("DELETE FROM audit_event"))
        conn.execute(text("DELETE FROM clinical_note"))
        conn.execute(
            text("UPDATE audit_head SET last_id = 0, last_hash = :g"), {"g": audit.GENESIS}
        )
    return db


def _counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        entries = conn.execute(text("SELECT count(*) FROM audit_event")).scalar_one()
        notes = conn.execute(text("SELECT count(*) FROM clinical_note")).scalar_one()
    return int(entries), int(notes)


def _intact(engine: Engine) -> tuple[int, audit.ChainBreak | None]:
    with make_sessionmaker(engine)() as session, session.begin():
        return audit.verify_database(session)


def test_entries_commit_with_the_data_without_any_explicit_write(engine: Engine) -> None:
    factory = make_sessionmaker(engine)
    for n in (1, 3, 2):
        with factory() as session, session.begin():
            session.execute(text("INSERT INTO clinical_note VALUES ('x')"))
            _read(session, n)
    assert _counts(engine) == (6, 3)
    assert _intact(engine) == (6, None)


def test_a_rolled_back_transaction_leaves_no_entry_and_the_next_one_chains_on(
    engine: Engine,
) -> None:
    factory = make_sessionmaker(engine)
    with factory() as session, session.begin():
        _read(session, 2)
    with factory() as session:
        session.begin()
        _read(session, 3)
        audit.flush_pending(session)  # written, then rolled back: the head moves back too
        session.rollback()
    with factory() as session, session.begin():
        _read(session, 1)
    assert _counts(engine)[0] == 3
    assert _intact(engine) == (3, None)


def test_savepoints_keep_what_was_recorded_outside_them(engine: Engine) -> None:
    factory = make_sessionmaker(engine)
    with factory() as session, session.begin():
        _read(session, 1)  # pending when the savepoint starts: kept
        inner = session.begin_nested()
        _read(session, 2)  # inside: dropped with the savepoint
        inner.rollback()
        kept = session.begin_nested()
        _read(session, 1)  # inside a released savepoint: kept
        kept.commit()
        _read(session, 1)
    assert _intact(engine) == (3, None)


def test_nested_savepoints_roll_back_only_their_own_entries(engine: Engine) -> None:
    factory = make_sessionmaker(engine)
    with factory() as session, session.begin():
        outer = session.begin_nested()
        _read(session, 1)
        inner = session.begin_nested()
        _read(session, 1)
        inner.commit()
        _read(session, 1)
        outer.rollback()  # all three were inside it
        _read(session, 2)
    assert _intact(engine) == (2, None)


@pytest.mark.parametrize("begin", ["deferred", "writer sessions", "immediate connection"])
def test_a_failure_to_write_the_entries_fails_the_commit_and_keeps_nothing(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, begin: str
) -> None:
    # A writer transaction (BEGIN IMMEDIATE on SQLite) ends the DBAPI transaction in a
    # commit listener of the engine's own: the entries must be written before it.
    factory = (make_writer_sessionmaker if begin == "writer sessions" else make_sessionmaker)(
        engine
    )
    with factory() as session, session.begin():
        _read(session, 1)  # the hooks are in place and the chain has a head
    kind = "sqlite" if engine.dialect.name == "sqlite" else "postgresql"
    broken = dict(audit._SQL[kind], insert="INSERT INTO no_such_table VALUES (1)")
    broken["append"] = broken["insert"]
    monkeypatch.setitem(audit._SQL, kind, broken)
    with pytest.raises(DBAPIError), factory() as session, session.begin():
        if begin == "immediate connection":  # as the crash check's writer does
            session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
        session.execute(text("INSERT INTO clinical_note VALUES ('must not survive')"))
        _read(session, 2)
    monkeypatch.undo()
    assert _counts(engine) == (1, 0)
    with factory() as session, session.begin():
        _read(session, 1)
    assert _intact(engine) == (2, None)


def test_another_connection_appending_in_between_is_noticed(engine: Engine) -> None:
    # SQLite trusts the head this connection saw last only as far as the conditional
    # UPDATE confirms it; another connection's appends make it re-read.
    first, second = make_sessionmaker(engine), make_sessionmaker(engine)
    with first() as a, a.begin():
        _read(a, 1)
        conn = a.connection()
    with conn.engine.connect() as other, other.begin():
        with second(bind=other) as b:
            _read(b, 2)
            audit.flush_pending(b)
    with first() as a, a.begin():
        _read(a, 1)
    assert _intact(engine) == (4, None)
