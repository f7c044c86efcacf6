"""Shared fixtures: databases (SQLite always, PostgreSQL in CI), sessions, the app.

Every test that takes ``session`` or ``client`` runs once per database kind, inside a
transaction that is rolled back afterwards. With ``CI=true`` an unreachable
PostgreSQL fails the run instead of skipping it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from prolo.app import create_app
from prolo.db import create_db_engine
from prolo.migrate import upgrade
from prolo.settings import Settings

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_URL = os.environ.get("PROLO_TEST_POSTGRES_URL") or (
    "postgresql://root@127.0.0.1:5432/test" if CI else None
)
DB_KINDS = ["sqlite", "postgresql"]


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def fresh_postgres_url(suffix: str = "") -> str:
    """A new, empty PostgreSQL database for this test run; fails in CI, skips elsewhere.

    ``suffix`` names a database of a test's own (for committed data) beside the
    session's shared one.
    """
    if PG_URL is None:
        pytest.skip("PostgreSQL tests run when PROLO_TEST_POSTGRES_URL is set (CI sets it)")
    name = f"prolo_test_{_worker()}" + (f"_{suffix}" if suffix else "")
    admin_url = make_url(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
    except Exception as exc:
        message = f"PostgreSQL at {PG_URL} is not reachable: {type(exc).__name__}: {exc}"
        if CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return str(make_url(PG_URL).set(database=name).render_as_string(hide_password=False))


@pytest.fixture(scope="session", params=DB_KINDS)
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated, empty database URL of each kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    else:
        url = fresh_postgres_url()
    return url


@pytest.fixture(scope="session")
def settings(db_url: str) -> Settings:
    return Settings(env="test", database_url=db_url, clinic_timezone="America/New_York")


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[Engine]:
    engine = create_db_engine(settings)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    """A connection inside a transaction that the test never commits."""
    with engine.connect() as conn:
        outer = conn.begin()
        yield conn
        outer.rollback()


@pytest.fixture
def session_factory(connection: Connection) -> sessionmaker[Session]:
    """Sessions joined to the test's transaction: their commits are savepoints."""
    return sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as s:
        yield s


@pytest.fixture
def client(settings: Settings, session_factory: sessionmaker[Session]) -> Iterator[TestClient]:
    app = create_app(settings, session_factory=session_factory)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(autouse=True, scope="session")
def _cheap_password_hashing() -> Iterator[None]:
    """argon2id at minimum cost in tests: the suite hashes hundreds of passwords."""
    from argon2 import PasswordHasher

    from prolo.security import passwords

    original = passwords._hasher
    passwords._hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    yield
    passwords._hasher = original
