"""Crash check: every acknowledged write survives a SIGKILL at a random moment.

A writer process registers patients through the app's own service layer
(``register_patient``, which writes the patient row and its audit entry in one
transaction) and prints each patient's id and MRN only after the commit returned:
that line is the acknowledgement. The harness kills the writer with SIGKILL at a
random moment, reopens the database as a restarted app would (SQLite replays its
WAL), and checks that

- the database passes ``PRAGMA integrity_check`` (SQLite),
- every acknowledged patient is there with the MRN it was acknowledged with,
- every stored patient has its ``patient.create`` audit entry (row and entry are
  atomic), and the audit chain verifies, head included,

then starts the next writer on the same database. SIGKILL tests a crashed process:
what it wrote to the operating system survives it. ``synchronous=FULL`` (SQLite) and
``synchronous_commit=on`` (PostgreSQL) are what carry the same guarantee across a
power cut, which needs the machine itself to go down; see ``docs/deploy.md``.

Run it against a scratch database (it adds patients to a clinic of its own):
``python -m prolo.ops.crashcheck --database-url sqlite:////tmp/crash.db --kills 50``.
``bench/crash.py`` is the long run; ``tests/security/test_crash.py`` the bounded one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, TextIO

from sqlalchemy import select, text

from prolo.db import create_db_engine, make_sessionmaker, unit_of_work
from prolo.settings import Settings

CLINIC_NAME = "Crash check clinic"


@dataclass
class CrashReport:
    """What the kills left behind, added up over all cycles."""

    kills: int = 0
    acknowledged: int = 0
    stored: int = 0  # patients in the database at the end (acknowledged or not)
    lost: list[int] = field(default_factory=list)  # acknowledged but missing or changed
    unaudited: list[int] = field(default_factory=list)  # stored without their audit entry
    problems: list[str] = field(default_factory=list)  # integrity or chain failures
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.unaudited or self.problems)


def prepare(database_url: str) -> tuple[int, int]:
    """Migrate the database and make the check's clinic and front-desk login, once."""
    from prolo.clinic.models import Clinic
    from prolo.migrate import upgrade
    from prolo.security.models import User
    from prolo.security.service import create_user

    engine = create_db_engine(Settings(env="test", database_url=database_url))
    try:
        upgrade(engine)
        with unit_of_work(make_sessionmaker(engine)) as session:
            clinic = session.scalar(select(Clinic).where(Clinic.name == CLINIC_NAME))
            if clinic is None:
                clinic = Clinic(name=CLINIC_NAME, timezone="UTC")
                session.add(clinic)
                session.flush()
            email = f"crash-check-{clinic.id}@clinic.invalid"
            user = session.scalar(select(User).where(User.email == email))
            if user is None:
                user = create_user(
                    session=session,
                    clinic_id=clinic.id,
                    email=email,
                    password=os.urandom(24).hex(),
                    role="front_desk",
                    display_name="Crash check",
                )
            return clinic.id, user.id
    finally:
        engine.dispose()


def write_until_killed(
    database_url: str, *, clinic_id: int, user_id: int, seed: int, out: TextIO | None = None
) -> None:
    """Register patients forever; write ``id mrn`` for each, after its commit returned."""
    import prolo.models  # noqa: F401  (every table, so the ORM can order its inserts)
    from prolo.patients.schemas import PatientIn
    from prolo.patients.service import register_patient
    from prolo.security.principal import Principal

    engine = create_db_engine(Settings(env="test", database_url=database_url))
    factory = make_sessionmaker(engine)
    sqlite = engine.dialect.name == "sqlite"
    principal = Principal(
        user_id=user_id, role="front_desk", clinic_id=clinic_id, display_name="Crash check"
    )
    rng = random.Random(seed)  # noqa: S311 - varies the work, no secret
    out = out or sys.stdout
    out.write("ready\n")
    out.flush()
    n = 0
    while True:
        acknowledged = []
        with factory() as session, session.begin():
            if sqlite:  # a write transaction takes the lock up front, as the app's do
                session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
            # Mostly one registration per transaction, sometimes several at once.
            for _ in range(rng.choice((1, 1, 1, 4))):
                n += 1
                mrn = f"CC{seed}-{n}"
                patient = register_patient(
                    session=session,
                    principal=principal,
                    data=PatientIn(
                        mrn=mrn,
                        given_name="Crash",
                        family_name=f"Check {n}",
                        birth_date=dt.date(1980, 1, 1) + dt.timedelta(days=n % 9000),
                        sex="unknown",
                    ),
                )
                acknowledged.append(f"{patient.id} {mrn}\n")
        out.write("".join(acknowledged))  # only now: the commit has returned
        out.flush()


