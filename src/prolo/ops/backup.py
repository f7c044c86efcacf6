"""Backups and restores: SQLite's online backup API, ``pg_dump``/``pg_restore`` for PostgreSQL.

A backup is written to ``DEST.partial``, checked, flushed to disk and only then renamed
to ``DEST``: a file at ``DEST`` is always a complete, checked backup.

- SQLite: the online backup API copies a consistent snapshot while the app keeps
  writing (WAL readers do not block writers). The copy is switched to a rollback
  journal so the backup is one self-contained file, and must pass
  ``PRAGMA integrity_check``.
- PostgreSQL: ``pg_dump --format=custom`` (compressed, restorable table by table),
  checked by listing its contents with ``pg_restore --list``. Connection details go to
  the tools through ``PG*`` environment variables, never the command line, so the
  password does not show in the process list.

A restore replaces the whole database: SQLite through the same backup API in the
other direction; PostgreSQL by dropping and recreating the ``public`` schema and
replaying the dump in one transaction (``psql --single-transaction``), so it
either completes or leaves the database as it was. Afterwards the audit chain is
verified. Both are audited: a backup reads every record, a restore replaces them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import make_url

from prolo.db import create_db_engine, make_sessionmaker, unit_of_work
from prolo.security import audit
from prolo.settings import Settings

Kind = Literal["sqlite", "postgresql"]
SQLITE_MAGIC = b"SQLite format 3\x00"
PG_DUMP_MAGIC = b"PGDMP"
# Tables that hold no clinical data: an otherwise empty database still has them.
BOOKKEEPING = frozenset({"alembic_version", "audit_head"})


class BackupError(Exception):
    """A backup or restore could not be done; the message says why, in one line."""


@dataclass(frozen=True)
class BackupSummary:
    """What a backup file holds, or what a database held after a restore."""

    path: Path
    kind: Kind
    size: int
    sha256: str
    revision: str | None
    rows: dict[str, int] = field(default_factory=dict)  # empty when not countable

    @property
    def total_rows(self) -> int:
        return sum(n for t, n in self.rows.items() if t not in BOOKKEEPING)


def backup_kind(path: Path) -> Kind:
    """Which database a backup file is for, from its first bytes."""
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror}") from None
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if head.startswith(PG_DUMP_MAGIC):
        return "postgresql"
    raise BackupError(f"{path} is not a prolo backup (neither SQLite nor pg_dump custom format)")


def table_rows(engine: Engine) -> dict[str, int]:
    """Rows in each table of the database behind ``engine``."""
    with engine.connect() as conn:
        names = sorted(inspect(conn).get_table_names())
        quote = conn.dialect.identifier_preparer.quote
        # Table names come from the database's own catalogue, not from input.
        return {
            name: int(conn.execute(text(f"SELECT count(*) FROM {quote(name)}")).scalar_one())  # noqa: S608
            for name in names
        }


def holds_data(rows: dict[str, int]) -> bool:
    """True when any table other than the bookkeeping ones has a row."""
    return any(n for t, n in rows.items() if t not in BOOKKEEPING)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(partial: Path, dest: Path) -> None:
    """Make the checked ``partial`` file ``dest`` durably: data, then the rename."""
    _fsync(partial)
    os.replace(partial, dest)
    _fsync(dest.parent)


def _audit(settings: Settings, *, event: str, action: str, detail: str) -> None:
    engine = create_db_engine(settings)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            audit.record(
                session,
                audit.SYSTEM,
                action=action,
                event=event,
                entity_type="Database",
                detail=detail[:300],
            )
    finally:
        engine.dispose()


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(
            f"{name} was not found: install the PostgreSQL client tools "
            "(the same major version as the server)"
        )
    return found


def _pg_env(database_url: str) -> dict[str, str]:
    """The environment for pg_dump, pg_restore and psql: PG* variables from the URL."""
    url = make_url(database_url)
    env = dict(os.environ)
    for var, value in (
        ("PGHOST", url.host),
        ("PGPORT", url.port),
        ("PGUSER", url.username),
        ("PGPASSWORD", url.password),
        ("PGDATABASE", url.database),
        ("PGSSLMODE", url.query.get("sslmode")),
    ):
        if value:
            env[var] = str(value)
    return env


def _run(args: list[str], *, env: dict[str, str], what: str) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(args, env=env, capture_output=True, check=False)  # noqa: S603
    if result.returncode != 0:
        lines = result.stderr.decode(errors="replace").strip().splitlines()
        raise BackupError(
            f"{what} failed: {lines[0] if lines else 'exit ' + str(result.returncode)}"
        )
    return result


def _sqlite_revision(conn: sqlite3.Connection) -> str | None:
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:
        return None
    return None if row is None else str(row[0])


def _sqlite_rows(conn: sqlite3.Connection) -> dict[str, int]:
    names = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    # Table names come from the file's own catalogue, not from input.
    count = 'SELECT count(*) FROM "{}"'
    return {n: int(conn.execute(count.format(n)).fetchone()[0]) for n in sorted(names)}


def _integrity(conn: sqlite3.Connection, what: str) -> None:
    result = [r[0] for r in conn.execute("PRAGMA integrity_check")]
    if result != ["ok"]:
        raise BackupError(f"{what} fails PRAGMA integrity_check: {result[0]}")


def inspect_backup(path: Path) -> BackupSummary:
    """Check a backup file and say what it holds (row counts for SQLite backups)."""
    kind = backup_kind(path)
    if kind == "sqlite":
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            _integrity(conn, str(path))
            revision, rows = _sqlite_revision(conn), _sqlite_rows(conn)
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"{path} is not a readable SQLite backup: {exc}") from None
        finally:
            conn.close()
    else:
        env = dict(os.environ)
        _run([_tool("pg_restore"), "--list", str(path)], env=env, what="pg_restore --list")
        data = _run(
            [_tool("pg_restore"), "--data-only", "--table=alembic_version", "--file=-", str(path)],
            env=env,
            what="pg_restore",
        ).stdout.decode()
        revision = _copy_first_value(data)
        rows = {}
    return BackupSummary(
        path=path,
        kind=kind,
        size=path.stat().st_size,
        sha256=_sha256(path),
        revision=revision,
        rows=rows,
    )


def _copy_first_value(script: str) -> str | None:
    """The first data line of the first COPY block in a pg_restore script."""
    lines = script.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("COPY ") and i + 1 < len(lines) and lines[i + 1] != "\\.":
            return lines[i + 1].split("\t")[0]
    return None


def backup_database(settings: Settings, dest: Path, *, overwrite: bool = False) -> BackupSummary:
    """Write a checked backup of the database to ``dest``; audited as a read of everything."""
    dest = dest.expanduser().resolve()
    if dest.exists() and not overwrite:
        raise BackupError(f"{dest} exists already (pass --force to replace it)")
    if not dest.parent.is_dir():
        raise BackupError(f"the folder {dest.parent} does not exist")
    partial = dest.with_name(dest.name + ".partial")
    partial.unlink(missing_ok=True)
    # The backup records itself, so the copy carries its own audit entry.
    _audit(settings, event="database.backup", action="R", detail=f"to {dest.name}")
    try:
        if settings.database_kind == "sqlite":
            _backup_sqlite(settings, partial)
        else:
            _run(
                [_tool("pg_dump"), "--format=custom", f"--file={partial}"],
                env=_pg_env(settings.database_url),
                what="pg_dump",
            )
        summary = inspect_backup(partial)
        _publish(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
    return BackupSummary(
        path=dest,
        kind=summary.kind,
        size=summary.size,
        sha256=summary.sha256,
        revision=summary.revision,
        rows=summary.rows,
    )


def _backup_sqlite(settings: Settings, partial: Path) -> None:
    path = settings.sqlite_path
    if path is None or not path.exists():
        raise BackupError("there is no SQLite database file to back up (PROLO_DATABASE_URL)")
    source = sqlite3.connect(path, timeout=30)
    try:
        target = sqlite3.connect(partial)
        try:
            # All pages in one step: a read transaction, which WAL writers do not wait for.
            source.backup(target)
            target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        finally:
            target.close()
    finally:
        source.close()


def restore_database(settings: Settings, src: Path) -> BackupSummary:
    """Replace the database with the backup at ``src`` and verify it; audited.

    The caller decides whether replacing is allowed (see :func:`holds_data`).
    Raises :class:`BackupError` when the backup is for the other kind of database,
    is damaged, or restores to a log whose audit chain does not verify.
    """
    src = src.expanduser().resolve()
    backup = inspect_backup(src)
    if backup.kind != settings.database_kind:
        raise BackupError(
            f"{src} is a {backup.kind} backup but PROLO_DATABASE_URL names a "
            f"{settings.database_kind} database"
        )
    if settings.database_kind == "sqlite":
        _restore_sqlite(settings, src)
    else:
        _restore_postgres(settings, src)
    engine = create_db_engine(settings)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            checked, broken = audit.verify_database(session)
        if broken is not None:
            raise BackupError(
                f"restored, but the audit chain in the backup is broken at entry "
                f"{broken.entry_id}: {broken.reason}"
            )
        _audit(settings, event="database.restore", action="U", detail=f"from {src.name}")
        rows = table_rows(engine)
    finally:
        engine.dispose()
    return BackupSummary(
        path=src,
        kind=backup.kind,
        size=backup.size,
        sha256=backup.sha256,
        revision=backup.revision,
        rows=rows,
    )


def _restore_sqlite(settings: Settings, src: Path) -> None:
    path = settings.sqlite_path
    if path is None:
        raise BackupError("PROLO_DATABASE_URL names no SQLite file to restore into")
    path.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    try:
        target = sqlite3.connect(path, timeout=30)
        try:
            # Page by page into the live file under its write lock: readers see the
            # old database or the new one, never a mixture.
            source.backup(target)
            target.execute("PRAGMA journal_mode=WAL")
            _integrity(target, str(path))
        finally:
            target.close()
    finally:
        source.close()


def _restore_postgres(settings: Settings, src: Path) -> None:
    env = _pg_env(settings.database_url)
    with tempfile.TemporaryFile() as restore_errors:
        # pg_restore turns the dump into SQL; psql replays it after emptying the schema,
        # all in one transaction.
        producer = subprocess.Popen(  # noqa: S603 - fixed argument list
            [_tool("pg_restore"), "--no-owner", "--no-privileges", "--file=-", str(src)],
            stdout=subprocess.PIPE,
            stderr=restore_errors,
            env=env,
        )
        replay = subprocess.run(  # noqa: S603 - fixed argument list
            [
                _tool("psql"),
                "--no-psqlrc",
                "--quiet",
                "--single-transaction",
                "--set=ON_ERROR_STOP=1",
                "--command=DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;",
                "--file=-",
            ],
            stdin=producer.stdout,
            capture_output=True,
            env=env,
            check=False,
        )
        if producer.stdout is not None:
            producer.stdout.close()
        producer.wait()
        if producer.returncode != 0:
            restore_errors.seek(0)
            lines = restore_errors.read().decode(errors="replace").strip().splitlines()
            raise BackupError(f"pg_restore failed: {lines[0] if lines else 'no output'}")
    if replay.returncode != 0:
        lines = replay.stderr.decode(errors="replace").strip().splitlines()
        raise BackupError(
            "the restore was rolled back, the database is unchanged: "
            + (lines[0] if lines else f"psql exit {replay.returncode}")
        )
