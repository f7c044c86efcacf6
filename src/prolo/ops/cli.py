"""``prolo backup DEST`` and ``prolo restore SRC``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import Engine


def register(app: typer.Typer) -> None:
    """Add the backup and restore commands to ``prolo``."""
    app.command("backup")(backup)
    app.command("restore")(restore)


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def backup(
    dest: Annotated[Path, typer.Argument(help="the backup file to write")],
    force: Annotated[bool, typer.Option("--force", help="replace DEST if it exists")] = False,
) -> None:
    """Back up the database to DEST (SQLite online backup, or pg_dump for PostgreSQL).

    The file appears only once it is complete and checked; the backup is audited.
    """
    # prolo.cli is imported here, not at the top: it imports this module to register it.
    from prolo.cli import console, fail, load_settings
    from prolo.db import DatabaseNotReady, check_ready, create_db_engine
    from prolo.ops.backup import BackupError, backup_database

    settings = load_settings()
    try:
        engine = create_db_engine(settings)
        check_ready(engine)
        engine.dispose()
        summary = backup_database(settings, dest, overwrite=force)
    except (DatabaseNotReady, BackupError) as exc:
        raise fail(str(exc)) from None
    console.print(
        f"backed up the {summary.kind} database (revision {summary.revision}) to "
        f"[bold]{summary.path}[/] ({_human(summary.size)}, sha256 {summary.sha256})",
        highlight=False,
        soft_wrap=True,
    )
    if summary.rows:
        console.print(f"{summary.total_rows} rows in {len(summary.rows)} tables; integrity ok")


def restore(
    src: Annotated[Path, typer.Argument(help="a backup made by `prolo backup`")],
    yes: Annotated[bool, typer.Option("--yes", help="replace a database that holds data")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="only check SRC and say what would happen")
    ] = False,
) -> None:
    """Restore the database from SRC, then verify the audit chain.

    A database that holds data is replaced only with --yes; without it, this only
    says what would happen and changes nothing (exit 1). Stop the app and the
    worker first.
    """
    from prolo.cli import console, fail, load_settings
    from prolo.db import create_db_engine
    from prolo.ops.backup import (
        BOOKKEEPING,
        BackupError,
        holds_data,
        inspect_backup,
        restore_database,
    )

    settings = load_settings()
    try:
        backup = inspect_backup(src.expanduser().resolve())
    except BackupError as exc:
        raise fail(str(exc)) from None
    contents = (
        f"{backup.total_rows} rows in {len(backup.rows)} tables"
        if backup.rows
        else "row counts are known after restoring"
    )
    console.print(
        f"backup {backup.path}: {backup.kind}, revision {backup.revision}, "
        f"{_human(backup.size)}, {contents}",
        highlight=False,
        soft_wrap=True,
    )
    engine = create_db_engine(settings)
    try:
        current = _rows_or_none(engine)
    finally:
        engine.dispose()
    target = engine.url.render_as_string(hide_password=True)
    if current is None or not holds_data(current):
        console.print(f"target {target}: empty", highlight=False, soft_wrap=True)
    else:
        total = sum(n for t, n in current.items() if t not in BOOKKEEPING)
        console.print(
            f"target {target}: holds {total} rows in {len(current)} tables, "
            "which the restore would replace",
            highlight=False,
            soft_wrap=True,
        )
        if not yes and not dry_run:
            raise fail(
                "refused: the database holds data; nothing was changed "
                "(run again with --yes to replace it)"
            )
    if dry_run:
        console.print("dry run: nothing was changed")
        return
    try:
        restored = restore_database(settings, backup.path)
    except BackupError as exc:
        raise fail(str(exc)) from None
    console.print(
        f"restored {restored.total_rows} rows in {len(restored.rows)} tables "
        f"(revision {restored.revision}); audit chain verified",
        highlight=False,
    )
    from prolo.db import DatabaseNotReady, check_ready

    engine = create_db_engine(settings)
    try:
        check_ready(engine)
    except DatabaseNotReady as exc:
        console.print(f"note: {exc}", highlight=False, soft_wrap=True)
    finally:
        engine.dispose()


def _rows_or_none(engine: Engine) -> dict[str, int] | None:
    """Rows per table, or None when the database does not exist or cannot be read yet."""
    from sqlalchemy.exc import OperationalError

    from prolo.ops.backup import table_rows

    try:
        return table_rows(engine)
    except OperationalError:
        return None
