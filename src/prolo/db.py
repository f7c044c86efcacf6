"""Engine, sessions and the declarative base.

The caller owns the transaction (a request, a CLI command or a job opens
``with session.begin():``); services never commit. SQLite runs in WAL mode with
foreign keys on, ``synchronous=FULL`` so an acknowledged clinical write survives a
power cut, and a busy timeout so concurrent writers wait instead of failing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from prolo.errors import TooManyRequests
from prolo.settings import Settings

_HOLDS_WRITER = "prolo_holds_sqlite_writer"
_CHECKED_IN_AT = "prolo_checked_in_at"
# A pooled PostgreSQL connection idle for longer than this is pinged before use.
PING_AFTER_IDLE_S = 2.0

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on both databases.

    SQLite has no time zones, so values are normalised to UTC on the way in and
    tagged UTC on the way out; a naive datetime is refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware one is required")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    """Base of every table; one metadata with stable constraint names."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime()}


def utcnow() -> dt.datetime:
    """The current time, aware, in UTC."""
    return dt.datetime.now(dt.UTC)


class DatabaseNotReady(RuntimeError):
    """The database cannot be used; the message says what to do."""


def sqlalchemy_url(database_url: str) -> str:
    """Map ``postgresql://`` to the psycopg 3 driver SQLAlchemy should use."""
    if database_url.startswith("postgresql://"):
        return "postgresql+psycopg://" + database_url.removeprefix("postgresql://")
    return database_url


# Connections beyond the pool for work outside requests (health checks, background
# exports) so that a busy request pool never starves them.
POOL_OVERFLOW = 5


