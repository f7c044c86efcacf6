"""The `prolo` command, run as a user would, on a fresh SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from prolo.cli import app

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"PROLO_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "db", "demo", "user", "token", "audit"):
        assert command in result.output


def test_commands_refuse_an_unmigrated_database(env: dict[str, str]) -> None:
    result = runner.invoke(app, ["demo"], env=env)
    assert result.exit_code == 1
    assert "run `prolo db upgrade`" in result.output


def test_a_wrong_database_url_is_one_clear_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["db", "upgrade"], env={"PROLO_DATABASE_URL": "mysql://x/y"})
    assert result.exit_code == 1
    assert "PROLO_DATABASE_URL must start with" in result.output
    assert "Traceback" not in result.output


def test_an_unreachable_postgres_is_one_clear_line() -> None:
    url = "postgresql://nobody@127.0.0.1:1/none"
    result = runner.invoke(app, ["db", "upgrade"], env={"PROLO_DATABASE_URL": url})
    assert result.exit_code == 1
    assert "cannot" in result.output and "Traceback" not in result.output


def test_upgrade_demo_user_token_and_audit(env: dict[str, str], tmp_path: Path) -> None:
    assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    result = runner.invoke(app, ["demo", "--patients", "12"], env=env)
    assert result.exit_code == 0, result.output
    assert "clinician@demo.prolo.example.org" in result.output
    # Loading twice does not duplicate the clinic.
    again = runner.invoke(app, ["demo"], env=env)
    assert again.exit_code == 0 and "already loaded" in again.output
    result = runner.invoke(
        app,
        [
            "user",
            "create",
            "--email",
            "new.doc@clinic.example.org",
            "--role",
            "clinician",
            "--name",
            "New Doc",
            "--password",
            "a-long-enough-secret",
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    weak = runner.invoke(
        app,
        [
            "user",
            "create",
            "--email",
            "weak@clinic.example.org",
            "--role",
            "clinician",
            "--name",
            "Weak",
            "--password",
            "short",
        ],
        env=env,
    )
    assert weak.exit_code == 1 and "password must be at least" in weak.output
    result = runner.invoke(
        app, ["token", "create", "--email", "new.doc@clinic.example.org"], env=env
    )
    assert result.exit_code == 0
    assert result.output.strip().startswith("prolo_")
    # The contract from outside: a token from `prolo token create` reads the FHIR API.
    from fastapi.testclient import TestClient

    from prolo.app import create_app
    from prolo.settings import Settings

    bearer = {"Authorization": f"Bearer {result.output.strip()}"}
    with TestClient(create_app(Settings(database_url=env["PROLO_DATABASE_URL"]))) as api:
        bundle = api.get("/fhir/Patient", params={"_count": 5}, headers=bearer)
        assert bundle.status_code == 200, bundle.text
        assert bundle.json()["resourceType"] == "Bundle"
        assert bundle.json()["type"] == "searchset"
        assert len(bundle.json()["entry"]) == 5
    result = runner.invoke(app, ["audit", "verify"], env=env)
    assert result.exit_code == 0 and "intact" in result.output
    engine = create_engine(env["PROLO_DATABASE_URL"])
    with engine.begin() as conn:
        # The fields are generated from the hashed entry: the entry is what gets edited.
        conn.execute(
            text(
                "UPDATE audit_event SET entry = replace(entry, '\"v\"', '\"edited\"') WHERE id = 2"
            )
        )
    engine.dispose()
    result = runner.invoke(app, ["audit", "verify"], env=env)
    assert result.exit_code == 1 and "entry 2" in result.output
