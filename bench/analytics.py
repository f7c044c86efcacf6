"""Benchmark: the full outcome report on a registry of a million patients.

Builds a synthetic registry (one million courses, about ten million questionnaire
scores, follow-up facts and flare diaries) as a Parquet snapshot, then runs the full
outcome report with the project's engine (DuckDB, :mod:`prolo.outcomes.engine`) and
with the straightforward pandas version (:mod:`prolo.outcomes.baseline_pandas`) in the
same run, asserts that both give the same numbers, and prints both times and the ratio.

    python bench/analytics.py                 # 1,000,000 patients
    python bench/analytics.py --patients 200000 --runs 3

Targets (issue 6): the engine at least 20 times faster than pandas and the full report
under 2 seconds on two cores. Loading the snapshot (Parquet to Arrow, Arrow to pandas)
is timed apart and not counted for either side.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import tempfile
import time
from pathlib import Path

from prolo.outcomes import baseline_pandas, engine
from prolo.outcomes.report import (
    RegistryTables,
    Selection,
    build_report,
    compare_aggregates,
    instrument_rules,
)
from prolo.synth import registry_tables

AS_OF = dt.date(2026, 6, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3, help="engine runs (best is reported)")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all)")
    parser.add_argument("--trace", action="store_true", help="print the slowest engine queries")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="prolo-bench-") as folder:
        snapshot = Path(folder)
        t0 = time.perf_counter()
        registry_tables(args.patients, seed=args.seed, as_of=AS_OF).write_parquet(snapshot)
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        tables = RegistryTables.read_parquet(snapshot)
        t_arrow = time.perf_counter() - t0
        t0 = time.perf_counter()
        frames = baseline_pandas.frames(tables)
        t_pandas_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        loaded = engine.load(tables, threads=args.threads)
        t_duck_load = time.perf_counter() - t0

    rules = instrument_rules()
    selection = Selection()
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
    print(f"cores: {os.cpu_count()}, load average before the runs: {os.getloadavg()[0]:.2f}")

    engine.TRACE = args.trace
    times, cpu = [], []
    for _ in range(max(1, args.runs)):
        engine.TIMINGS.clear()
        t0, c0 = time.perf_counter(), time.process_time()
        fast = engine.compute(loaded, selection, as_of=AS_OF, rules=rules)
        report_fast = build_report(fast, selection=selection, as_of=AS_OF, rules=rules)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    t_engine = min(times)
    loaded.close()

    t0, c0 = time.perf_counter(), time.process_time()
    slow = baseline_pandas.compute(frames, selection, as_of=AS_OF, rules=rules)
    report_slow = build_report(slow, selection=selection, as_of=AS_OF, rules=rules)
    t_pandas, cpu_pandas = time.perf_counter() - t0, time.process_time() - c0

    problems = compare_aggregates(fast, slow)
    assert problems == [], "the engines disagree:\n" + "\n".join(problems[:20])
    assert report_fast == report_slow, "the final reports differ"
    pain = next(i for i in report_fast["instruments"] if i["id"] == "pain-nrs")
    month3 = pain["follow_ups"][1]
    print(
        f"same numbers: yes (e.g. pain at 3 months: mean change {month3['change']['mean']} "
        f"in {month3['change']['n']:,} patients, {month3['missing']:,} missing)"
    )
    print(
        f"DuckDB engine: {t_engine:.3f} s (best of {len(times)}; "
        f"median {statistics.median(times):.3f} s)"
    )
    print(f"pandas baseline: {t_pandas:.3f} s")
    print(f"ratio: {t_pandas / t_engine:.1f}x faster with the engine")
    print(
        f"CPU time (all threads; less sensitive to other load): engine {min(cpu):.2f} s, "
        f"pandas {cpu_pandas:.2f} s, ratio {cpu_pandas / min(cpu):.1f}x; "
        f"load average after: {os.getloadavg()[0]:.2f}"
    )
    if args.trace:
        for seconds, sql in sorted(engine.TIMINGS, reverse=True)[:10]:
            print(f"  {seconds:.3f} s  {sql}")


if __name__ == "__main__":
    main()
