"""Benchmark: audit appends against a plain INSERT, and verifying a ten-million-entry log.

Run: .venv/bin/python bench/audit.py [--entries 50000 --per-transaction 100,2
     --verify-entries 10000000 --dir /tmp/prolo-bench --postgres URL --threads 8]

Appends, on a scratch SQLite file (and on PostgreSQL with --postgres, a scratch database
that is dropped and recreated), the same rows three ways in the same run:

  plain INSERT   the row without the chain, through the same session and transactions:
                 the baseline
  record()       prolo.security.audit.record, the chained append (entries are written
                 together just before the transaction commits)
  record() v0    the implementation it replaced (ORM object and flush; on PostgreSQL a
                 transaction-scoped advisory lock and ORDER BY id DESC LIMIT 1), writing
                 the same version 2 entries

and prints entries per wall second and per CPU second, and record()/plain. With
--postgres it also runs --threads writers at once, with the head-row lock of record()
and with v0's advisory lock, prints their throughput and checks the chain did not fork.

Verify: builds a log of --verify-entries entries (chain format version 2) once in DIR
(reused by later runs), then times verify_database() on it against streaming rows
without hashing, two baselines: every column (SELECT *, the fourteen field columns as
before, now generated from the entry) and the stored columns verify reads (id, lane,
prev_id, entry, digest); prints the ratios and whether ten million entries verify in
under ten seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from prolo.db import create_db_engine, make_sessionmaker, utcnow
from prolo.migrate import upgrade
from prolo.security import audit, chain
from prolo.security.models import AuditEvent
from prolo.settings import Settings

ACTOR = audit.Actor(user_id=7, role="clinician", clinic_id=1, source_ip="10.0.0.1")
Append = Callable[[Session, int], None]


def _record(session: Session, i: int) -> None:
    audit.record(
        session,
        ACTOR,
        action="R",
        event="patient.read",
        entity_type="Patient",
        entity_id=i,
        patient_id=i,
    )


def _fields(i: int) -> tuple[object, ...]:
    """The fields _record writes, in the chain format's order."""
    return (
        *(ACTOR.user_id, ACTOR.role, ACTOR.clinic_id, "R", "patient.read", "Patient"),
        *(str(i), i, "0", ACTOR.source_ip, None),
    )


