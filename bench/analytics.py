"""Benchmark: the full outcome report on a registry of a million patients.

Builds a synthetic registry (one million courses, about ten million questionnaire
scores, follow-up facts and flare diaries) as a Parquet snapshot, then runs the full
outcome report with the project's engine (DuckDB, :mod:`prolo.outcomes.engine`) and
with the straightforward pandas version (:mod:`prolo.outcomes.baseline_pandas`) in the
same run, asserts that both give the same numbers, and prints both times and the ratio.

Engine figures, each checked against pandas:

- **from raw rows**: the report as ``prolo report --snapshot`` computes it, grouping the
  raw scores, diaries and follow-ups by course on every report;
- **as served**: what the pages and the API run, ``service.report_for`` on this process's
  kept course facts (:mod:`prolo.outcomes.facts`). Rows arrive in batches in a real,
  migrated SQLite database (new patients written by the demo generator through the
  application's tables and change-log triggers, plus edits); each timed report probes
  the change log, reloads the touched courses from the database, recomputes their facts
  and reports from the kept facts. The kept registry starts from the generated million
  courses (``KeptRegistry.seed``), as if loaded from the database when its change log was
  empty: writing a million patients through the application takes hours. Also timed:
  the selection's first served report (it counts every course; later reports update
  those counts with the touched courses), a served report with nothing new, and pandas
  on the final data (registry plus every arrived row), against which the served reports
  are checked.

    python bench/analytics.py                 # 1,000,000 patients
    python bench/analytics.py --patients 200000 --runs 3 --batch-patients 200

Targets (issue 6): the engine at least 20 times faster than pandas and the full report
under 2 seconds on two cores. Loading the snapshot (Parquet to Arrow, Arrow to pandas,
Arrow to DuckDB) is timed apart and not counted for either side. Each figure is printed
with the load average (other work on the machine slows both sides) and the CPU time of
all threads besides the wall time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.orm import Session

from prolo.courses.models import TreatmentCourse
from prolo.db import create_db_engine
from prolo.migrate import upgrade
from prolo.outcomes import baseline_pandas, engine, facts, service
from prolo.outcomes.report import (
    ADVERSE_EVENT_SCHEMA,
    COURSE_SCHEMA,
    FLARE_SCHEMA,
    FOLLOW_UP_SCHEMA,
    SCORE_SCHEMA,
    Aggregates,
    RegistryTables,
    Selection,
    build_report,
    compare_aggregates,
    instrument_rules,
)
from prolo.portal.models import FlareDiaryEntry, Score
from prolo.settings import Settings
from prolo.synth import SynthConfig, generate, registry_tables

AS_OF = dt.date(2026, 6, 1)
SCHEMAS = {
    "courses": COURSE_SCHEMA,
    "scores": SCORE_SCHEMA,
    "follow_ups": FOLLOW_UP_SCHEMA,
    "flares": FLARE_SCHEMA,
    "adverse_events": ADVERSE_EVENT_SCHEMA,
}


def _load() -> str:
    return f"load average {os.getloadavg()[0]:.2f}"


def _rss() -> str:
    return f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.1f} GB"


def _timed(runs: int, fn: Any) -> tuple[Any, list[float], list[float], list[float]]:
    """Run ``fn`` ``runs`` times: its last result, wall times, CPU times, load averages."""
    walls, cpus, loads = [], [], []
    result = None
    for _ in range(max(1, runs)):
        engine.TIMINGS.clear()
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        loads.append(os.getloadavg()[0])
    return result, walls, cpus, loads


def _summary(name: str, walls: list[float], cpus: list[float], loads: list[float]) -> str:
    best = int(np.argmin(walls))
    return (
        f"{name}: {walls[best]:.3f} s wall (best of {len(walls)}; median "
        f"{statistics.median(walls):.3f} s), {cpus[best]:.2f} s CPU, load average "
        f"{loads[best]:.2f}"
    )


# Registry ids are moved above the database's own (which start at 1), but not far: the
# engine groups through arrays only when ids fill a quarter of their span, as they do in
# a real database, and a far offset would make them sparse and every report slower.
OFFSET = 100_000


def _offset(tables: RegistryTables, by: int) -> RegistryTables:
    """The registry with every id moved up by ``by``, and plain (not dictionary) text
    columns, so that it can be put beside rows read from the database."""
    ids = {
        "courses": ("course_id", "clinic_id", "patient_id", "practitioner_id"),
        "scores": ("course_id",),
        "follow_ups": ("course_id",),
        "flares": ("course_id", "session_id"),
        "adverse_events": ("course_id",),
    }
    out: dict[str, pa.Table | None] = {}
    for name, schema in SCHEMAS.items():
        table = getattr(tables, name)
        if table is None:
            out[name] = None
            continue
        table = table.cast(schema)
        for column in ids[name]:
            at = table.schema.get_field_index(column)
            table = table.set_column(at, column, pc.add(table.column(column), by))
        out[name] = table
    return RegistryTables(**out)


def _union(a: RegistryTables, b: RegistryTables) -> RegistryTables:
    """Both registries' rows together (their ids never meet)."""
    out: dict[str, pa.Table | None] = {}
    for name, schema in SCHEMAS.items():
        parts = [t.cast(schema) for t in (getattr(a, name), getattr(b, name)) if t is not None]
        out[name] = pa.concat_tables(parts) if parts else None
    return RegistryTables(**out)


