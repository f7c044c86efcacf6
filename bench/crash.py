"""The long crash run: many SIGKILLs of a writer that acknowledges each committed write.

Run: .venv/bin/python bench/crash.py [--kills 200 --max-delay 0.5 --seed 1
     --start fork|spawn --dir /tmp/prolo-bench --postgres URL]

Each cycle starts a writer that registers patients through the service layer and
prints each id after its commit, kills it with SIGKILL after a random delay, reopens
the database and checks integrity (SQLite), every acknowledged patient, one audit
entry per stored patient, and the audit chain (see prolo.ops.crashcheck). Prints
progress, the acknowledged and recovered counts and their ratio (must be 1.000),
and stops at the first failure with what it found. ``--start spawn`` starts every
writer as a fresh interpreter, as a restarted service would; ``fork`` (the default)
starts it in milliseconds, so more kills fit in the same time.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from prolo.ops.crashcheck import CrashReport, crash_cycles


def _fresh_postgres(url: str) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = "prolo_bench_crash"
    admin = create_engine(
        make_url(url.replace("postgresql://", "postgresql+psycopg://", 1)),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def run(label: str, url: str, args: argparse.Namespace) -> bool:
    print(f"\n{label}: {args.kills} kills, delays up to {args.max_delay} s, {args.start} start")

    def progress(cycle: int, report: CrashReport) -> None:
        if (cycle + 1) % max(1, args.kills // 10) == 0 or not report.ok:
            print(
                f"  {cycle + 1:>5} kills  {report.acknowledged:>7} acknowledged  "
                f"{report.stored:>7} stored  {report.seconds:7.1f} s"
            )

    report = crash_cycles(
        url,
        kills=args.kills,
        seed=args.seed,
        max_delay=args.max_delay,
        method=args.start,
        on_cycle=progress,
    )
    recovered = report.acknowledged - len(report.lost)
    ratio = recovered / report.acknowledged if report.acknowledged else 0.0
    print(
        f"  acknowledged {report.acknowledged}, recovered {recovered} (ratio {ratio:.3f}), "
        f"stored without audit entry {len(report.unaudited)}, "
        f"integrity and chain: {'ok' if not report.problems else report.problems}"
    )
    print(
        f"  {report.acknowledged / report.seconds:,.0f} acknowledged writes/s while being "
        f"killed, {report.kills / report.seconds:.1f} kills/s"
    )
    if not report.ok:
        print(f"  FAILED after {report.kills} kills: lost {report.lost[:10]}")
    return report.ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--max-delay", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start", choices=("fork", "spawn"), default="fork")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "prolo-bench")
    parser.add_argument("--postgres", help="server URL; a scratch database prolo_bench_crash")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    path = args.dir / "crash.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    ok = run("SQLite (WAL, synchronous=FULL)", f"sqlite:///{path}", args)
    if args.postgres:
        ok = run("PostgreSQL (writer killed)", _fresh_postgres(args.postgres), args) and ok
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
