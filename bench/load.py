"""Load benchmark: the running app under concurrent clients, against the framework's ceiling.

Run: .venv/bin/python bench/load.py [--postgres postgresql://root@127.0.0.1:5432/test
     --clients 32 --seconds 10 --workers 2 --port 8150]

Sets up a scratch PostgreSQL database (prolo_bench_load: migrated, the demo clinic,
patient logins with API tokens), starts the app with uvicorn (--workers processes) and,
with the same uvicorn settings, a bare FastAPI app with one JSON endpoint (the
ceiling). Then, for --seconds each, --clients concurrent keep-alive connections over
loopback drive:

  ceiling          GET /ceiling on the bare app (async def returning a dict)
  patient list     GET /api/patients?limit=50 as the clinician (the clinic's first page)
  questionnaire    POST /api/patients/{id}/responses as each patient (ODI, 10 items)
  booking          POST /api/appointments as front desk, each a distinct free slot

and then, unless --no-bound, the bound (bench/load_bound.py): the questionnaire
submission's writes alone on the same database, with no framework, per request and
with group commit; it shows how much of the gap to the target the hardware leaves.

It prints requests/s, p50/p95/p99 latency and errors for each, each path's share of
the ceiling, and whether the targets hold (questionnaire >= 30% of the ceiling, its
p99 < 50 ms, no errors). The client is a small asyncio HTTP/1.1 client (httpx costs
more CPU per request than the server does); it runs on the same machine, so the
ceiling is this machine's, client included.
"""

from __future__ import annotations

from fastapi import FastAPI

# The ceiling: imported by uvicorn's workers as load:ceiling_app, so nothing heavy above.
# FastAPI's telemetry off, as prolo runs it (prolo.app.NO_TELEMETRY), so the ceiling
# is not lowered by work the app does not do.
ceiling_app = FastAPI(
    openapi_url=None,
    docs_url=None,
    redoc_url=None,
    telemetry={
        "tracing": False,
        "metrics": False,
        "logs": False,
        "operation_spans": False,
        "auto_configure": False,
    },
)


@ceiling_app.get("/ceiling")
async def ceiling() -> dict[str, object]:
    return {"status": "ok", "items": [1, 2, 3]}


