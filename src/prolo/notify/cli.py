"""``prolo worker``: run the reminder worker until SIGTERM or Ctrl-C."""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
from typing import Annotated, Any

import typer


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def worker(
    once: Annotated[bool, typer.Option(help="run one cycle and exit")] = False,
    lease_seconds: Annotated[
        float, typer.Option(min=1, help="how long a claimed job is held before others retry it")
    ] = 300,
    poll_seconds: Annotated[
        float, typer.Option(min=0.01, help="pause between polls when nothing is due")
    ] = 5,
    batch: Annotated[int, typer.Option(min=1, max=1000, help="jobs claimed at a time")] = 10,
    sweep_seconds: Annotated[
        float,
        typer.Option(min=0, help="how often to enqueue questionnaire reminders (0: never)"),
    ] = 900,
) -> None:
    """Send due reminders (email with iCalendar) from the outbox; safe to run several."""
    # Imported here, not from prolo.cli: a worker starts without loading every domain.
    from pydantic import ValidationError

    from prolo.db import DatabaseNotReady, check_ready, create_db_engine, make_sessionmaker
    from prolo.notify.worker import Worker, WorkerConfig
    from prolo.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _fail(first["msg"].removeprefix("Value error, ")) from None
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s")
    try:
        engine = create_db_engine(settings)
        check_ready(engine)
    except DatabaseNotReady as exc:
        raise _fail(str(exc)) from None
    config = WorkerConfig(
        lease=dt.timedelta(seconds=lease_seconds),
        batch=batch,
        poll_seconds=poll_seconds,
        sweep_seconds=sweep_seconds,
    )
    runner = Worker(make_sessionmaker(engine), settings=settings, config=config)
    if once:
        added = runner.sweep() if sweep_seconds else 0
        stats = runner.run_once()
        typer.echo(
            f"questionnaire reminders enqueued {added}; claimed {stats.claimed}, "
            f"sent {stats.sent}, skipped {stats.skipped}, "
            f"cancelled {stats.cancelled}, retry later {stats.retried}, failed {stats.failed}"
        )
        engine.dispose()
        return
    stop = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        runner.run(stop)
    finally:
        engine.dispose()


def register(app: typer.Typer) -> None:
    """Add ``prolo worker``."""
    app.command("worker")(worker)
