"""`prolo synth`, `prolo report`, `prolo export` and `prolo snapshot`, run as a user would."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from typer.testing import CliRunner

from prolo.cli import app

runner = CliRunner()


def test_synth_report_snapshot_and_export(tmp_path: Path) -> None:
    env = {"PROLO_DATABASE_URL": f"sqlite:///{tmp_path / 'registry.db'}"}
    assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    made = runner.invoke(
        app, ["synth", "--patients", "120", "--clinics", "2", "--batch", "50"], env=env
    )
    assert made.exit_code == 0, made.output
    assert "120 patient" in made.output and "2 clinic(s)" in made.output

    result = runner.invoke(app, ["report", "--clinic-id", "2"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["courses"]["courses"] == 60 and report["selection"]["clinic_id"] == 2
    assert "NaN" not in result.output

    snapshot = tmp_path / "snap"
    assert runner.invoke(app, ["snapshot", str(snapshot)], env=env).exit_code == 0
    from_snapshot = runner.invoke(
        app, ["report", "--snapshot", str(snapshot), "--clinic-id", "2", "--as-of", report["as_of"]]
    )
    assert from_snapshot.exit_code == 0, from_snapshot.output
    again = json.loads(from_snapshot.output)
    assert again["instruments"] == report["instruments"]

    out = tmp_path / "export.zip"
    exported = runner.invoke(app, ["export", "--out", str(out), "--clinic-id", "1"], env=env)
    assert exported.exit_code == 0, exported.output
    with zipfile.ZipFile(out) as zf:
        assert "records.csv" in zf.namelist()

    bad = runner.invoke(app, ["report", "--as-of", "yesterday"], env=env)
    assert bad.exit_code == 1 and "must be a date" in bad.output
    missing = runner.invoke(app, ["report", "--snapshot", str(tmp_path / "nope")])
    assert missing.exit_code == 1 and "not a registry snapshot" in missing.output