if __name__ == "__main__":
    import argparse
    import asyncio
    import datetime as dt
    import json
    import os
    import random
    import secrets
    import signal
    import subprocess
    import sys
    import time
    from collections.abc import Callable
    from dataclasses import dataclass, field
    from pathlib import Path

    import httpx
    from sqlalchemy import create_engine, select, text
    from sqlalchemy.engine import make_url

    BENCH = Path(__file__).resolve().parent
    Request = tuple[str, str, dict[str, str], bytes | None]

    @dataclass
    class Result:
        name: str
        latencies: list[float] = field(default_factory=list)
        errors: int = 0
        statuses: dict[int, int] = field(default_factory=dict)
        seconds: float = 0.0
        note: str = ""

        @property
        def rate(self) -> float:
            return len(self.latencies) / self.seconds if self.seconds else 0.0

        def pct(self, q: float) -> float:
            if not self.latencies:
                return float("nan")
            ordered = sorted(self.latencies)
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    class Connection:
        """One keep-alive HTTP/1.1 connection: just enough protocol for these requests."""

        def __init__(self, port: int) -> None:
            self.port = port
            self.reader: asyncio.StreamReader | None = None
            self.writer: asyncio.StreamWriter | None = None

        async def request(
            self, method: str, path: str, headers: dict[str, str], body: bytes | None
        ) -> tuple[int, bytes]:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            assert self.reader is not None
            lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
            lines += [f"{k}: {v}" for k, v in headers.items()]
            if body is not None:
                lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
            self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
            status_line = await self.reader.readline()
            if not status_line:
                raise ConnectionError("closed by the server")
            status = int(status_line.split()[1])
            length, close = 0, False
            while (line := await self.reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and b"close" in value.lower():
                    close = True
            data = await self.reader.readexactly(length)
            if close:
                self.close()
            return status, data

        def close(self) -> None:
            if self.writer is not None:
                self.writer.close()
            self.reader = self.writer = None

    async def drive(
        name: str,
        port: int,
        make: Callable[[int, int], Request | None],
        *,
        clients: int,
        seconds: float,
        warmup: float,
        ok: tuple[int, ...] = (200, 201),
    ) -> Result:
        result = Result(name)
        start = time.perf_counter()
        measure_from = start + warmup
        deadline = measure_from + seconds
        exhausted = False

        async def client(k: int) -> None:
            nonlocal exhausted
            conn = Connection(port)
            n = 0
            while (now := time.perf_counter()) < deadline:
                req = make(k, n)
                if req is None:
                    exhausted = True
                    break
                n += 1
                method, path, headers, body = req
                try:
                    status, _ = await conn.request(method, path, headers, body)
                except (ConnectionError, asyncio.IncompleteReadError, OSError):
                    conn.close()
                    status = 0
                done = time.perf_counter()
                if now >= measure_from:
                    result.statuses[status] = result.statuses.get(status, 0) + 1
                    if status in ok:
                        result.latencies.append(done - now)
                    else:
                        result.errors += 1
            conn.close()

        await asyncio.gather(*(client(k) for k in range(clients)))
        result.seconds = min(time.perf_counter(), deadline) - measure_from
        if exhausted:
            result.note = "ran out of prepared requests before the end"
        return result

    def fresh_postgres(url: str, name: str) -> str:
        admin = create_engine(
            make_url(url.replace("postgresql://", "postgresql+psycopg://", 1)),
            isolation_level="AUTOCOMMIT",
        )
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return make_url(url).set(database=name).render_as_string(hide_password=False)

    @dataclass
    class Fixture:
        clinician: str
        front_desk: str
        admin: str
        practitioner_ids: list[int]
        patients: list[tuple[int, str]]  # (patient id, token)
        all_patient_ids: list[int]
        clinic_id: int

    def prepare(url: str, *, patients: int, logins: int) -> Fixture:
        """Migrate, load the demo clinic and make the tokens the clients use."""
        from prolo.clinic.models import Practitioner
        from prolo.db import create_db_engine, make_sessionmaker, unit_of_work
        from prolo.demo import load_demo
        from prolo.migrate import upgrade
        from prolo.patients.models import Patient
        from prolo.security import service
        from prolo.security.models import User
        from prolo.settings import Settings

        engine = create_db_engine(Settings(env="test", database_url=url))
        upgrade(engine)
        with unit_of_work(make_sessionmaker(engine)) as session:
            load_demo(session, patients=patients, seed=11)
            clinician = session.scalars(select(User).where(User.role == "clinician")).first()
            desk = session.scalars(select(User).where(User.role == "front_desk")).first()
            admin = session.scalars(select(User).where(User.role == "admin")).first()
            assert clinician is not None and desk is not None and admin is not None
            clinic_id = clinician.clinic_id
            ids = list(
                session.scalars(
                    select(Patient.id).where(Patient.clinic_id == clinic_id).order_by(Patient.id)
                )
            )
            # Patients of their own for the bookings, so none clashes with a demo visit.
            fresh = [
                Patient(
                    clinic_id=clinic_id,
                    mrn=f"LOAD{n:05d}",
                    given_name="Load",
                    family_name=f"Booking {n}",
                    birth_date=dt.date(1975, 1, 1) + dt.timedelta(days=n),
                    sex="unknown",
                )
                for n in range(400)
            ]
            session.add_all(fresh)
            session.flush()
            taken = set(
                session.scalars(select(User.patient_id).where(User.patient_id.is_not(None)))
            )
            tokens = []
            for pid in [i for i in ids if i not in taken][:logins]:
                user = service.create_user(
                    session=session,
                    clinic_id=clinic_id,
                    email=f"load-{pid}@patients.invalid",
                    password=secrets.token_urlsafe(16),
                    role="patient",
                    display_name=f"Patient {pid}",
                    patient_id=pid,
                )
                tokens.append(
                    (
                        pid,
                        service.create_api_token(session=session, user_id=user.id, name="load")[0],
                    )
                )
            fixture = Fixture(
                clinician=service.create_api_token(
                    session=session, user_id=clinician.id, name="load"
                )[0],
                front_desk=service.create_api_token(session=session, user_id=desk.id, name="load")[
                    0
                ],
                admin=service.create_api_token(session=session, user_id=admin.id, name="load")[0],
                practitioner_ids=list(
                    session.scalars(
                        select(Practitioner.id).where(Practitioner.clinic_id == clinic_id)
                    )
                ),
                patients=tokens,
                all_patient_ids=[p.id for p in fresh],
                clinic_id=clinic_id,
            )
        engine.dispose()
        return fixture

    def free_bookings(port: int, fixture: Fixture, wanted: int) -> list[bytes]:
        """Distinct bookings that do not overlap for practitioner, room or patient."""
        auth = {"Authorization": f"Bearer {fixture.front_desk}"}
        base = f"http://127.0.0.1:{port}"
        admin = {"Authorization": f"Bearer {fixture.admin}"}
        with httpx.Client(base_url=base, headers=auth, timeout=60) as http:
            week = [{"weekday": d, "starts": "08:00", "ends": "17:00"} for d in range(5)]
            for pid in fixture.practitioner_ids:  # the demo clinic has no hours of its own
                http.put(
                    f"/api/practitioners/{pid}/working-hours", json={"windows": week}, headers=admin
                ).raise_for_status()
            kinds = [t["code"] for t in http.get("/api/appointment-types").json()]
            kind = "follow_up" if "follow_up" in kinds else kinds[0]
            taken: dict[tuple[str, int], list[tuple[str, str]]] = {}
            bookings: list[bytes] = []
            patients = fixture.all_patient_ids
            day = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
            for _ in range(120):  # up to four months, three days at a time
                page = http.get(
                    "/api/slots",
                    params={"kind": kind, "from": str(day), "to": str(day + dt.timedelta(days=2))},
                ).json()
                for slot in page.get("items", []):
                    start, end = slot["starts_at"], slot["ends_at"]

                    def free(key: tuple[str, int], start: str = start, end: str = end) -> bool:
                        return all(end <= s or start >= e for s, e in taken.get(key, []))

                    room = next((r for r in slot["room_ids"] if free(("room", r))), None)
                    if room is None or not free(("practitioner", slot["practitioner_id"])):
                        continue
                    patient = next(
                        (
                            p
                            for p in patients[len(bookings) % len(patients) :] + patients
                            if free(("patient", p))
                        ),
                        None,
                    )
                    if patient is None:
                        continue
                    for key in (
                        ("room", room),
                        ("practitioner", slot["practitioner_id"]),
                        ("patient", patient),
                    ):
                        taken.setdefault(key, []).append((start, end))
                    bookings.append(
                        json.dumps(
                            {
                                "patient_id": patient,
                                "practitioner_id": slot["practitioner_id"],
                                "room_id": room,
                                "kind": kind,
                                "starts_at": start,
                            }
                        ).encode()
                    )
                    if len(bookings) >= wanted:
                        return bookings
                day += dt.timedelta(days=3)
        return bookings

    def start_server(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", *args, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(600):
            try:
                httpx.get(
                    f"http://127.0.0.1:{port}/ceiling"
                    if "load:" in args[-1]
                    else f"http://127.0.0.1:{port}/health",
                    timeout=1,
                )
                return proc
            except httpx.HTTPError:
                if proc.poll() is not None:
                    raise SystemExit(
                        f"server on port {port} exited: {proc.stderr.read().decode()[-2000:]}"
                    ) from None
                time.sleep(0.1)
        raise SystemExit(f"server on port {port} did not start")

    def stop(proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()

    def bounds(
        url: str,
        env: dict[str, str],
        fixture: Fixture,
        answers: list[bytes],
        args: argparse.Namespace,
    ) -> list[Result]:
        """The submission's writes with no framework, per request and group-committed."""
        engine = create_engine(make_url(url.replace("postgresql://", "postgresql+psycopg://", 1)))
        with engine.begin() as conn:
            from load_bound import AUDIT_TABLE

            conn.execute(text(AUDIT_TABLE))
        engine.dispose()
        found = []
        for name, group in (("bound", "0"), ("bound, grouped", "1")):
            server = start_server(
                [
                    "--workers",
                    str(args.workers),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                    "--app-dir",
                    str(BENCH),
                    "load_bound:app",
                ],
                {**env, "BOUND_DSN": url, "BOUND_GROUP": group},
                args.port + 2,
            )
            try:
                found.append(
                    asyncio.run(
                        drive(
                            name,
                            args.port + 2,
                            lambda k, n: (
                                "POST",
                                f"/r/{fixture.patients[k % len(fixture.patients)][0]}",
                                {},
                                answers[(k + n) % len(answers)],
                            ),
                            clients=args.clients,
                            seconds=args.seconds,
                            warmup=args.warmup,
                        )
                    )
                )
            finally:
                stop(server)
        return found

    def report(results: list[Result], ceiling: Result) -> None:
        columns = ("req/s", "of ceiling", "p50 ms", "p95 ms", "p99 ms", "errors")
        print(f"\n{'path':<16} " + " ".join(f"{c:>10}" for c in columns))
        for r in results:
            share = r.rate / ceiling.rate if ceiling.rate else 0.0
            print(
                f"{r.name:<16} {r.rate:>10,.0f} {share:>10.0%} {r.pct(0.50):>10.1f} "
                f"{r.pct(0.95):>10.1f} {r.pct(0.99):>10.1f} {r.errors:>10}"
                + (f"  ({r.note})" if r.note else "")
                + (f"  statuses {r.statuses}" if r.errors else "")
            )

    def main() -> None:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--postgres", default="postgresql://root@127.0.0.1:5432/test")
        parser.add_argument("--clients", type=int, default=32)
        parser.add_argument("--seconds", type=float, default=10)
        parser.add_argument("--warmup", type=float, default=2)
        parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
        parser.add_argument("--port", type=int, default=8150)
        parser.add_argument("--patients", type=int, default=300)
        parser.add_argument(
            "--no-bound",
            dest="bound",
            action="store_false",
            help="skip the bound (bench/load_bound.py: the submission's writes, no framework)",
        )
        args = parser.parse_args()
        print(
            f"load benchmark: {args.clients} clients x {args.seconds:.0f} s per path, "
            f"uvicorn --workers {args.workers}, {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        url = fresh_postgres(args.postgres, "prolo_bench_load")
        fixture = prepare(url, patients=args.patients, logins=args.clients)
        env = dict(os.environ)
        env.update(
            PROLO_DATABASE_URL=url,
            PROLO_ENV="production",
            PROLO_SECRET_KEY=secrets.token_urlsafe(48),
            PROLO_LOG_LEVEL="WARNING",
        )
        common = ["--workers", str(args.workers), "--log-level", "warning", "--no-access-log"]
        bare = start_server(
            [*common, "--app-dir", str(BENCH), "load:ceiling_app"], env, args.port + 1
        )
        try:
            ceiling_result = asyncio.run(
                drive(
                    "ceiling",
                    args.port + 1,
                    lambda k, n: ("GET", "/ceiling", {}, None),
                    clients=args.clients,
                    seconds=args.seconds,
                    warmup=args.warmup,
                )
            )
        finally:
            stop(bare)
        app = start_server([*common, "prolo.asgi:app"], env, args.port)
        try:
            results = [ceiling_result]
            clinician = {"Authorization": f"Bearer {fixture.clinician}"}
            results.append(
                asyncio.run(
                    drive(
                        "patient list",
                        args.port,
                        lambda k, n: ("GET", "/api/patients?limit=50", clinician, None),
                        clients=args.clients,
                        seconds=args.seconds,
                        warmup=args.warmup,
                    )
                )
            )
            rng = random.Random(5)
            answers = [
                json.dumps(
                    {
                        "instrument_id": "odi",
                        "answers": {f"odi-{i}": rng.randint(0, 5) for i in range(1, 11)},
                    }
                ).encode()
                for _ in range(64)
            ]

            def questionnaire(k: int, n: int) -> Request:
                pid, token = fixture.patients[k % len(fixture.patients)]
                return (
                    "POST",
                    f"/api/patients/{pid}/responses",
                    {"Authorization": f"Bearer {token}"},
                    answers[(k + n) % len(answers)],
                )

            results.append(
                asyncio.run(
                    drive(
                        "questionnaire",
                        args.port,
                        questionnaire,
                        clients=args.clients,
                        seconds=args.seconds,
                        warmup=args.warmup,
                    )
                )
            )
            wanted = int(max(results[-1].rate, 100) * (args.seconds + args.warmup) * 1.5)
            bookings = free_bookings(args.port, fixture, wanted)
            desk = {"Authorization": f"Bearer {fixture.front_desk}"}
            queue = iter(bookings)

            def booking(k: int, n: int) -> Request | None:
                body = next(queue, None)
                return None if body is None else ("POST", "/api/appointments", desk, body)

            results.append(
                asyncio.run(
                    drive(
                        "booking",
                        args.port,
                        booking,
                        clients=args.clients,
                        seconds=args.seconds,
                        warmup=args.warmup,
                    )
                )
            )
            results[-1].note = (
                results[-1].note + f"; {len(bookings)} distinct free slots prepared"
            ).lstrip("; ")
        finally:
            stop(app)
        if args.bound:
            results += bounds(url, env, fixture, answers, args)
        report(results, ceiling_result)
        q = results[2]
        share = q.rate / ceiling_result.rate if ceiling_result.rate else 0.0
        print(
            f"\nquestionnaire submission: {share:.0%} of the ceiling (target 30%): "
            + ("met" if share >= 0.30 else "NOT met")
            + f"; p99 {q.pct(0.99):.1f} ms (target < 50 ms): "
            + ("met" if q.pct(0.99) < 50 else "NOT met")
            + f"; errors {sum(r.errors for r in results)} (target 0)"
        )

    main()
