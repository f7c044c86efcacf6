"""The ``prolo`` command: serve, database, demo data, users and tokens.

Every command owns its transaction. Failures print one line saying what is wrong
and how to fix it, and exit non-zero; nothing is half-written.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from prolo.db import DatabaseNotReady, check_ready, create_db_engine, make_sessionmaker
from prolo.errors import AppError
from prolo.settings import Settings

app = typer.Typer(help="prolo: clinical platform for prolotherapy practices.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema: migrate and inspect.", no_args_is_help=True)
user_app = typer.Typer(help="User accounts.", no_args_is_help=True)
token_app = typer.Typer(help="API bearer tokens.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(audit_app, name="audit")

console = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one line to stderr and return the Exit to raise."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def load_settings() -> Settings:
    """Settings from the environment, or one clear line when they are wrong."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "settings"
        message = first["msg"].removeprefix("Value error, ")
        raise fail(f"{message} (setting: {field})") from None


@contextmanager
def unit_of_work(*, ready: bool = True) -> Iterator[Session]:
    """A session in one transaction on a checked database; errors become one line."""
    settings = load_settings()
    try:
        engine = create_db_engine(settings)
        if ready:
            check_ready(engine)
    except DatabaseNotReady as exc:
        raise fail(str(exc)) from None
    factory = make_sessionmaker(engine)
    try:
        with factory() as session, session.begin():
            yield session
    except AppError as exc:
        field = f" ({exc.field})" if exc.field else ""
        raise fail(f"{exc.detail}{field}") from None
    except IntegrityError as exc:
        raise fail(f"the database refused the change: {str(exc.orig).splitlines()[0]}") from None
    except OperationalError as exc:
        raise fail(f"database error: {str(exc.orig).splitlines()[0]}") from None
    finally:
        engine.dispose()


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Create or migrate the schema to the newest revision (or REVISION)."""
    from prolo.migrate import upgrade

    settings = load_settings()
    try:
        engine = create_db_engine(settings)
        upgrade(engine, revision)
    except DatabaseNotReady as exc:
        raise fail(str(exc)) from None
    except OperationalError as exc:
        raise fail(
            f"cannot migrate the database: {str(exc.orig).splitlines()[0]} "
            "(is the server running and PROLO_DATABASE_URL right?)"
        ) from None
    console.print(f"database at revision [bold]{check_ready(engine)}[/] ({settings.database_kind})")


@db_app.command("current")
def db_current() -> None:
    """Print the database's revision, or why it is not ready."""
    settings = load_settings()
    try:
        revision = check_ready(create_db_engine(settings))
    except DatabaseNotReady as exc:
        raise fail(str(exc)) from None
    console.print(revision)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to bind (PROLO_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (PROLO_PORT)")] = None,
    workers: Annotated[int, typer.Option(min=1, help="worker processes")] = 1,
) -> None:
    """Serve the web app and API (uvicorn)."""
    import uvicorn

    settings = load_settings()
    try:
        check_ready(create_db_engine(settings))
    except DatabaseNotReady as exc:
        raise fail(str(exc)) from None
    uvicorn.run(
        "prolo.asgi:app",
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level=settings.log_level.lower(),
        access_log=False,  # URLs may carry search terms; the audit log records access
        proxy_headers=True,
    )


@app.command()
def demo(
    patients: Annotated[int, typer.Option(min=1, max=5000, help="synthetic patients")] = 60,
    seed: Annotated[int, typer.Option(help="random seed")] = 7,
) -> None:
    """Load the demo clinic (synthetic patients and one login per role), once."""
    from prolo.demo import DEMO_PASSWORD, demo_exists, load_demo

    with unit_of_work() as session:
        if demo_exists(session):
            console.print("The demo clinic is already loaded.")
            accounts = None
        else:
            accounts = load_demo(session, patients=patients, seed=seed)
    if accounts:
        console.print(f"Loaded the demo clinic with {patients} synthetic patients.")
    console.print("Demo logins (password for all: [bold]" + DEMO_PASSWORD + "[/]):")
    for role in ("admin", "clinician", "frontdesk", "patient", "researcher"):
        console.print(f"  {role:<11} {role}@demo.prolo.example.org")


@user_app.command("create")
def user_create(
    email: Annotated[str, typer.Option(help="login email")],
    role: Annotated[str, typer.Option(help="admin, clinician, front_desk, patient, researcher")],
    name: Annotated[str, typer.Option(help="display name")],
    clinic_id: Annotated[int, typer.Option(help="clinic the user belongs to")] = 1,
    patient_id: Annotated[int | None, typer.Option(help="patient record (role patient)")] = None,
    practitioner_id: Annotated[int | None, typer.Option(help="practitioner record")] = None,
    password: Annotated[
        str | None, typer.Option(help="password; prompted for when omitted", hide_input=True)
    ] = None,
) -> None:
    """Create a user account."""
    from prolo.clinic.models import Clinic
    from prolo.security import service

    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with unit_of_work() as session:
        if session.get(Clinic, clinic_id) is None:
            raise fail(f"there is no clinic {clinic_id} (load the demo or create a clinic first)")
        user = service.create_user(
            session=session,
            clinic_id=clinic_id,
            email=email,
            password=password,
            role=role,
            display_name=name,
            patient_id=patient_id,
            practitioner_id=practitioner_id,
        )
        user_id = user.id
    console.print(f"created user {user_id} ({role})")


@token_app.command("create")
def token_create(
    email: Annotated[str, typer.Option(help="the user the token acts as")],
    name: Annotated[str, typer.Option(help="what the token is for")] = "cli",
    scopes: Annotated[
        str, typer.Option(help="space- or comma-separated scopes (read, write, fhir, bulk, admin)")
    ] = "read write fhir",
    days: Annotated[int, typer.Option(help="days until it expires")] = 30,
) -> None:
    """Create an API bearer token and print it (it is shown only once)."""
    from sqlalchemy import select

    from prolo.security import service
    from prolo.security.models import User

    wanted = tuple(s for s in scopes.replace(",", " ").split() if s)
    with unit_of_work() as session:
        user = session.scalar(select(User).where(User.email == service.normalize_email(email)))
        if user is None:
            raise fail(f"no user with email {email}")
        secret, _ = service.create_api_token(
            session=session, user_id=user.id, name=name, scopes=wanted, days=days
        )
    print(secret)


@audit_app.command("verify")
def audit_verify(
    workers: Annotated[
        int, typer.Option(min=1, help="processes for a log of a million entries or more")
    ] = 1,
) -> None:
    """Check the audit chain; exit 1 naming the first bad entry."""
    from prolo.security.audit import verify_database

    with unit_of_work() as session:
        # Workers each check a slice on their own connection; this transaction wrote nothing.
        checked, broken = verify_database(session, workers=workers)
    if broken is not None:
        raise fail(f"audit chain broken at entry {broken.entry_id}: {broken.reason}")
    console.print(f"audit chain intact: {checked} entries")


def _register_domain_commands() -> None:
    """Each domain may add sub-commands in its ``cli.py`` with ``register(app)``."""
    from prolo.discovery import domain_modules

    for module in domain_modules("cli"):
        if module.__name__.endswith(".cli"):
            module.register(app)


_register_domain_commands()


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
