"""``prolo import-fhir FILE_OR_DIR``: import FHIR Bundles and NDJSON with a progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add ``import-fhir`` to the ``prolo`` command."""

    @app.command("import-fhir")
    def import_fhir(
        path: Annotated[
            Path, typer.Argument(exists=True, help="a Bundle or NDJSON file, or a directory")
        ],
        as_user: Annotated[
            str | None,
            typer.Option(
                "--as", help="email of the admin or clinician the import acts as (their clinic)"
            ),
        ] = None,
        source: Annotated[
            str, typer.Option(help="name of the system the files come from (for re-imports)")
        ] = "default",
        quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
        validate: Annotated[
            bool,
            typer.Option(
                help="check each resource to be written against FHIR's structure rules "
                "(R4B models) first, and report the ones that break them"
            ),
        ] = False,
    ) -> None:
        """Import patients, diagnoses, allergies, medications and more from FHIR files.

        Resources prolo has no place for are counted and skipped; resources that do
        not fit (a missing birth date, an unknown code) are reported with the reason.
        Importing the same files again changes nothing.
        """
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
        from rich.table import Table
        from sqlalchemy import select

        from prolo.cli import console, fail, load_settings
        from prolo.db import DatabaseNotReady, check_ready, create_db_engine, make_sessionmaker
        from prolo.fhir.importer import Importer
        from prolo.security.models import User
        from prolo.security.principal import Principal

        settings = load_settings()
        try:
            engine = create_db_engine(settings)
            check_ready(engine)
        except DatabaseNotReady as exc:
            raise fail(str(exc)) from None
        factory = make_sessionmaker(engine)
        with factory() as session:
            query = select(User).where(User.active.is_(True))
            if as_user:
                query = query.where(User.email == as_user.strip().lower())
            else:
                query = query.where(User.role == "admin")
            users = session.scalars(query.order_by(User.id).limit(2)).all()
        if not users:
            raise fail(
                f"no active user {as_user}" if as_user else "no admin account: pass --as EMAIL"
            )
        if len(users) > 1 and not as_user:
            raise fail("more than one admin account: pass --as EMAIL")
        user = users[0]
        if user.role not in ("admin", "clinician"):
            raise fail("the import must act as an admin or a clinician")
        principal = Principal(
            user_id=user.id,
            role=user.role,
            clinic_id=user.clinic_id,
            display_name=user.display_name,
            practitioner_id=user.practitioner_id,
            via="cli",
        )
        with Progress(
            TextColumn("[bold]importing[/]"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeRemainingColumn(),
            console=console,
            disable=quiet,
        ) as bar:
            task = bar.add_task("import", total=1)

            def tick(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            importer = Importer(factory, principal, source=source, progress=tick, validate=validate)
            report = importer.run(path)
        engine.dispose()

        table = Table(title=f"{report.files} file(s), {report.seen} resources")
        for column in ("resource type", "created", "already there", "failed", "not imported"):
            table.add_column(column, justify="left" if column == "resource type" else "right")
        kinds = sorted(
            set(report.created)
            | set(report.already)
            | set(report.failed)
            | set(report.not_imported)
        )
        for kind in kinds:
            table.add_row(
                kind,
                str(report.created[kind]),
                str(report.already[kind]),
                str(report.failed[kind]),
                str(report.not_imported[kind]),
            )
        console.print(table)
        if report.unknown:
            skipped = ", ".join(f"{k} {v}" for k, v in report.unknown.most_common())
            console.print(f"skipped (prolo has no place for these types): {skipped}")
        if report.not_imported:
            console.print(
                "not imported: prolo serves these types but computes or documents them itself"
            )
        if report.reasons:
            console.print("[bold]could not map:[/]")
            for reason, count in report.reasons.most_common(20):
                console.print(f"  {count:>6}  {reason}", highlight=False)
            if len(report.reasons) > 20:
                console.print(f"  ... and {len(report.reasons) - 20} more kinds of problem")
