"""`prolo backup` and `prolo restore`, run as an operator would, on both databases.

The databases here are committed for real (backup tools and restores use their own
connections), so each lives in a file or a PostgreSQL database of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, select, text
from typer.testing import CliRunner

from prolo.cli import app
from prolo.db import create_db_engine, make_sessionmaker, unit_of_work
from prolo.demo import load_demo
from prolo.migrate import upgrade
from prolo.ops.backup import BackupError, backup_database, restore_database, table_rows
from prolo.security import audit
from prolo.settings import Settings
from tests.security.test_audit_perf_paths import _own_postgres

runner = CliRunner()


class Database:
    """A database of its own: its URL, settings and engine."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.settings = Settings(env="test", database_url=url)
        self.engine = create_db_engine(self.settings)

    def fill(self, *, patients: int, seed: int) -> None:
        upgrade(self.engine)
        with unit_of_work(make_sessionmaker(self.engine)) as session:
            load_demo(session, patients=patients, seed=seed)

    def invoke(self, *args: str) -> Any:
        return runner.invoke(app, list(args), env={"PROLO_DATABASE_URL": self.url})

    def contents(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, in primary-key order."""
        meta = MetaData()
        meta.reflect(self.engine)
        with self.engine.connect() as conn:
            return {
                name: [tuple(r) for r in conn.execute(select(t).order_by(*t.primary_key.columns))]
                for name, t in meta.tables.items()
            }


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _make(kind: str, folder: Path, name: str) -> Database:
    url = f"sqlite:///{folder / name}.db" if kind == "sqlite" else _own_postgres(name)
    return Database(url)


@pytest.fixture(scope="module")
def source(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """The demo clinic, shared by the tests of a module (they only add audit entries)."""
    db = _make(kind, tmp_path_factory.mktemp("source"), "ops_src")
    db.fill(patients=6, seed=3)
    yield db
    db.engine.dispose()


@pytest.fixture
def make_db(kind: str, tmp_path: Path) -> Iterator[Any]:
    made: list[Database] = []

    def make(name: str) -> Database:
        db = _make(kind, tmp_path, name)
        made.append(db)
        return db

    yield make
    for db in made:
        db.engine.dispose()


def _audit_events(db: Database) -> list[str]:
    with db.engine.connect() as conn:
        return list(conn.execute(text("SELECT event FROM audit_event ORDER BY id")).scalars())


def test_a_round_trip_keeps_every_row_of_every_table(
    source: Database, make_db: Any, tmp_path: Path
) -> None:
    dump = tmp_path / "clinic.backup"
    result = source.invoke("backup", str(dump))
    assert result.exit_code == 0, result.output
    assert "sha256" in result.output and dump.exists()
    assert not dump.with_name(dump.name + ".partial").exists()
    before = source.contents()
    assert sum(len(rows) for rows in before.values()) > 50  # the demo clinic is there

    target = make_db("ops_dst")
    result = target.invoke("restore", str(dump))  # an empty database: no --yes needed
    assert result.exit_code == 0, result.output
    assert "audit chain verified" in result.output
    after = target.contents()

    assert set(after) == set(before)
    for table in before:
        if table in ("audit_event", "audit_head"):
            continue
        assert after[table] == before[table], table
    # The log came across whole (the backup's own entry included) and the restore
    # appended its entry to the same chain.
    assert after["audit_event"][: len(before["audit_event"])] == before["audit_event"]
    assert _audit_events(source)[-1] == "database.backup"
    assert _audit_events(target)[-1] == "database.restore"
    assert len(after["audit_event"]) == len(before["audit_event"]) + 1
    verify = target.invoke("audit", "verify")
    assert verify.exit_code == 0 and "intact" in verify.output


def test_restore_refuses_a_database_that_holds_data_unless_yes(
    source: Database, make_db: Any, tmp_path: Path
) -> None:
    dump = tmp_path / "clinic.backup"
    backup_database(source.settings, dump)
    target = make_db("ops_busy")
    target.fill(patients=3, seed=9)
    untouched = target.contents()

    refused = target.invoke("restore", str(dump))
    assert refused.exit_code == 1
    assert "refused" in refused.output and "--yes" in refused.output
    assert target.contents() == untouched

    dry = target.invoke("restore", str(dump), "--dry-run")
    assert dry.exit_code == 0 and "nothing was changed" in dry.output
    assert target.contents() == untouched

    done = target.invoke("restore", str(dump), "--yes")
    assert done.exit_code == 0, done.output
    replaced = target.contents()
    restored_patients = replaced["patient"]
    assert restored_patients == source.contents()["patient"] != untouched["patient"]


def test_backup_does_not_overwrite_unless_forced(source: Database, tmp_path: Path) -> None:
    dump = tmp_path / "clinic.backup"
    dump.write_bytes(b"keep me")
    result = source.invoke("backup", str(dump))
    assert result.exit_code == 1 and "--force" in result.output
    assert dump.read_bytes() == b"keep me"
    result = source.invoke("backup", str(dump), "--force")
    assert result.exit_code == 0, result.output
    assert dump.read_bytes() != b"keep me"


def test_a_damaged_backup_is_refused_and_the_database_untouched(
    source: Database, make_db: Any, tmp_path: Path
) -> None:
    dump = tmp_path / "clinic.backup"
    backup_database(source.settings, dump)
    data = bytearray(dump.read_bytes())
    damaged = tmp_path / "damaged.backup"
    damaged.write_bytes(bytes(data[: len(data) // 2]))  # cut off half way
    target = make_db("ops_keep")
    target.fill(patients=2, seed=5)
    untouched = target.contents()
    result = target.invoke("restore", str(damaged), "--yes")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert target.contents() == untouched
    junk = tmp_path / "junk.backup"
    junk.write_bytes(b"not a backup at all")
    result = target.invoke("restore", str(junk), "--yes")
    assert result.exit_code == 1 and "not a prolo backup" in result.output


def test_a_backup_whose_audit_chain_was_edited_fails_after_restore(
    make_db: Any, tmp_path: Path
) -> None:
    edited = make_db("ops_edited")
    edited.fill(patients=2, seed=4)
    with edited.engine.begin() as conn:
        # The fields are generated from the hashed entry: the entry is what gets edited.
        conn.execute(
            text(
                "UPDATE audit_event SET entry = replace(entry, '\"v\"', '\"edited\"') WHERE id = 3"
            )
        )
    dump = tmp_path / "clinic.backup"
    backup_database(edited.settings, dump)
    target = make_db("ops_chain")
    with pytest.raises(BackupError, match="audit chain in the backup is broken at entry 3"):
        restore_database(target.settings, dump)


def test_a_backup_is_for_one_kind_of_database(kind: str, source: Database, tmp_path: Path) -> None:
    dump = tmp_path / "clinic.backup"
    backup_database(source.settings, dump)
    other = _own_postgres("ops_other") if kind == "sqlite" else f"sqlite:///{tmp_path / 'other.db'}"
    with pytest.raises(BackupError, match=f"is a {kind} backup"):
        restore_database(Settings(env="test", database_url=other), dump)


def test_the_backup_is_in_the_source_log_before_the_copy_is_taken(
    source: Database, tmp_path: Path
) -> None:
    rows_before = table_rows(source.engine)["audit_event"]
    summary = backup_database(source.settings, tmp_path / "b.backup")
    assert table_rows(source.engine)["audit_event"] == rows_before + 1
    if summary.rows:  # SQLite backups are counted: the copy holds that entry too
        assert summary.rows["audit_event"] == rows_before + 1
    with make_sessionmaker(source.engine)() as session:
        assert audit.verify_database(session)[1] is None