def _arrive(bind: Engine, batch: int, patients: int) -> None:
    """A batch of rows arriving in the application database, committed: ``patients`` new
    patients written by the demo generator (courses, appointments, questionnaires with
    scores, follow-up records, diaries), and from the second batch on, edits to earlier
    rows (a course stopped, a score corrected, a diary day removed)."""
    with Session(bind) as session, session.begin():
        generate(
            session,
            SynthConfig(
                patients=patients,
                seed=100 + batch,
                today=AS_OF,
                calendar=False,
                clinic_name=f"Arriving clinic {batch}",
            ),
        )
        if batch:
            active = session.scalar(
                select(TreatmentCourse.id)
                .where(TreatmentCourse.status == "active")
                .order_by(TreatmentCourse.id)
            )
            if active is not None:
                session.execute(
                    update(TreatmentCourse)
                    .where(TreatmentCourse.id == active)
                    .values(status="stopped", stop_reason="patient_choice", ended_on=AS_OF)
                )
            session.execute(
                update(Score)
                .where(Score.id == select(func.min(Score.id)).scalar_subquery())
                .values(value=func.min(Score.value + 1, 10))
            )
            session.execute(
                delete(FlareDiaryEntry).where(
                    FlareDiaryEntry.id == select(func.max(FlareDiaryEntry.id)).scalar_subquery()
                )
            )


