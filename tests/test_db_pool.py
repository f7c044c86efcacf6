"""PostgreSQL pooled connections: pinged before use only after resting, replaced when dead."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from prolo import db
from prolo.settings import Settings
from tests.conftest import fresh_postgres_url


def _kill_idle_backends(url: str, own_pid: int) -> None:
    """Terminate this database's other sessions, as a restart or a proxy timeout would."""
    killer = db.create_db_engine(Settings(env="test", database_url=url))
    with killer.begin() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid = :p"
            ),
            {"p": own_pid},
        )
    killer.dispose()


def test_a_rested_dead_connection_is_replaced_and_a_busy_one_not_pinged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = fresh_postgres_url("pool")
    engine = db.create_db_engine(
        Settings(env="test", database_url=url, db_pool_size=1), max_overflow=0
    )
    pings: list[Any] = []
    real_ping = engine.dialect.do_ping

    def counted(conn: Any) -> bool:
        pings.append(conn)
        return bool(real_ping(conn))

    monkeypatch.setattr(engine.dialect, "do_ping", counted)

    def backend_pid() -> int:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())

    first = backend_pid()
    assert backend_pid() == first and pings == []  # used a moment ago: no ping

    # Dead while resting: the ping finds it and the pool connects afresh.
    _kill_idle_backends(url, first)
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.0)
    second = backend_pid()
    assert second != first and len(pings) == 1

    # Dead between two quick uses (inside the resting time): the request that meets
    # it fails, and the pool recovers for the next one.
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 3600.0)
    _kill_idle_backends(url, second)
    with pytest.raises(OperationalError):
        backend_pid()
    assert backend_pid() not in (first, second)
    engine.dispose()
