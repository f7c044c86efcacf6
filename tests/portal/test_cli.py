"""``prolo portal``: load licensed wording from a file, print a single-use link."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from prolo.cli import app
from prolo.portal import links
from prolo.portal.models import InstrumentText
from prolo.settings import DEVELOPMENT_SECRET

runner = CliRunner()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    db = tmp_path_factory.mktemp("portal-cli") / "cli.db"
    env = {"PROLO_DATABASE_URL": f"sqlite:///{db}"}
    assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    result = runner.invoke(app, ["demo", "--patients", "2"], env=env)
    assert result.exit_code == 0, result.output
    return env


def test_load_text_checks_the_file_then_stores_it(env: dict[str, str], tmp_path: Path) -> None:
    good = tmp_path / "odi.yaml"
    good.write_text('items:\n  odi-1:\n    text: "Licensed one"\n    answers: {"0": "None"}\n')
    args = ["portal", "load-text", "--instrument", "odi", "--admin-email"]
    result = runner.invoke(app, [*args, "admin@demo.prolo.example.org", str(good)], env=env)
    assert result.exit_code == 0, result.output
    assert "loaded the wording of 1 items of odi (partial" in result.output
    engine = create_engine(env["PROLO_DATABASE_URL"])
    with Session(engine) as s:
        row = s.scalars(select(InstrumentText)).one()
        assert row.texts["items"]["odi-1"] == {"text": "Licensed one", "answers": {"0": "None"}}
    engine.dispose()
    bad = tmp_path / "bad.yaml"
    bad.write_text("items:\n  odi-77: text\n")
    result = runner.invoke(app, [*args, "admin@demo.prolo.example.org", str(bad)], env=env)
    assert result.exit_code == 1 and "unknown linkId 'odi-77'" in result.output
    result = runner.invoke(app, [*args, "clinician@demo.prolo.example.org", str(good)], env=env)
    assert result.exit_code == 1 and "not an administrator" in result.output


def test_link_prints_a_working_single_use_link(env: dict[str, str]) -> None:
    # A fresh process, as a user runs it: only what the command imports is loaded.
    result = subprocess.run(
        [sys.executable, "-m", "prolo.cli", "portal", "link", "--patient-id", "1", "--hours", "2"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    url = result.stdout.split()[0]
    token = url.rsplit("/portal/link/", 1)[1]
    engine = create_engine(env["PROLO_DATABASE_URL"])
    with Session(engine) as s:
        link = links.check_link(session=s, token=token, secret_key=DEVELOPMENT_SECRET)
        assert link.patient_id == 1
    engine.dispose()
    missing = runner.invoke(app, ["portal", "link", "--patient-id", "999"], env=env)
    assert missing.exit_code == 1 and "no patient 999" in missing.output
