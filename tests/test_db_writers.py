"""SQLite write transactions: requests begin as writers and queue instead of failing.

Every request that reads health information writes its audit entry, so a request's
transaction is a writer. On SQLite a transaction that begins as a reader and writes
after another connection committed fails at once ("database is locked"), without
waiting; these tests show that failure and that request sessions avoid it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from prolo.app import create_app
from prolo.db import create_db_engine, make_sessionmaker, make_writer_sessionmaker, unit_of_work
from prolo.migrate import upgrade
from prolo.settings import Settings
from tests.factories import make_clinic, make_patient, make_user, token_for


@pytest.fixture
def file_settings(tmp_path: Path) -> Settings:
    return Settings(env="test", database_url=f"sqlite:///{tmp_path / 'w.db'}")


@pytest.fixture
def file_engine(file_settings: Settings) -> Iterator[Engine]:
    engine = create_db_engine(file_settings)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE counter (n INTEGER)"))
        conn.execute(text("INSERT INTO counter VALUES (0)"))
    yield engine
    engine.dispose()


def _bump(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE counter SET n = n + 1"))


def test_reader_that_writes_after_another_commit_fails_without_the_writer_lock(
    file_engine: Engine,
) -> None:
    factory = make_sessionmaker(file_engine)
    with pytest.raises(OperationalError, match="locked"), unit_of_work(factory) as session:
        session.execute(text("SELECT n FROM counter")).scalar_one()  # a reader now
        _bump(file_engine)  # another connection commits meanwhile
        session.execute(text("UPDATE counter SET n = n + 10"))  # cannot upgrade


def test_writer_sessions_queue_and_both_writes_land(file_engine: Engine) -> None:
    factory = make_writer_sessionmaker(file_engine)
    other_started = threading.Event()
    with unit_of_work(factory) as session:
        before = session.execute(text("SELECT n FROM counter")).scalar_one()

        def other() -> None:
            other_started.set()
            with unit_of_work(factory) as second:
                second.execute(text("UPDATE counter SET n = n + 1"))

        thread = threading.Thread(target=other)
        thread.start()
        other_started.wait(5)
        session.execute(text("UPDATE counter SET n = n + 10"))
    thread.join(10)
    assert not thread.is_alive()
    with file_engine.connect() as conn:
        assert conn.execute(text("SELECT n FROM counter")).scalar_one() == before + 11


def test_concurrent_audited_reads_and_writes_over_http_all_succeed(
    file_settings: Settings,
) -> None:
    engine = create_db_engine(file_settings)
    upgrade(engine)
    with unit_of_work(make_sessionmaker(engine)) as session:
        clinic = make_clinic(session)
        patients = [make_patient(session, clinic) for _ in range(4)]
        auth = [
            token_for(session, make_user(session, clinic, "patient", patient=p)) for p in patients
        ]
        ids = [p.id for p in patients]
    engine.dispose()
    config = uvicorn.Config(create_app(file_settings), port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    body = {"instrument_id": "pain-nrs", "answers": {"pain-nrs": 4}}

    def client(k: int) -> list[int]:
        statuses = []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth[k % 4]) as http:
            for n in range(12):
                pid = ids[k % 4]
                if n % 2:
                    r = http.post(f"/api/patients/{pid}/responses", json=body)
                else:
                    r = http.get(f"/api/patients/{pid}/responses")
                statuses.append(r.status_code)
        return statuses

    try:
        with ThreadPoolExecutor(8) as pool:
            statuses = [s for batch in pool.map(client, range(8)) for s in batch]
    finally:
        server.should_exit = True
        thread.join(10)
    assert len(statuses) == 96
    assert set(statuses) <= {200, 201}, sorted(set(statuses))


def test_request_pool_size_defaults_by_database() -> None:
    """SQLite serialises request transactions, so one connection (a warm page cache)
    serves them; PostgreSQL runs ten at once; an explicit setting wins on both."""
    sqlite = "sqlite:///var/x.db"
    postgres = "postgresql://root@127.0.0.1:5432/test"
    assert Settings(env="test", database_url=sqlite).request_pool_size == 1
    assert Settings(env="test", database_url=postgres).request_pool_size == 10
    assert Settings(env="test", database_url=sqlite, db_pool_size=4).request_pool_size == 4
    assert Settings(env="test", database_url=postgres, db_pool_size=3).request_pool_size == 3


@pytest.mark.parametrize("pool", [2, None], ids=["pool 2", "default pool"])
def test_a_burst_beyond_the_pool_and_thread_pool_queues_instead_of_deadlocking(
    tmp_path: Path, pool: int | None
) -> None:
    """More concurrent requests than connections and threads: all answer, none waits out
    the pool timeout (requests queue for a database slot holding no thread)."""
    settings = Settings(
        env="test", database_url=f"sqlite:///{tmp_path / 'b.db'}", db_pool_size=pool
    )
    engine = create_db_engine(settings)
    upgrade(engine)
    with unit_of_work(make_sessionmaker(engine)) as session:
        clinic = make_clinic(session)
        patient = make_patient(session, clinic)
        auth = token_for(session, make_user(session, clinic, "patient", patient=patient))
    engine.dispose()
    app = create_app(settings)

    async def three_threads(scope: Any, receive: Any, send: Any) -> None:
        # The thread limiter belongs to the server's event loop: set it from inside.
        anyio.to_thread.current_default_thread_limiter().total_tokens = 3
        await app(scope, receive, send)

    server = uvicorn.Server(uvicorn.Config(three_threads, port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]

    def read(_: int) -> int:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=20) as http:
            return http.get(f"/api/patients/{patient.id}/responses").status_code

    try:
        with ThreadPoolExecutor(24) as pool:
            statuses = list(pool.map(read, range(48)))
    finally:
        server.should_exit = True
        thread.join(10)
    assert statuses == [200] * 48


def test_the_event_loop_thread_never_waits_for_the_writer_lock(file_engine: Engine) -> None:
    """An async handler using its session on the loop must not block the loop while a
    writer holds the lock (that writer may need the loop to finish): it begins as a
    reader at once instead."""
    import asyncio
    import time

    factory = make_writer_sessionmaker(file_engine)
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with unit_of_work(factory) as session:
            session.execute(text("UPDATE counter SET n = n + 1"))
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    assert held.wait(5)

    async def on_the_loop() -> tuple[int, float]:
        start = time.monotonic()
        with unit_of_work(factory) as session:
            n = session.execute(text("SELECT n FROM counter")).scalar_one()
        return n, time.monotonic() - start

    # A loop of its own in a thread of its own: the browser tests' Playwright keeps a
    # loop running on the main thread for the whole session.
    outcome: list[tuple[int, float]] = []
    runner = threading.Thread(target=lambda: outcome.append(asyncio.run(on_the_loop())))
    try:
        runner.start()
        runner.join(10)
        n, waited = outcome[0]
    finally:
        release.set()
        thread.join(10)
    assert n == 0  # the holder's write is not committed yet
    assert waited < 1.0  # not the 5 s lock timeout
