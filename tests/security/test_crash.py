"""Acknowledged writes survive SIGKILL at random moments (bounded; bench/crash.py runs long).

A writer process registers patients through the service layer and acknowledges each
after its commit; it is killed at random moments, and after each kill the database
must pass its integrity check, hold every acknowledged patient, and verify its
audit chain.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from prolo.db import create_db_engine
from prolo.ops.crashcheck import check, crash_cycles, prepare
from prolo.settings import Settings
from tests.security.test_audit_perf_paths import _own_postgres


def _url(kind: str, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'crash.db'}" if kind == "sqlite" else _own_postgres("crash")


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "kills"), [("sqlite", 10), ("postgresql", 4)])
def test_acknowledged_writes_survive_sigkill(kind: str, kills: int, tmp_path: Path) -> None:
    report = crash_cycles(_url(kind, tmp_path), kills=kills, seed=7, max_delay=0.3)
    assert report.kills == kills
    assert report.acknowledged > 0  # the writers got work done between kills
    assert report.stored >= report.acknowledged
    assert report.ok, (report.lost[:5], report.unaudited[:5], report.problems)


def test_the_check_notices_a_lost_write_and_an_unaudited_row(tmp_path: Path) -> None:
    url = _url("sqlite", tmp_path)
    clinic_id, _ = prepare(url)
    report = check(url, clinic_id=clinic_id, acknowledged={999: "CC-never-written"})
    assert report.lost == [999] and not report.ok
    engine = create_db_engine(Settings(env="test", database_url=url))
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO patient (clinic_id, mrn, given_name, family_name, birth_date, sex, "
                "created_at, updated_at) VALUES (:c, 'X1', 'No', 'Audit', '1990-01-01', "
                "'unknown', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            ),
            {"c": clinic_id},
        )
        pid = conn.execute(text("SELECT id FROM patient WHERE mrn = 'X1'")).scalar_one()
    engine.dispose()
    assert check(url, clinic_id=clinic_id, acknowledged={}).unaudited == [pid]


def test_the_check_notices_a_damaged_file(tmp_path: Path) -> None:
    url = _url("sqlite", tmp_path)
    clinic_id, _ = prepare(url)
    path = tmp_path / "crash.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'ix_audit_event_patient_recorded'"
        ).fetchone()[0]
    conn.close()
    with path.open("r+b") as f:  # scribble over an index page
        f.seek((root - 1) * page + 8)
        f.write(b"\xff" * 64)
    report = check(url, clinic_id=clinic_id, acknowledged={})
    assert any("integrity_check" in p for p in report.problems)