def _pool_options(settings: Settings) -> dict[str, Any]:
    if settings.database_url.startswith("sqlite") and ":memory:" in settings.database_url:
        return {}  # SQLAlchemy's single-connection pool for an in-memory database
    return {"pool_size": settings.request_pool_size, "max_overflow": POOL_OVERFLOW}


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def create_db_engine(settings: Settings, **kwargs: Any) -> Engine:
    """An engine for ``settings.database_url`` with prolo's connection settings."""
    url = sqlalchemy_url(settings.database_url)
    try:
        make_url(url)
    except ArgumentError:
        raise DatabaseNotReady(
            "PROLO_DATABASE_URL is not a valid database URL "
            "(expected sqlite:///path/to/file.db or postgresql://user@host:port/dbname)"
        ) from None
    if settings.database_kind == "sqlite":
        path = settings.sqlite_path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            **{**_pool_options(settings), **kwargs},
        )
        # The audit log's commit listener goes first, so no listener added later (the
        # writer lock's below, or any other) can end the DBAPI transaction before a
        # transaction's audit entries are written in it.
        from prolo.security.audit import hook_commit  # audit imports this module

        hook_commit(engine)
        busy_ms = settings.sqlite_busy_timeout_ms

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # pysqlite's own BEGIN handling defers locking; we issue BEGIN ourselves
            # (below) so that write transactions can ask for IMMEDIATE locks.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
            cur.close()

        # Writers of this engine queue on a lock in this process before BEGIN
        # IMMEDIATE: SQLite's own busy handler polls with sleeps of up to 100 ms,
        # which made concurrent requests' latency jump; the lock hands over at once.
        # Other processes still meet in the busy handler. A plain Lock, not an RLock:
        # a request's transaction may begin in one worker thread and commit in another.
        writer = threading.Lock()
        wait_s = max(busy_ms / 1000, 0.001)

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            if mode != "IMMEDIATE":
                conn.exec_driver_sql(f"BEGIN {mode}")
                return
            if _on_event_loop():
                # An async handler using its session on the event loop thread must not
                # block it: the writer holding the lock may need the loop to finish
                # (its next thread-pool trip is scheduled there). Without the lock at
                # once, begin as a reader, as before writer sessions existed.
                if not writer.acquire(blocking=False):
                    conn.exec_driver_sql("BEGIN DEFERRED")
                    return
            elif not writer.acquire(timeout=wait_s):
                raise TooManyRequests("the database is busy; try again shortly")
            conn.info[_HOLDS_WRITER] = True
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                _release_writer(conn)
                raise

        @event.listens_for(engine, "commit")
        @event.listens_for(engine, "rollback")
        def _release_writer(conn: Any) -> None:
            if conn.info.pop(_HOLDS_WRITER, False):
                writer.release()

        return engine
    engine = create_engine(url, **{**_pool_options(settings), **kwargs})
    _ping_when_idle(engine)

    @event.listens_for(engine, "connect")
    def _durable_commits(dbapi_conn: Any, _record: Any) -> None:
        # A commit prolo acknowledges must survive a crash: a server, database or role
        # default of synchronous_commit=off would let PostgreSQL report success before
        # the WAL reached disk, so prolo's own sessions never run with it.
        with dbapi_conn.cursor() as cur:
            cur.execute("SHOW synchronous_commit")
            if cur.fetchone()[0] == "off":
                cur.execute("SET synchronous_commit TO on")
        dbapi_conn.commit()

    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection before use only if it has been idle a while.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: one round trip more per
    request, most of them on a connection that answered milliseconds before. A
    connection that has rested ``PING_AFTER_IDLE_S`` is pinged, and a dead one is
    replaced before the caller sees it (a database restart, an idle timeout on a
    proxy). A connection that breaks in the moments between two uses fails the
    request that meets it; SQLAlchemy then recognises the disconnect and empties
    the pool of that connection's peers.
    """

    @event.listens_for(engine, "checkin")
    def _rested_from(_dbapi_conn: Any, record: Any) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        rested = record.info.get(_CHECKED_IN_AT)
        if rested is None or time.monotonic() - rested < PING_AFTER_IDLE_S:
            return  # a new connection, or one that answered a moment ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            # The pool discards this connection and tries a fresh one.
            raise DisconnectionError(f"a pooled connection was dead: {type(exc).__name__}") from exc


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after the caller's commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def make_writer_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose transactions hold the write lock from their first statement.

    For units of work that will write, such as web requests (every request that
    reads health information writes its audit entry). On SQLite a transaction that
    began as a reader and later writes fails at once, without waiting, when another
    connection committed in between; beginning with ``BEGIN IMMEDIATE`` makes it
    queue instead. On PostgreSQL this is the ordinary sessionmaker.
    """
    if engine.dialect.name == "sqlite":
        return make_sessionmaker(engine.execution_options(sqlite_begin="IMMEDIATE"))
    return make_sessionmaker(engine)


def holds_write_lock(session: Session) -> bool:
    """Whether the session's transactions begin with the write lock (see above).

    Always True on PostgreSQL, where no such lock is needed.
    """
    bind = session.get_bind()
    return bind.dialect.name != "sqlite" or (
        bind.get_execution_options().get("sqlite_begin") == "IMMEDIATE"
    )


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception."""
    with factory() as session, session.begin():
        yield session


def check_ready(engine: Engine) -> str:
    """Check the database answers and is migrated to the newest revision.

    Returns the current revision; raises :class:`DatabaseNotReady` with one line
    saying what is wrong and how to fix it.
    """
    from prolo.migrate import head_revision

    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            has_version = inspect(conn).has_table("alembic_version")
            current: str | None = (
                conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
                if has_version
                else None
            )
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "no answer"
        raise DatabaseNotReady(
            f"cannot reach the database at {engine.url.render_as_string(hide_password=True)}: "
            f"{reason} (is the server running and PROLO_DATABASE_URL right?)"
        ) from None
    head = head_revision()
    if current is None:
        raise DatabaseNotReady("the database has no schema yet: run `prolo db upgrade`")
    if current != head:
        raise DatabaseNotReady(
            f"the database is at migration {current}, the code expects {head}: "
            "run `prolo db upgrade`"
        )
    return current
