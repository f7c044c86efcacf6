"""``prolo synth``, ``prolo report``, ``prolo export`` and ``prolo snapshot``."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the outcomes registry's commands to the ``prolo`` command."""

    @app.command()
    def synth(
        patients: Annotated[
            int, typer.Option(min=1, max=5_000_000, help="synthetic patients")
        ] = 1000,
        clinics: Annotated[
            int, typer.Option(min=1, max=10_000, help="clinics to spread them over")
        ] = 1,
        seed: Annotated[int, typer.Option(help="random seed")] = 7,
        batch: Annotated[int, typer.Option(min=10, max=100_000, help="patients per batch")] = 2000,
        calendar: Annotated[
            bool, typer.Option(help="book sessions without clashes (slower; demo-sized data)")
        ] = False,
    ) -> None:
        """Write a synthetic registry (streamed in batches, with a progress bar)."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        from prolo.cli import console, unit_of_work
        from prolo.synth import SynthConfig, generate

        config = SynthConfig(
            patients=patients,
            clinics=clinics,
            seed=seed,
            batch=batch,
            calendar=calendar,
            clinic_name="Synthetic Registry Clinic",
        )
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("patients", total=patients)
            with unit_of_work() as session:
                summary = generate(
                    session, config, progress=lambda done: bar.update(task, completed=done)
                )
        counts = ", ".join(f"{n} {table}" for table, n in sorted(summary.counts.items()))
        console.print(f"wrote {counts} in {len(summary.clinic_ids)} clinic(s)")

    @app.command()
    def report(
        clinic_id: Annotated[
            int | None, typer.Option(help="clinic (default: every clinic)")
        ] = None,
        condition: Annotated[str | None, typer.Option(help="knowledge-base condition id")] = None,
        practitioner_id: Annotated[int | None, typer.Option(help="practitioner id")] = None,
        injectate: Annotated[str | None, typer.Option(help="injectate, as recorded")] = None,
        started_from: Annotated[
            str | None, typer.Option(help="courses started on or after (YYYY-MM-DD)")
        ] = None,
        started_to: Annotated[
            str | None, typer.Option(help="courses started on or before (YYYY-MM-DD)")
        ] = None,
        as_of: Annotated[
            str | None, typer.Option(help="report date (YYYY-MM-DD, default today)")
        ] = None,
        snapshot: Annotated[
            Path | None, typer.Option(help="read a Parquet snapshot instead of the database")
        ] = None,
    ) -> None:
        """Print a selection's outcome report as JSON."""
        from prolo.cli import fail, unit_of_work
        from prolo.outcomes import engine, service
        from prolo.outcomes.report import RegistryTables, Selection, build_report, instrument_rules

        def day(name: str, value: str | None) -> dt.date | None:
            if value is None:
                return None
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                raise fail(f"--{name} must be a date like 2026-01-31; got {value!r}") from None

        selection = Selection(
            clinic_id=clinic_id,
            condition_id=condition,
            practitioner_id=practitioner_id,
            injectate=injectate,
            started_from=day("started-from", started_from),
            started_to=day("started-to", started_to),
        )
        when = day("as-of", as_of) or dt.datetime.now(dt.UTC).date()
        if snapshot is not None:
            try:
                tables = RegistryTables.read_parquet(snapshot)
            except (OSError, ValueError) as exc:
                raise fail(str(exc)) from None
            rules = instrument_rules()
            result = build_report(
                engine.compute(tables, selection, as_of=when, rules=rules),
                selection=selection,
                as_of=when,
                rules=rules,
            )
            result["evidence"] = service.evidence_beside(result, selection)
        else:
            from prolo.security import audit

            with unit_of_work() as session:
                # One-shot: computed from the raw rows (a kept registry pays off only in a
                # process that serves many reports, like the web app).
                result = service.report_for(
                    session=session, selection=selection, as_of=when, kept=False
                )
                audit.record(
                    session,
                    audit.SYSTEM,
                    action="R",
                    event="outcomes.report",
                    entity_type="OutcomeReport",
                    detail=f"cli: {result['courses']['courses']} courses",
                )
        for entry in result.get("evidence", []):
            entry.pop("svg", None)
        typer.echo(json.dumps(result, indent=2, default=str))

    @app.command()
    def export(
        out: Annotated[Path, typer.Option(help="zip file to write")],
        clinic_id: Annotated[int, typer.Option(help="clinic to export")] = 1,
        format: Annotated[str, typer.Option(help="csv or parquet")] = "csv",
    ) -> None:
        """Write the de-identified research export (HIPAA Safe Harbor) as a zip."""
        from prolo.cli import console, fail, unit_of_work
        from prolo.outcomes.export import research_export
        from prolo.security import audit

        if format not in ("csv", "parquet"):
            raise fail("--format must be csv or parquet")
        with unit_of_work() as session:
            result = research_export(
                session=session,
                principal=None,
                clinic_id=clinic_id,
                fmt=format,
                actor=audit.Actor(None, "system", clinic_id),
            )
        out.write_bytes(result.content)
        console.print(f"wrote {result.records} de-identified records to {out}")

    @app.command()
    def snapshot(
        directory: Annotated[Path, typer.Argument(help="folder for the Parquet files")],
        clinic_id: Annotated[
            int | None, typer.Option(help="clinic (default: every clinic)")
        ] = None,
    ) -> None:
        """Write the registry tables as a Parquet snapshot for `prolo report --snapshot`."""
        from prolo.cli import console, unit_of_work
        from prolo.outcomes.service import load_registry

        with unit_of_work() as session:
            tables = load_registry(session=session, clinic_id=clinic_id)
        tables.write_parquet(directory)
        console.print(f"wrote {tables.courses.num_rows} courses to {directory}")
