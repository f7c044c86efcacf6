"""Kill the worker with SIGKILL at random moments while reminders are due: none is lost.

The long version is ``bench/reminders_fault.py`` (hundreds of reminders, dozens of
kills, ``prolo worker`` processes). Here the same harness runs bounded: 8 kills of
workers forked from a preloaded forkserver, on each database.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from bench.reminders_fault import run
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.conftest import CI, PG_URL

KILLS = 8


def _postgres_url() -> str:
    if PG_URL is None:
        if CI:
            pytest.fail("PROLO_TEST_POSTGRES_URL must be set in CI", pytrace=False)
        pytest.skip("PostgreSQL tests run when PROLO_TEST_POSTGRES_URL is set (CI sets it)")
    name = f"prolo_test_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_fault"
    return str(make_url(PG_URL).set(database=name).render_as_string(hide_password=False))


def _drop(url: str) -> None:
    parsed = make_url(url)
    admin = create_engine(
        parsed.set(drivername="postgresql+psycopg", database="postgres"),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
    admin.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_sigkilled_workers_lose_no_reminder(
    kind: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    record_property: pytest.RecordProperty,
) -> None:
    url = f"sqlite:///{tmp_path / 'fault.db'}" if kind == "sqlite" else _postgres_url()
    try:
        report = run(url, reminders=30, kills=KILLS, seed=5, lease=2.0, launcher="fork")
    finally:
        if kind == "postgresql":
            _drop(url)
    record_property("duplicates", report.duplicates)
    record_property("kills", report.kills)
    with capsys.disabled():  # the figures are the point of this test: show them
        sys.stdout.write(f"\nreminder fault test on {kind}:\n")
        sys.stdout.writelines(f"  {line}\n" for line in report.lines())
    assert report.lost == 0
    assert report.not_sent == 0
    assert report.distinct == report.reminders == 30
    # Kills must land while messages are going out, or the test proves nothing.
    assert report.kills_while_sending >= KILLS // 2
    # A duplicate needs a kill between sending and recording: at most one per kill.
    assert report.duplicates <= report.kills