def _record_v0(session: Session, i: int) -> None:
    """The append as it was before: advisory lock, ORDER BY id DESC, ORM object and flush."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": 0x70726F6C6F})
    last = session.execute(
        select(AuditEvent.id, AuditEvent.digest).order_by(AuditEvent.id.desc()).limit(1)
    ).first()
    prev_id, prev = (last[0], last[1]) if last else (0, chain.GENESIS)
    entry = chain.encode(utcnow(), _fields(i))
    session.add(
        AuditEvent(
            id=prev_id + 1,
            lane=1,
            prev_id=prev_id,
            entry=entry,
            digest=chain.digest(prev, entry),
        )
    )
    session.flush()


class _Plain:
    """The same row, inserted without the chain (no head, no digest computed)."""

    def __init__(self, start: int) -> None:
        self.next_id = start

    def __call__(self, session: Session, i: int) -> None:
        conn = session.connection()
        sqlite = conn.dialect.name == "sqlite"
        self.next_id += 1
        sql = audit._SQL["sqlite" if sqlite else "postgresql"]["insert"]
        cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        entry = chain.encode(utcnow(), _fields(i))
        cur.execute(sql, (self.next_id, 1, self.next_id - 1, entry, self.next_id.to_bytes(32)))
        cur.close()


def _clear(factory: sessionmaker[Session]) -> None:
    with factory() as session, session.begin():
        session.execute(text("DELETE FROM audit_event"))
        session.execute(
            text("UPDATE audit_head SET last_id = 0, last_hash = :g"), {"g": audit.GENESIS}
        )


def _time_appends(
    factory: sessionmaker[Session], append: Append, *, entries: int, per_transaction: int
) -> tuple[float, float]:
    """(entries per wall second, entries per CPU second of this process)."""
    _clear(factory)
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, entries, per_transaction):
        with factory() as session, session.begin():
            for i in range(start, min(start + per_transaction, entries)):
                append(session, i)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return entries / wall, entries / cpu


def _verify_or_die(factory: sessionmaker[Session], expected: int) -> None:
    with factory() as session, session.begin():
        checked, broken = audit.verify_database(session)
    if broken is not None or checked != expected:
        raise SystemExit(f"chain check failed: {checked} entries, break {broken}")


def bench_appends(url: str, *, entries: int, per_transaction: int) -> None:
    engine = create_db_engine(Settings(env="test", database_url=url))
    upgrade(engine)
    factory = make_sessionmaker(engine)
    kind = engine.dialect.name
    print(f"\nappends on {kind}: {entries} entries, {per_transaction} per transaction")
    rows = []
    for name, append in (
        ("plain INSERT", _Plain(10**12)),
        ("record()", _record),
        ("record() v0", _record_v0),
    ):
        wall, cpu = _time_appends(factory, append, entries=entries, per_transaction=per_transaction)
        if name != "plain INSERT":
            _verify_or_die(factory, entries)
        rows.append((name, wall, cpu))
    base_wall, base_cpu = rows[0][1], rows[0][2]
    print(f"  {'':<14} {'per wall s':>11} {'per CPU s':>11} {'vs plain':>9}")
    for name, wall, cpu in rows:
        print(f"  {name:<14} {wall:>11,.0f} {cpu:>11,.0f} {cpu / base_cpu:>8.2f}x")
    ratio = rows[1][2] / base_cpu
    print(
        f"  record()/plain INSERT per CPU second: {ratio:.2f}; "
        f"record() {rows[1][2]:,.0f}/CPU s (target 20,000): "
        + ("met" if rows[1][2] >= 20_000 else "NOT met")
        + f"; v0 -> record() speed-up {rows[1][2] / rows[2][2]:.1f}x"
    )
    print(
        f"  (wall rates include the commit per transaction; plain INSERT wall {base_wall:,.0f}/s)"
    )
    engine.dispose()


def bench_concurrency(url: str, *, threads: int, per_thread: int) -> None:
    """Writers appending at once, one entry per transaction, as requests do."""
    engine = create_db_engine(Settings(env="test", database_url=url), pool_size=threads + 2)
    factory = make_sessionmaker(engine)
    print(f"\nconcurrent appends on PostgreSQL: {threads} threads x {per_thread} transactions")
    for name, append in (("record()", _record), ("record() v0", _record_v0)):
        _clear(factory)
        errors: list[BaseException] = []

        def writer(append: Append = append, errors: list[BaseException] = errors) -> None:
            try:
                for i in range(per_thread):
                    with factory() as session, session.begin():
                        append(session, i)
            except BaseException as exc:  # reported below
                errors.append(exc)

        workers = [threading.Thread(target=writer) for _ in range(threads)]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - start
        if errors:
            raise SystemExit(f"{name}: {len(errors)} writer(s) failed: {errors[0]!r}")
        _verify_or_die(factory, threads * per_thread)
        print(
            f"  {name:<12} {threads * per_thread / elapsed:>8,.0f} committed entries/s; "
            "chain verified, no fork"
        )
    engine.dispose()


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


def build_log(path: Path, entries: int) -> None:
    """A migrated SQLite file holding a valid version 2 chain of ``entries`` entries."""
    if path.exists():
        with sqlite3.connect(path) as conn:
            have = conn.execute("SELECT last_id FROM audit_head WHERE id = 1").fetchone()
        if have and have[0] == entries:
            print(f"\nreusing {path} ({entries:,} entries)")
            return
        path.unlink()
    print(f"\nbuilding {path} with {entries:,} entries (once; later runs reuse it) ...")
    start = time.perf_counter()
    engine = create_db_engine(Settings(env="test", database_url=f"sqlite:///{path}"))
    upgrade(engine)
    engine.dispose()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    insert = audit._SQL["sqlite"]["insert"]
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    prev = chain.GENESIS
    batch: list[tuple[object, ...]] = []
    users = ("clinician", "front_desk", "patient", "admin")
    events = (("R", "patient.read"), ("C", "patient.create"), ("E", "login"), ("U", "chart.update"))
    for n in range(1, entries + 1):
        at = base + dt.timedelta(microseconds=n * 997)
        action, event = events[n % 4]
        patient = n % 20_011
        fields = (
            n % 97,
            users[n % 4],
            1 + n % 3,
            action,
            event,
            "Patient",
            str(patient),
            patient,
            "0" if n % 50 else "4",
            f"10.0.{n % 256}.{n % 251}",
            None if n % 10 else "12 of 40 shown",
        )
        entry = chain.encode(at, fields)
        digest = chain.digest(prev, entry)
        batch.append((n, 1, n - 1, entry, digest))
        prev = digest
        if len(batch) == 100_000:
            conn.executemany(insert, batch)
            batch.clear()
    if batch:
        conn.executemany(insert, batch)
    conn.execute(
        "UPDATE audit_head SET last_id = ?, last_hash = ? WHERE id = 1", (entries, prev.hex())
    )
    conn.execute("COMMIT")
    conn.close()
    print(f"  built in {time.perf_counter() - start:.0f} s ({path.stat().st_size / 1e9:.1f} GB)")


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (verify's workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _stream(path: Path, sql: str) -> tuple[int, float]:
    """(rows, seconds) to fetch every row of ``sql`` in batches, hashing nothing."""
    raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    start = time.perf_counter()
    cur = raw.execute(sql)
    read = 0
    while rows := cur.fetchmany(audit.BATCH):  # as verify reads: the same batch size
        read += len(rows)
    elapsed = time.perf_counter() - start
    raw.close()
    return read, elapsed


def bench_verify(path: Path, entries: int) -> None:
    build_log(path, entries)
    url = f"sqlite:///{path}"
    engine = create_db_engine(Settings(env="test", database_url=url))
    factory = make_sessionmaker(engine)
    # Baselines: stream the rows in id order without hashing anything.
    read, every = _stream(path, "SELECT * FROM audit_event ORDER BY id")
    read_stored, baseline = _stream(
        path, "SELECT id, lane, prev_id, CAST(entry AS BLOB), digest FROM audit_event ORDER BY id"
    )
    print(f"verify {entries:,} entries on SQLite (load average {os.getloadavg()[0]:.1f}):")
    print(f"  stream every column, no hashing       {every:7.2f} s")
    print(f"  stream the stored columns (baseline)  {baseline:7.2f} s")
    cpus = os.cpu_count() or 1
    for workers in sorted({1, cpus}):
        start, cpu = time.perf_counter(), _cpu()
        with factory() as session, session.begin():
            checked, broken = audit.verify_database(session, workers=workers)
        elapsed, cpu = time.perf_counter() - start, _cpu() - cpu
        if broken is not None or checked != entries or {read, read_stored} != {entries}:
            raise SystemExit(f"verify found {broken} after {checked} entries (read {read})")
        per_10m = elapsed * 10_000_000 / entries
        print(
            f"  verify_database(workers={workers})       {elapsed:7.2f} s "
            f"({entries / elapsed:,.0f} entries/s; verify/stream {elapsed / baseline:.2f}, "
            f"/every column {elapsed / every:.2f}; CPU {cpu:.1f} s, "
            f"{cpu / entries * 1e6:.2f} µs per entry; load {os.getloadavg()[0]:.1f}); "
            f"ten million: {per_10m:.1f} s, target under 10 s "
            + ("met" if per_10m < 10 else "NOT met")
        )
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument(
        "--per-transaction",
        default="100,2",
        help="entries per transaction, comma-separated runs (requests record 1-3)",
    )
    parser.add_argument("--verify-entries", type=int, default=10_000_000)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "prolo-bench")
    parser.add_argument("--postgres", help="server URL; a scratch database prolo_bench_audit")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--skip-appends", action="store_true")
    parser.add_argument("--skip-verify", action="store_true")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    print(f"audit benchmark, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if not args.skip_appends:
        scratch = args.dir / "audit-appends.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{scratch}{suffix}").unlink(missing_ok=True)
        sizes = [int(n) for n in str(args.per_transaction).split(",")]
        for size in sizes:
            bench_appends(f"sqlite:///{scratch}", entries=args.entries, per_transaction=size)
        if args.postgres:
            pg = fresh_postgres(args.postgres, "prolo_bench_audit")
            for size in sizes:
                bench_appends(pg, entries=args.entries, per_transaction=size)
            bench_concurrency(pg, threads=args.threads, per_thread=max(1, args.entries // 100))
    if not args.skip_verify:
        path = args.dir / f"audit-verify-v2-{args.verify_entries}.db"
        bench_verify(path, args.verify_entries)


if __name__ == "__main__":
    main()
