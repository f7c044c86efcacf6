"""Acknowledged writes reach the disk: the connection settings prolo insists on."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from prolo.db import create_db_engine
from prolo.settings import Settings
from tests.security.test_audit_perf_paths import _own_postgres


def test_sqlite_runs_in_wal_with_full_sync(tmp_path: Path) -> None:
    engine = create_db_engine(Settings(env="test", database_url=f"sqlite:///{tmp_path / 'd.db'}"))
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    engine.dispose()


def test_postgres_never_runs_with_synchronous_commit_off() -> None:
    url = _own_postgres("durability")
    settings = Settings(env="test", database_url=url)
    # As if the server, the database or the role defaulted to off.
    off = create_db_engine(settings, connect_args={"options": "-c synchronous_commit=off"})
    local = create_db_engine(settings, connect_args={"options": "-c synchronous_commit=local"})
    try:
        with off.connect() as conn:
            assert conn.execute(text("SHOW synchronous_commit")).scalar() == "on"
        with local.connect() as conn:  # durable on this server: an operator's choice, kept
            assert conn.execute(text("SHOW synchronous_commit")).scalar() == "local"
    finally:
        off.dispose()
        local.dispose()