def _served(
    args: argparse.Namespace,
    tables: RegistryTables,
    rules: dict[str, Any],
    selection: Selection,
) -> dict[str, Any]:
    """Time ``service.report_for`` (what the pages and the API call) on a kept registry.

    A million-course registry cannot be written through the application in a benchmark
    run (``prolo synth`` writes about 100 patients a second), so the kept registry starts
    from the generated one (with its ids moved above the database's), as if loaded from
    the database when the change log was empty. The database is a real, migrated SQLite
    file: rows arrive there through the application's tables and triggers, and each
    timed report probes the change log, reloads the touched courses from the database,
    recomputes their facts and reports from the kept facts. The final report is checked
    against pandas on the union of the registry and every arrived row.
    """
    with tempfile.TemporaryDirectory(prefix="prolo-bench-db-") as folder:
        bind = create_db_engine(
            Settings(env="test", database_url=f"sqlite:///{Path(folder) / 'served.db'}")
        )
        upgrade(bind)
        facts.reset()
        big = _offset(tables, OFFSET)
        kept = facts.kept_registry(bind, None, rules)
        t0, c0 = time.perf_counter(), time.process_time()
        with kept.lock:
            kept.seed(big, watermark=None)
        print(
            f"kept course facts: registry copied into DuckDB and facts kept for "
            f"{big.courses.num_rows:,} courses in {time.perf_counter() - t0:.2f} s wall, "
            f"{time.process_time() - c0:.2f} s CPU, {_load()}"
        )
        out: dict[str, Any] = {
            "walls": [],
            "cpus": [],
            "loads": [],
            "courses": [],
            "refresh": [],
        }
        report: dict[str, Any] = {}

        def serve() -> dict[str, Any]:
            with Session(bind) as session:
                return service.report_for(session=session, selection=selection, as_of=AS_OF)

        # The first report of a selection counts its parts over every course; later ones
        # update them with the courses each refresh touched (prolo.outcomes.parts).
        gc.collect()
        first, first_walls, first_cpus, first_loads = _timed(1, serve)
        assert first["facts"]["refreshed_courses"] == 0
        out["first"] = (first_walls, first_cpus, first_loads)
        for batch in range(args.served_runs):
            _arrive(bind, batch, args.batch_patients)
            gc.collect()
            t0, c0 = time.perf_counter(), time.process_time()
            report = serve()
            out["walls"].append(time.perf_counter() - t0)
            out["cpus"].append(time.process_time() - c0)
            out["loads"].append(os.getloadavg()[0])
            out["courses"].append(report["facts"]["refreshed_courses"])
            out["refresh"].append(report["facts"]["refresh_seconds"])
            assert report["facts"]["source"].startswith("kept"), report["facts"]
            assert not report["facts"]["full_load"]
        # The DuckDB side of a refresh that touches existing courses scattered over the
        # whole id range (rows arriving for old courses): their current rows replace
        # the held ones, so the data stay the same.
        rng = np.random.default_rng(args.seed)
        scattered = pa.array(
            np.sort(rng.choice(big.courses.column("course_id").to_numpy(), 1000, replace=False))
        )
        rows = RegistryTables(
            **{
                name: None
                if getattr(big, name) is None
                else getattr(big, name).filter(
                    pc.is_in(getattr(big, name).column("course_id"), value_set=scattered)
                )
                for name in SCHEMAS
            }
        )
        t0 = time.perf_counter()
        with kept.lock:
            facts.tables_of(kept).replace(rows, scattered.to_pylist())
        out["scattered"] = (time.perf_counter() - t0, _load())
        idle, idle_walls, idle_cpus, idle_loads = _timed(args.runs, serve)
        assert idle["facts"]["refreshed_courses"] == 0
        out["idle"] = (idle_walls, idle_cpus, idle_loads)
        t0 = time.perf_counter()
        with Session(bind) as session:
            arrived = service.load_registry(session=session, clinic_id=None)
        out["db_load"] = time.perf_counter() - t0
        out["db_courses"] = arrived.courses.num_rows
        facts.reset()
        bind.dispose()
    for table, column in (
        ("courses", "course_id"),
        ("courses", "patient_id"),
        ("flares", "session_id"),
    ):
        values = getattr(arrived, table)
        top = pc.max(values.column(column)).as_py() if values is not None else None
        assert top is None or top < OFFSET, f"database {column} {top} reached the registry's ids"
    final = _union(big, arrived)
    del big
    gc.collect()
    frames = baseline_pandas.frames(final)
    (slow, report_slow), walls, cpus, loads = _timed(
        1,
        lambda: (
            agg := baseline_pandas.compute(frames, selection, as_of=AS_OF, rules=rules),
            build_report(agg, selection=selection, as_of=AS_OF, rules=rules),
        ),
    )
    for r in (report, idle):
        r.pop("facts")
        r.pop("evidence")
        assert r == report_slow, "the report as served differs from pandas"
    out["pandas"] = (walls[0], cpus[0], loads[0], report_slow)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=5, help="engine runs (best is reported)")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all)")
    parser.add_argument("--trace", action="store_true", help="print the slowest engine queries")
    parser.add_argument(
        "--batch-patients", type=int, default=200, help="new patients per arriving batch"
    )
    parser.add_argument(
        "--served-runs", type=int, default=5, help="arriving batches, one served report each"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="prolo-bench-") as folder:
        snapshot = Path(folder)
        t0 = time.perf_counter()
        registry_tables(args.patients, seed=args.seed, as_of=AS_OF).write_parquet(snapshot)
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        tables = RegistryTables.read_parquet(snapshot)
        t_arrow = time.perf_counter() - t0
        rules = instrument_rules()
        selection = Selection()
        # What `prolo report --snapshot` does, from the files: read, load, report.
        t0, c0 = time.perf_counter(), time.process_time()
        direct = engine.compute(
            RegistryTables.read_parquet(snapshot),
            selection,
            as_of=AS_OF,
            rules=rules,
            threads=args.threads,
        )
        t_direct, c_direct = time.perf_counter() - t0, time.process_time() - c0
        l_direct = _load()
    t0 = time.perf_counter()
    held: dict[str, Any] = {"frames": baseline_pandas.frames(tables)}
    t_pandas_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    held["loaded"] = engine.load(tables, threads=args.threads)
    t_duck_load = time.perf_counter() - t0

    print(
        f"registry: {tables.courses.num_rows:,} courses, {tables.scores.num_rows:,} scores, "
        f"{tables.follow_ups.num_rows:,} follow-up records, "
        f"{tables.flares.num_rows if tables.flares is not None else 0:,} diary days"
    )
    print(
        f"built and written to Parquet in {t_build:.1f} s; read into Arrow in {t_arrow:.2f} s; "
        f"Arrow to pandas {t_pandas_load:.2f} s, Arrow to DuckDB tables {t_duck_load:.2f} s "
        "(loading is not counted below)"
    )
    print(f"cores: {os.cpu_count()}, {_load()} before the runs")

    def raw_report() -> tuple[Aggregates, dict[str, Any]]:
        agg = engine.compute(held["loaded"], selection, as_of=AS_OF, rules=rules)
        return agg, build_report(agg, selection=selection, as_of=AS_OF, rules=rules)

    engine.TRACE = args.trace
    (fast, report_fast), raw_walls, raw_cpus, raw_loads = _timed(args.runs, raw_report)
    trace = sorted(engine.TIMINGS, reverse=True)
    engine.TRACE = False
    held.pop("loaded").close()
    gc.collect()

    def pandas_report() -> tuple[Aggregates, dict[str, Any]]:
        agg = baseline_pandas.compute(held["frames"], selection, as_of=AS_OF, rules=rules)
        return agg, build_report(agg, selection=selection, as_of=AS_OF, rules=rules)

    (slow, report_slow), pd_walls, pd_cpus, pd_loads = _timed(1, pandas_report)
    del held["frames"]
    gc.collect()

    problems = compare_aggregates(fast, slow) + compare_aggregates(direct, slow)
    assert problems == [], "the engines disagree:\n" + "\n".join(problems[:20])
    assert report_fast == report_slow, "the final reports differ"
    pain = next(i for i in report_fast["instruments"] if i["id"] == "pain-nrs")
    month3 = pain["follow_ups"][1]
    print(
        f"same numbers: yes (e.g. pain at 3 months: mean change {month3['change']['mean']} "
        f"in {month3['change']['n']:,} patients, {month3['missing']:,} missing)"
    )
    t_pandas = pd_walls[0]
    print(_summary("pandas baseline", pd_walls, pd_cpus, pd_loads))
    print(_summary("engine from raw rows", raw_walls, raw_cpus, raw_loads))
    print(
        f"  ratio: {t_pandas / min(raw_walls):.1f}x wall, "
        f"{pd_cpus[0] / raw_cpus[int(np.argmin(raw_walls))]:.1f}x CPU"
    )
    print(
        f"engine from the Parquet files (read + load + report, as `prolo report --snapshot`): "
        f"{t_direct:.2f} s wall, {c_direct:.2f} s CPU, {l_direct}"
    )

    # The report as the application serves it: kept course facts, refreshed from the
    # database's change log before the report.
    served = _served(args, tables, rules, selection)
    t_final, c_final, l_final, report_final = served.pop("pandas")
    print(
        f"pandas baseline on the final data (registry + arrived rows): {t_final:.3f} s wall, "
        f"{c_final:.2f} s CPU, load average {l_final:.2f}"
    )
    walls, cpus, loads = served["walls"], served["cpus"], served["loads"]
    print(
        _summary(
            f"report as served after a batch of arriving rows ({args.batch_patients} new "
            "patients each, plus edits)",
            walls,
            cpus,
            loads,
        )
    )
    print(
        f"  ratio: {t_final / min(walls):.1f}x wall (best), "
        f"{t_final / statistics.median(walls):.1f}x wall (median), "
        f"{c_final / cpus[int(np.argmin(walls))]:.1f}x CPU; same numbers: yes"
    )
    print(
        "  of which the refresh (change log, the touched courses' rows from the database, "
        "their facts): "
        + ", ".join(
            f"{n:,} courses in {t:.3f} s"
            for n, t in zip(served["courses"], served["refresh"], strict=True)
        )
    )
    seconds, load = served["scattered"]
    print(
        f"  refresh of 1,000 existing courses scattered over the registry (DuckDB side: "
        f"delete, insert, their facts): {seconds:.3f} s, {load}"
    )
    print(
        _summary(
            "report as served, first of its selection since the registry was kept (counts "
            "every course)",
            *served["first"],
        )
    )
    # Its data are the registry before any batch arrived: the first pandas run's.
    print(f"  ratio: {t_pandas / min(served['first'][0]):.1f}x wall (pandas on the same data)")
    print(_summary("report as served, nothing new since the last", *served["idle"]))
    print(f"  ratio: {t_final / min(served['idle'][0]):.1f}x wall")
    print(
        f"  first full load from the database ({served['db_courses']:,} courses, the arrived "
        f"ones): {served['db_load']:.2f} s"
    )
    assert report_final is not None
    print(_rss())
    if args.trace:
        print("slowest engine queries (raw rows, last run):")
        for seconds, sql in trace[:12]:
            print(f"  {seconds:.3f} s  {sql}")


if __name__ == "__main__":
    main()
