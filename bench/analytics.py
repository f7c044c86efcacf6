"""Benchmark: the full outcome report on a registry of a million patients.

Builds a synthetic registry (one million courses, about ten million questionnaire
scores, follow-up facts and flare diaries) as a Parquet snapshot, then runs the full
outcome report with the project's engine (DuckDB, :mod:`prolo.outcomes.engine`) and
with the straightforward pandas version (:mod:`prolo.outcomes.baseline_pandas`) in the
same run, asserts that both give the same numbers, and prints both times and the ratio.

Two engine figures, both checked against pandas:

- **from raw rows**: the report as ``prolo report --snapshot`` computes it, grouping the
  raw scores, diaries and follow-ups by course on every report;
- **from kept course facts**: a long-lived registry keeps each course's facts (baseline
  and follow-up means, first response, flare sessions, surgery status) and brings them up
  to date as rows arrive. The run holds back a share of the rows, keeps facts for the rest
  (timed: the full build), ingests the held-back rows in batches (timed: the maintenance
  cost), and then times the report.

    python bench/analytics.py                 # 1,000,000 patients
    python bench/analytics.py --patients 200000 --runs 3

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

from prolo.outcomes import baseline_pandas, engine
from prolo.outcomes.report import (
    Aggregates,
    RegistryTables,
    Selection,
    build_report,
    compare_aggregates,
    instrument_rules,
)
from prolo.synth import registry_tables

AS_OF = dt.date(2026, 6, 1)


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


def _split(tables: RegistryTables, share: float, seed: int) -> tuple[RegistryTables, list[Any]]:
    """Hold back ``share`` of the scores, follow-ups and diary days as rows still to
    arrive; the held-back rows come back shuffled, one list per table."""
    rng = np.random.default_rng(seed)
    kept: dict[str, pa.Table | None] = {}
    later: list[Any] = []
    for name in ("scores", "follow_ups", "flares"):
        table = getattr(tables, name)
        if table is None:
            kept[name] = None
            later.append(None)
            continue
        held = rng.random(table.num_rows) < share
        kept[name] = table.filter(pa.array(~held))
        rows = np.flatnonzero(held)
        later.append(table.take(pa.array(rng.permutation(rows))))
    first = RegistryTables(
        courses=tables.courses,
        scores=kept["scores"],
        follow_ups=kept["follow_ups"],
        flares=kept["flares"],
        adverse_events=tables.adverse_events,
    )
    return first, later


def _batches(later: list[Any], courses: pa.Table, sizes: list[int]) -> list[RegistryTables]:
    """Cut the held-back rows into batches whose score counts are ``sizes`` (the other
    tables in proportion)."""
    scores, follow_ups, flares = later
    total = scores.num_rows
    out, start = [], 0
    for size in sizes:
        end = min(total, start + size)

        def part(table: pa.Table | None, a: int = start, b: int = end) -> pa.Table | None:
            if table is None:
                return None
            lo, hi = table.num_rows * a // total, table.num_rows * b // total
            return table.slice(lo, hi - lo)

        out.append(
            RegistryTables(
                courses=courses.slice(0, 0),
                scores=scores.slice(start, end - start),
                follow_ups=part(follow_ups),
                flares=part(flares),
            )
        )
        start = end
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=5, help="engine runs (best is reported)")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all)")
    parser.add_argument("--trace", action="store_true", help="print the slowest engine queries")
    parser.add_argument(
        "--held-back", type=float, default=0.01, help="share of rows that arrive later"
    )
    parser.add_argument("--batch", type=int, default=10_000, help="scores per ingested batch")
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

    # Kept course facts, maintained as rows arrive.
    first, later = _split(tables, args.held_back, args.seed)
    n_later = later[0].num_rows
    sizes = [100] + [args.batch] * ((n_later - 100) // args.batch + 1)
    batches = [b for b in _batches(later, tables.courses, sizes) if b.scores.num_rows]
    kept = engine.load(first, threads=args.threads)
    t0, c0 = time.perf_counter(), time.process_time()
    kept.keep_facts(rules)
    t_facts, c_facts = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"kept course facts: built for {first.courses.num_rows:,} courses in {t_facts:.2f} s "
        f"wall, {c_facts:.2f} s CPU, {_load()}"
    )
    ingest_walls = []
    t0, c0 = time.perf_counter(), time.process_time()
    for batch in batches:
        b0 = time.perf_counter()
        kept.ingest(batch)
        ingest_walls.append(time.perf_counter() - b0)
    t_ingest, c_ingest = time.perf_counter() - t0, time.process_time() - c0
    n_rows = sum(
        b.scores.num_rows
        + b.follow_ups.num_rows
        + (b.flares.num_rows if b.flares is not None else 0)
        for b in batches
    )
    print(
        f"  maintenance: {n_rows:,} arriving rows ({n_later:,} scores, the rest follow-ups and "
        f"diary days) in {len(batches)} batches took {t_ingest:.2f} s wall, {c_ingest:.2f} s "
        f"CPU: {ingest_walls[0]:.3f} s for a batch of 100 scores, median "
        f"{statistics.median(ingest_walls[1:] or ingest_walls):.3f} s for a batch of "
        f"{args.batch:,} ({1e6 * t_ingest / max(1, n_rows):.0f} us per row); {_load()}"
    )

    def kept_report() -> tuple[Aggregates, dict[str, Any]]:
        agg = engine.compute(kept, selection, as_of=AS_OF, rules=rules)
        return agg, build_report(agg, selection=selection, as_of=AS_OF, rules=rules)

    (kept_agg, report_kept), kept_walls, kept_cpus, kept_loads = _timed(args.runs, kept_report)
    kept.close()
    problems = compare_aggregates(kept_agg, slow)
    assert problems == [], "kept facts disagree with pandas:\n" + "\n".join(problems[:20])
    assert report_kept == report_slow, "the final reports differ"
    print(_summary("engine from kept course facts", kept_walls, kept_cpus, kept_loads))
    print(
        f"  ratio: {t_pandas / min(kept_walls):.1f}x wall, "
        f"{pd_cpus[0] / kept_cpus[int(np.argmin(kept_walls))]:.1f}x CPU; same numbers: yes"
    )
    print(_rss())
    if args.trace:
        print("slowest engine queries (raw rows, last run):")
        for seconds, sql in trace[:12]:
            print(f"  {seconds:.3f} s  {sql}")


if __name__ == "__main__":
    main()
