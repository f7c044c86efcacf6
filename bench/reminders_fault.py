"""Fault benchmark: SIGKILL the reminder worker at random moments; count lost and duplicate mail.

Run: .venv/bin/python bench/reminders_fault.py [--database-url sqlite:////tmp/fault.db]
     [--reminders 200 --kills 60 --seed 1 --lease 1.0 --smtp-delay 0.02]

Builds a fresh database with ``--reminders`` appointments whose reminders are all due
now, starts a real SMTP server on loopback (aiosmtpd) and ``--workers`` workers
(``prolo worker`` child processes) side by side; then, round after round, it waits
until mail is going out, lets a random moment pass and kills one worker, chosen at
random, with SIGKILL, starting a replacement. After the last kill the workers drain
the outbox. Every reminder must arrive at least once (checked by Message-ID); a duplicate can
only come from a kill between the mail server accepting a message and the worker
recording that, and the script prints how many there were, next to the kills that
could have caused one.

The in-suite version (tests/notify/test_fault.py) runs the same harness with a few
kills on both databases.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: make tests.notify.smtp importable

from tests.notify.smtp import Inbox, smtp_server  # noqa: E402

from prolo.clinic.models import Clinic, Practitioner, Room  # noqa: E402
from prolo.db import create_db_engine, make_sessionmaker, utcnow  # noqa: E402
from prolo.migrate import upgrade  # noqa: E402
from prolo.notify import outbox  # noqa: E402
from prolo.notify.models import OutboxJob  # noqa: E402
from prolo.patients.models import Patient  # noqa: E402
from prolo.scheduling.models import Appointment  # noqa: E402
from prolo.settings import Settings  # noqa: E402

MAIL_FROM = "reminders@fault.example.org"
WORKER = "from prolo.cli import app; app()"


@dataclass
class FaultReport:
    """What happened: every count a reader needs to judge the run."""

    reminders: int
    kills: int
    kills_while_sending: int
    received: int
    distinct: int
    lost: int
    duplicates: int
    not_sent: int
    seconds: float

    def lines(self) -> list[str]:
        return [
            f"reminders due            {self.reminders}",
            f"SIGKILLs                 {self.kills} ({self.kills_while_sending} while sending)",
            f"messages received        {self.received}",
            f"distinct Message-IDs     {self.distinct}",
            f"lost (never arrived)     {self.lost}",
            f"duplicates               {self.duplicates}"
            f" ({self.duplicates / max(self.kills, 1):.2f} per kill)",
            f"jobs not recorded sent   {self.not_sent}",
            f"time                     {self.seconds:.1f} s",
        ]


def fresh_database(url: str) -> None:
    """Create (PostgreSQL: drop and create) the database at ``url`` and migrate it."""
    parsed = make_url(url)
    if url.startswith("sqlite"):
        path = Path(parsed.database or "")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        admin = create_engine(
            parsed.set(drivername="postgresql+psycopg", database="postgres"),
            isolation_level="AUTOCOMMIT",
        )
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
        admin.dispose()
    engine = create_db_engine(Settings(env="test", database_url=url))
    upgrade(engine)
    engine.dispose()


def seed_reminders(url: str, count: int) -> list[str]:
    """``count`` booked visits an hour from now, each with one reminder due now.

    Each visit has its own patient, practitioner and room, so no booking rule or
    constraint can object. Returns the Message-ID left parts of the jobs.
    """
    engine = create_db_engine(Settings(env="test", database_url=url))
    factory = make_sessionmaker(engine)
    now = utcnow()
    with factory() as session, session.begin():
        clinic = Clinic(name="Fault Clinic", timezone="America/New_York")
        session.add(clinic)
        session.flush()
        for i in range(count):
            patient = Patient(
                clinic_id=clinic.id,
                mrn=f"F{i:06d}",
                given_name="Fault",
                family_name=f"Patient{i}",
                birth_date=dt.date(1970, 1, 1),
                sex="female",
                email=f"patient{i}@fault.example.org",
            )
            practitioner = Practitioner(clinic_id=clinic.id, given_name="Pat", family_name=f"D{i}")
            room = Room(clinic_id=clinic.id, name=f"Room {i}")
            session.add_all([patient, practitioner, room])
            session.flush()
            starts = now + dt.timedelta(hours=1, minutes=i % 60)
            appointment = Appointment(
                clinic_id=clinic.id,
                patient_id=patient.id,
                practitioner_id=practitioner.id,
                room_id=room.id,
                kind="injection",
                status="booked",
                starts_at=starts,
                ends_at=starts + dt.timedelta(minutes=30),
            )
            session.add(appointment)
            session.flush()
            outbox.enqueue_appointment_reminders(session=session, appointment=appointment, now=now)
    with factory() as session:
        ids = list(session.scalars(select(OutboxJob.message_id)))
    engine.dispose()
    return ids


def worker_process(url: str, port: int, lease: float) -> None:
    """A worker child (forkserver launcher): the same loop as ``prolo worker``, forever."""
    import threading

    from prolo.notify.worker import Worker, WorkerConfig

    settings = Settings(
        env="test", database_url=url, smtp_port=port, mail_from=MAIL_FROM, log_level="WARNING"
    )
    engine = create_db_engine(settings)
    config = WorkerConfig(
        lease=dt.timedelta(seconds=lease), batch=3, poll_seconds=0.05, sweep_seconds=0
    )
    Worker(make_sessionmaker(engine), settings=settings, config=config).run(threading.Event())


class _Forked:
    """A worker started from a forkserver that already imported prolo (fast to start)."""

    def __init__(self, ctx: multiprocessing.context.ForkServerContext, *args: object) -> None:
        self.process = ctx.Process(target=worker_process, args=args, daemon=True)
        self.process.start()

    def poll(self) -> int | None:
        return self.process.exitcode

    def send_signal(self, signum: int) -> None:
        if self.process.pid is not None:
            os.kill(self.process.pid, signum)

    def wait(self, timeout: float | None = None) -> None:
        self.process.join(timeout)
        if self.process.exitcode is None:
            raise subprocess.TimeoutExpired("worker", timeout or 0)
        self.process.close()

    def kill(self) -> None:
        self.process.kill()


def _start_cli_worker(url: str, port: int, lease: float) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PROLO_DATABASE_URL": url,
        "PROLO_ENV": "test",
        "PROLO_SMTP_HOST": "127.0.0.1",
        "PROLO_SMTP_PORT": str(port),
        "PROLO_MAIL_FROM": MAIL_FROM,
        "PROLO_LOG_LEVEL": "WARNING",
    }
    args = [sys.executable, "-c", WORKER, "worker", "--lease-seconds", str(lease)]
    args += ["--poll-seconds", "0.05", "--batch", "3", "--sweep-seconds", "0"]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _open_jobs(url: str) -> int:
    engine = create_db_engine(Settings(env="test", database_url=url))
    with Session(engine) as session:
        n = session.scalar(
            select(OutboxJob.id).where(OutboxJob.status.in_(outbox.OPEN_STATUSES)).limit(1)
        )
    engine.dispose()
    return 0 if n is None else 1


def _sent_count(url: str) -> tuple[int, int]:
    engine = create_db_engine(Settings(env="test", database_url=url))
    with Session(engine) as session:
        rows = session.execute(select(OutboxJob.status)).scalars().all()
    engine.dispose()
    counts = Counter(rows)
    return counts["sent"], len(rows)


def run(
    url: str,
    *,
    reminders: int,
    kills: int,
    seed: int,
    lease: float = 1.0,
    smtp_delay: float = 0.02,
    max_wait: float = 8.0,
    deadline: float = 120.0,
    launcher: str = "cli",
    workers: int = 2,
) -> FaultReport:
    """Kill ``kills`` workers at random moments, then drain; report lost and duplicates.

    ``launcher`` is ``cli`` (each worker is a ``prolo worker`` process) or ``fork``
    (each worker is forked from a forkserver that preloaded prolo: the same worker loop,
    started in milliseconds instead of seconds, for the in-suite test).
    """
    rng = random.Random(seed)
    started = time.monotonic()
    fresh_database(url)
    expected = seed_reminders(url, reminders)
    if launcher == "fork":
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["prolo.notify.worker", "bench.reminders_fault"])

        def start(*args: object) -> _Forked | subprocess.Popen[bytes]:
            return _Forked(ctx, *args)
    else:

        def start(*args: object) -> _Forked | subprocess.Popen[bytes]:
            return _start_cli_worker(*args)  # type: ignore[arg-type]

    with smtp_server(delay=smtp_delay) as (inbox, port):
        kills_while_sending = 0
        # ``workers`` run side by side (they must never take the same job); each round
        # one of them, chosen at random, is killed and replaced.
        pool = [start(url, port, lease) for _ in range(workers)]
        for _ in range(kills):
            before = len(inbox.messages)
            waited = time.monotonic()
            # Wait until mail is going out (or the wait is over), then a random moment.
            while len(inbox.messages) == before and time.monotonic() - waited < max_wait:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.15))
            if len(inbox.messages) > before:
                kills_while_sending += 1
            victim = pool.pop(rng.randrange(len(pool)))
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            pool.append(start(url, port, lease))
        limit = time.monotonic() + deadline
        while _open_jobs(url) and time.monotonic() < limit:
            time.sleep(0.1)
        for worker in pool:
            worker.send_signal(signal.SIGTERM)
        for worker in pool:
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        received = _received_ids(inbox)
    sent, _total = _sent_count(url)
    counts = Counter(received)
    wanted = {f"<{mid}@{MAIL_FROM.rpartition('@')[2]}>" for mid in expected}
    return FaultReport(
        reminders=len(expected),
        kills=kills,
        kills_while_sending=kills_while_sending,
        received=len(received),
        distinct=len(counts),
        lost=len(wanted - set(counts)),
        duplicates=len(received) - len(counts),
        not_sent=len(expected) - sent,
        seconds=time.monotonic() - started,
    )


def _received_ids(inbox: Inbox) -> list[str]:
    return inbox.message_ids()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="sqlite:////tmp/prolo-reminders-fault.db")
    parser.add_argument("--reminders", type=int, default=200)
    parser.add_argument("--kills", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--smtp-delay", type=float, default=0.02)
    parser.add_argument("--launcher", choices=("cli", "fork"), default="cli")
    parser.add_argument("--workers", type=int, default=2, help="workers running at once")
    args = parser.parse_args()
    report = run(
        args.database_url,
        reminders=args.reminders,
        kills=args.kills,
        seed=args.seed,
        lease=args.lease,
        smtp_delay=args.smtp_delay,
        deadline=600,
        launcher=args.launcher,
        workers=args.workers,
    )
    print(f"database                 {make_url(args.database_url).get_backend_name()}")
    for line in report.lines():
        print(line)
    if report.lost or report.not_sent:
        sys.exit(1)


if __name__ == "__main__":
    main()
