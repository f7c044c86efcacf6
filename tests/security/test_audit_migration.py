"""Chain format version 2 across its migration: a log written in version 1 is converted
without being re-blessed, version 2 entries chain on from it, and an edit of any row
of either version (or a removal) is still named. On both databases."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from prolo.db import create_db_engine, make_sessionmaker
from prolo.migrate import upgrade
from prolo.security import audit, chain
from prolo.settings import Settings
from tests.security.test_audit_perf_paths import _own_postgres

BEFORE_V2 = "f1c0a7e5b9d2"
V2 = "c4e8a1f2b6d3"
ACTOR = audit.Actor(user_id=4, role="clinician", clinic_id=2, source_ip="192.0.2.44")
T0 = dt.datetime(2026, 3, 1, 9, 30, 0, 250_000, tzinfo=dt.UTC)
# Version 1 rows as the old code wrote them: (lane, link written?, time, fields).
V1_ROWS: list[tuple[int, bool, dt.datetime, tuple[object, ...]]] = [
    # from before lanes: no prev_id
    (1, False, T0, (1, "admin", 1, "E", "login", "User", "1", None, "0", "10.0.0.1", None)),
    (1, False, T0.replace(microsecond=0), (None, None, None, "R", "patient.read", "Patient",
                                            "7", 7, "4", None, "refusé \u00e9\x1f")),
    (1, True, T0 + dt.timedelta(seconds=1), (2, "front_desk", 1, "C", "booking.create",
                                             "Appointment", "3", 7, "0", "::1", "2 of 3")),
    (2, True, T0 + dt.timedelta(seconds=2), (2, "front_desk", 1, "U", "booking.update",
                                             "Appointment", "3", 7, "0", None, None)),
    (1, True, T0 + dt.timedelta(seconds=3), (1, "admin", 1, "R", "patient.read", "Patient",
                                             "8", 8, "0", "10.0.0.1", None)),
]  # fmt: skip
FIELD_COLUMNS = (
    "id, recorded_at, user_id, user_role, clinic_id, action, event, entity_type, entity_id, "
    "patient_id, outcome, source_ip, detail"
)
V1_COLUMNS = f"{FIELD_COLUMNS}, prev_hash, hash, lane, prev_id"


def _stored_time(engine: Engine, at: dt.datetime) -> object:
    # As the version 1 code stored it: SQLite keeps UTC as naive text.
    if engine.dialect.name == "sqlite":
        return at.replace(tzinfo=None).isoformat(" ", "microseconds")
    return at


def _rows(engine: Engine, columns: str) -> list[tuple[object, ...]]:
    """The rows in id order, each time as an aware UTC datetime on both databases."""
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT {columns} FROM audit_event ORDER BY id")).all()  # noqa: S608
    return [(r[0], _aware(r[1]), *r[2:]) for r in rows]


def _aware(value: object) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def old_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A database at the revision before version 2 holding a version 1 log."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'v1.db'}"
    else:
        url = _own_postgres("v1log")
    engine = create_db_engine(Settings(env="test", database_url=url))
    upgrade(engine, BEFORE_V2)
    heads: dict[int, tuple[int, str]] = {}
    names = ", ".join(f":c{i}" for i in range(17))
    with engine.begin() as conn:
        for entry_id, (lane, linked, at, fields) in enumerate(V1_ROWS, start=1):
            prev_id, prev = heads.get(lane, (0, audit.GENESIS))
            digest = chain.v1_digest(prev, entry_id, at, fields).hex()
            link = prev_id if linked else None
            values = (entry_id, _stored_time(engine, at), *fields, prev, digest, lane, link)
            conn.execute(
                text(f"INSERT INTO audit_event ({V1_COLUMNS}) VALUES ({names})"),  # noqa: S608
                {f"c{i}": v for i, v in enumerate(values)},
            )
            heads[lane] = (entry_id, digest)
        for lane, (last_id, last) in heads.items():
            head = {"l": lane, "i": last_id, "h": last}
            moved = conn.execute(
                text("UPDATE audit_head SET last_id = :i, last_hash = :h WHERE id = :l"), head
            )
            if moved.rowcount == 0:  # SQLite has lane 1 only
                conn.execute(
                    text("INSERT INTO audit_head (id, last_id, last_hash) VALUES (:l, :i, :h)"),
                    head,
                )
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT setval('audit_event_id_seq', 5)"))
    yield engine
    engine.dispose()


def _verify(engine: Engine) -> tuple[int, audit.ChainBreak | None]:
    with make_sessionmaker(engine)() as session, session.begin():
        return audit.verify_database(session)


def _append_v2(engine: Engine, n: int) -> list[int]:
    with make_sessionmaker(engine)() as session, session.begin():
        entries = [
            audit.record(
                session, ACTOR, action="R", event="patient.read", entity_type="Patient",
                entity_id=i, patient_id=i,
            )
            for i in range(n)
        ]  # fmt: skip
        audit.flush_pending(session)
        return [e.id for e in entries]


def _sql(engine: Engine, statement: str, **params: object) -> None:
    with engine.begin() as conn:
        conn.execute(text(statement), params)


def test_a_version_1_log_is_converted_not_reblessed_and_version_2_chains_on(
    old_log: Engine,
) -> None:
    before = _rows(old_log, V1_COLUMNS)
    upgrade(old_log, V2)
    with old_log.connect() as conn:
        after = conn.execute(
            text("SELECT id, digest, entry, lane, prev_id FROM audit_event ORDER BY id")
        ).all()
    # Every field reads back as it was, through the generated columns.
    assert _rows(old_log, FIELD_COLUMNS) == [r[:13] for r in before]
    for old, new in zip(before, after, strict=True):
        assert bytes(new.digest).hex() == old[14]  # the version 1 hash, not a new one
        assert chain.version_of(new.entry) == 1 and (new.lane, new.prev_id) == old[15:]
    assert _verify(old_log) == (5, None)
    ids = _append_v2(old_log, 3)
    assert _verify(old_log) == (8, None)
    with make_sessionmaker(old_log)() as session:
        first_v2 = session.execute(
            text("SELECT lane, prev_id, entry, digest FROM audit_event WHERE id = :i"),
            {"i": ids[0]},
        ).one()
        prev = _digest_of(session, first_v2.prev_id)
    assert chain.version_of(first_v2.entry) == 2
    assert bytes(first_v2.digest) == chain.digest(prev, first_v2.entry)  # chained on v1


def _digest_of(session: Session, entry_id: int) -> bytes:
    row = session.execute(
        text("SELECT digest FROM audit_event WHERE id = :i"), {"i": entry_id}
    ).scalar_one()
    return bytes(row)


def _v1_spaced(entry: str) -> str:
    return entry.replace(",", ", ", 1)  # same fields, so the same version 1 hash input


# (what to do, the entry that must be named); ids 1-5 are version 1, 6-8 version 2.
EDITS = [
    ("UPDATE audit_event SET entry = replace(entry, '\"login\"', '\"logout\"') WHERE id = 1", 1),
    ("UPDATE audit_event SET entry = :spaced WHERE id = 3", 3),
    ("UPDATE audit_event SET entry = replace(entry, :v1, :v2) WHERE id = 4", 4),
    ("UPDATE audit_event SET entry = replace(entry, :v1, :v3) WHERE id = 2", 2),
    ("UPDATE audit_event SET digest = :zero WHERE id = 2", 2),
    ("UPDATE audit_event SET prev_id = 1 WHERE id = 5", 5),
    ("DELETE FROM audit_event WHERE id = 3", 3),
    ("UPDATE audit_event SET entry = replace(entry, '\"R\"', '\"D\"') WHERE id = 7", 7),
    ("UPDATE audit_event SET digest = :zero WHERE id = 6", 6),
    ("DELETE FROM audit_event WHERE id = 7", 7),
    ("DELETE FROM audit_event WHERE id = 8", 8),  # truncation: the head names it
    ("UPDATE audit_head SET last_hash = :zerohex WHERE id = 1", 8),
    ("UPDATE audit_event SET lane = 2 WHERE id = 6", 6),
]


@pytest.mark.parametrize(("statement", "named"), EDITS)
def test_any_edit_of_a_mixed_log_is_named(old_log: Engine, statement: str, named: int) -> None:
    upgrade(old_log, V2)
    assert _append_v2(old_log, 3) == [6, 7, 8]
    with old_log.connect() as conn:
        entry_3 = conn.execute(text("SELECT entry FROM audit_event WHERE id = 3")).scalar_one()
    params = {"spaced": _v1_spaced(entry_3), "zero": bytes(32), "zerohex": "0" * 64}
    params.update({f"v{n}": f'"v":{n}' for n in (1, 2, 3)})
    _sql(old_log, statement, **{k: v for k, v in params.items() if f":{k}" in statement})
    _, broken = _verify(old_log)
    assert broken is not None and broken.entry_id == named, broken


def test_downgrade_converts_a_version_1_log_back_and_refuses_version_2(
    old_log: Engine,
) -> None:
    before = _rows(old_log, V1_COLUMNS)
    upgrade(old_log, V2)
    _downgrade(old_log)
    assert _rows(old_log, V1_COLUMNS) == before
    upgrade(old_log, V2)
    _append_v2(old_log, 1)
    with pytest.raises(RuntimeError, match="version 2"):
        _downgrade(old_log)
    assert _verify(old_log) == (6, None)  # the refused downgrade left the log as it was


def _downgrade(engine: Engine) -> None:
    from alembic import command

    from prolo.migrate import alembic_config

    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, BEFORE_V2)