def check(database_url: str, *, clinic_id: int, acknowledged: dict[int, str]) -> CrashReport:
    """Reopen the database as a restarted app would and check what survived."""
    from prolo.patients.models import Patient
    from prolo.security.audit import verify_database

    report = CrashReport(acknowledged=len(acknowledged))
    settings = Settings(env="test", database_url=database_url)
    if settings.sqlite_path is not None:
        raw = sqlite3.connect(settings.sqlite_path)  # opening it replays the WAL
        try:
            result = [r[0] for r in raw.execute("PRAGMA integrity_check")]
        except sqlite3.DatabaseError as exc:
            result = [str(exc)]
        finally:
            raw.close()
        if result != ["ok"]:
            report.problems.append(f"integrity_check: {result[0]}")
            return report
    engine = create_db_engine(settings)
    try:
        with make_sessionmaker(engine)() as session, session.begin():
            rows = session.execute(
                select(Patient.id, Patient.mrn).where(Patient.clinic_id == clinic_id)
            )
            stored: dict[int, str] = {pid: mrn for pid, mrn in rows}  # noqa: C416
            audited = {
                int(entity_id)
                for entity_id in session.scalars(
                    text(
                        "SELECT entity_id FROM audit_event "
                        "WHERE event = 'patient.create' AND clinic_id = :c"
                    ),
                    {"c": clinic_id},
                )
            }
            checked, broken = verify_database(session)
    finally:
        engine.dispose()
    report.stored = len(stored)
    report.lost = sorted(pid for pid, mrn in acknowledged.items() if stored.get(pid) != mrn)
    report.unaudited = sorted(set(stored) - audited)
    if broken is not None:
        report.problems.append(
            f"audit chain broken at entry {broken.entry_id} of {checked}: {broken.reason}"
        )
    return report


def _start_writer(
    database_url: str, *, clinic_id: int, user_id: int, seed: int, method: str
) -> tuple[int, IO[str]]:
    """A writer process and the pipe it acknowledges on.

    ``fork`` starts it in milliseconds from this process's imports (this process holds
    no open connection at that moment); ``spawn`` starts a fresh interpreter, as a
    restarted service would, at the price of importing prolo each time.
    """
    if method == "spawn":
        args = [sys.executable, "-m", "prolo.ops.crashcheck", "writer"]
        args += ["--database-url", database_url, "--seed", str(seed)]
        args += ["--clinic-id", str(clinic_id), "--user-id", str(user_id)]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)  # noqa: S603
        if proc.stdout is None:  # pragma: no cover - stdout=PIPE always gives one
            raise RuntimeError("no pipe to the writer")
        return proc.pid, proc.stdout
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns, and is killed
        os.close(read_end)
        try:
            with os.fdopen(write_end, "w") as out:
                write_until_killed(
                    database_url, clinic_id=clinic_id, user_id=user_id, seed=seed, out=out
                )
        finally:
            os._exit(1)
    os.close(write_end)
    return pid, os.fdopen(read_end)


def crash_cycles(
    database_url: str,
    *,
    kills: int,
    seed: int = 1,
    max_delay: float = 0.4,
    method: str = "fork",
    on_cycle: Callable[[int, CrashReport], None] | None = None,
) -> CrashReport:
    """Start a writer, SIGKILL it after a random delay, check; ``kills`` times."""
    if method == "fork":  # import what the writer needs once, not in every child
        import prolo.models  # noqa: F401
        import prolo.patients.schemas  # noqa: F401
        import prolo.patients.service  # noqa: F401
        import prolo.security.principal  # noqa: F401
    clinic_id, user_id = prepare(database_url)
    rng = random.Random(seed)  # noqa: S311 - picks kill moments, no secret
    acknowledged: dict[int, str] = {}
    report = CrashReport()
    start = time.perf_counter()
    for cycle in range(kills):
        pid, stream = _start_writer(
            database_url,
            clinic_id=clinic_id,
            user_id=user_id,
            seed=seed * 100_000 + cycle,
            method=method,
        )
        try:
            if stream.readline().strip() != "ready":
                raise RuntimeError("the crash-check writer did not start")
            time.sleep(rng.uniform(0, max_delay))
        finally:
            os.kill(pid, signal.SIGKILL)
        # Every whole line that reached the pipe before the kill was acknowledged; a
        # line cut off by the kill was not (the commit may or may not be there).
        for line in stream.read().split("\n")[:-1]:
            patient_id, mrn = line.split()
            acknowledged[int(patient_id)] = mrn
        stream.close()
        os.waitpid(pid, 0)
        report = check(database_url, clinic_id=clinic_id, acknowledged=acknowledged)
        report.kills = cycle + 1
        report.seconds = time.perf_counter() - start
        if on_cycle is not None:
            on_cycle(cycle, report)
        if not report.ok:
            break
    return report


def main() -> None:  # pragma: no cover - exercised through subprocesses and bench/crash.py
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=("run", "writer"), default="run")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-delay", type=float, default=0.4)
    parser.add_argument("--clinic-id", type=int)
    parser.add_argument("--user-id", type=int)
    parser.add_argument("--start", choices=("fork", "spawn"), default="fork")
    args = parser.parse_args()
    if args.mode == "writer":
        write_until_killed(
            args.database_url, clinic_id=args.clinic_id, user_id=args.user_id, seed=args.seed
        )
        return
    report = crash_cycles(
        args.database_url,
        kills=args.kills,
        seed=args.seed,
        max_delay=args.max_delay,
        method=args.start,
    )
    sys.stdout.write(
        f"{report.kills} kills, {report.acknowledged} acknowledged writes, "
        f"{len(report.lost)} lost, {len(report.unaudited)} without audit entry, "
        f"problems: {report.problems or 'none'} ({report.seconds:.1f} s)\n"
    )
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":  # pragma: no cover
    main()
