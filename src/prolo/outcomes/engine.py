# ruff: noqa: S608  (SQL text is built from this module's own constants and codes; values are bound)
"""The outcome report's aggregates on DuckDB, an embedded columnar engine.

DuckDB reads the registry as Arrow tables (from the application database through
SQLAlchemy, see :mod:`prolo.outcomes.service`, or from a Parquet snapshot). No DuckDB
extension is loaded: extensions download at run time, and prolo never reaches the
internet.

The definitions live in :mod:`prolo.outcomes.report`; :mod:`prolo.outcomes.baseline_pandas`
computes the same aggregates with pandas, and the tests hold the two together.

How the work is split (``docs/analytics.md`` has the measurements behind it):

- **Loading** copies the Arrow tables into DuckDB's own tables once, with every short
  text column (instrument, timepoint, condition, status, ...) replaced by a small integer
  code, the way pandas turns them into categoricals. Timepoints get fixed codes: 0 for
  the baseline and 1-4 for the follow-ups, so "a follow-up" is ``tp BETWEEN 1 AND 4``.
- **Course facts** are the only work that groups by course (a million groups at registry
  scale): each course's baseline and follow-up means per instrument, its first response
  and first loss of response, each diary session's peak and flare days, its surgery
  status. Grouping by a dense integer key lets DuckDB use a perfect hash table (an array
  indexed by the key); few aggregates per pass keep that table small.
- **The report** is then a handful of scans over course facts and courses, each grouping
  into a few rows (instrument and timepoint, day, condition, ...).

Course facts do not depend on the selection or the report date, so a long-lived
:class:`LoadedRegistry` can keep them and bring them up to date as rows arrive
(:meth:`LoadedRegistry.ingest`); a report then skips the grouping by course. Without kept
facts, each report computes them for the selected courses only.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from prolo.outcomes.report import (
    FLARE_RISE,
    FOLLOW_UPS,
    PRIMARY_INSTRUMENT,
    Aggregates,
    ChangeAgg,
    FollowUpAgg,
    GroupAgg,
    InstrumentRule,
    RegistryTables,
    Selection,
)

__all__ = ["LoadedRegistry", "compute", "load"]

TRACE = False  # set by the benchmark to time each query
TIMINGS: list[tuple[float, str]] = []

TIMEPOINT_CODES = ("baseline", *(t.key for t in FOLLOW_UPS))  # codes 0..4
N_FOLLOW_UPS = len(FOLLOW_UPS)
# DuckDB groups into a "perfect hash" table (an array with a slot for every possible key,
# sized from the key column's min and max) when the keys span at most 2**bits values.
# Grouping a million courses that way is several times faster than hashing, but the array
# costs memory and time per slot whether used or not: it is turned on only for groupings
# whose keys fill at least a quarter of their span (see _dense), up to 2**21 slots.
PERFECT_HASH_BITS = 21
DEFAULT_PERFECT_HASH_BITS = 12  # DuckDB's own default

# Which text columns are coded, per table: (column, codes fixed first).
_CODED: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "courses": (("condition_id", ()), ("injectate", ()), ("status", ()), ("stop_reason", ())),
    "scores": (("instrument_id", ()), ("timepoint", TIMEPOINT_CODES)),
    "follow_ups": (("timepoint", TIMEPOINT_CODES),),
    "flares": (),
    "adverse_events": (("kind", ()),),
}


def _encode(column: pa.ChunkedArray | pa.Array, first: Sequence[str]) -> tuple[pa.Array, list[Any]]:
    """Small integer codes for a text column, and the text of each code.

    ``first`` get codes 0, 1, ... in that order (whether present or not); the other
    values follow in sorted order. Nulls stay null.
    """
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_dictionary(array.type):
        array = pc.dictionary_encode(array)
    names = array.dictionary.to_pylist()
    # A dictionary array may carry values no row uses (after a filter): leave them out.
    used = {names[i] for i in pc.unique(array.indices.drop_null()).to_pylist()}
    order = list(first) + sorted(n for n in used if n is not None and n not in first)
    position = {name: i for i, name in enumerate(order)}
    remap = pa.array([position.get(n, 0) for n in names], pa.uint16())
    return pc.take(remap, array.indices), order


def _f(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class _FactKey:
    """What course facts depend on besides the data: the primary instrument's rule."""

    higher_is_better: bool
    mcid: float | None


class LoadedRegistry:
    """The registry copied into DuckDB's own columnar tables, ready for many reports.

    Copying once from Arrow costs about as much as one scan; after it every query reads
    DuckDB's compressed native storage. The benchmark times this step apart, as it times
    pandas' conversion from Arrow apart. One report at a time: the DuckDB connection is
    not shared between threads.
    """

    def __init__(self, tables: RegistryTables, *, threads: int | None = None) -> None:
        self.con = duckdb.connect(":memory:")
        self.con.execute("SET preserve_insertion_order = false")
        if threads:
            self.con.execute(f"SET threads TO {int(threads)}")
        self.has_flares = tables.flares is not None
        self.has_adverse_events = tables.adverse_events is not None
        self.codes: dict[tuple[str, str], list[Any]] = {}
        self.sessions: NDArray[np.int64] | None = None  # diary session ids, in code order
        self._sorted_sessions: tuple[NDArray[np.int64], NDArray[np.int64]] | None = None
        self.facts: _FactKey | None = None
        self.removed = False  # rows were deleted: a code may stand for a value now gone
        self._deleted: dict[str, int] = {}  # rows deleted per table since it was rewritten
        self.compactions = 0
        for name in ("courses", "scores", "follow_ups", "flares", "adverse_events"):
            table = getattr(tables, name)
            if table is not None:
                self._create(name, table)

    def _coded(self, name: str, table: pa.Table) -> pa.Table:
        """``table`` with its text columns replaced by codes (extending the dictionaries)."""
        for column, first in _CODED[name]:
            known = self.codes.get((name, column))
            codes, order = _encode(table.column(column), known or first)
            self.codes[(name, column)] = order
            table = table.set_column(table.schema.get_field_index(column), column, codes)
        if name == "flares":
            codes = self._session_codes(table.column("session_id").combine_chunks())
            table = table.set_column(
                table.schema.get_field_index("session_id"), "session_id", codes
            )
        return table

    def _session_codes(self, ids: pa.Array) -> pa.Array:
        """Diary sessions numbered 0, 1, 2, ... in the order they arrive.

        Flares are grouped session by session: a dense key lets DuckDB group through a
        perfect hash table, where appointment ids would span far more values than there
        are diary sessions.
        """
        if self.sessions is None:
            self.sessions = np.asarray(pc.unique(ids.drop_null()), np.int64)
            return pc.index_in(ids, value_set=pa.array(self.sessions)).cast(pa.int64())
        if self._sorted_sessions is None:
            order = np.argsort(self.sessions, kind="stable")
            self._sorted_sessions = (self.sessions[order], order.astype(np.int64))
        known, code_of = self._sorted_sessions
        valid = np.asarray(ids.is_valid())
        values = np.asarray(ids.fill_null(0), np.int64)
        at = np.minimum(np.searchsorted(known, values), max(len(known) - 1, 0))
        found = (known[at] == values) if len(known) else np.zeros(len(values), bool)
        new = np.unique(values[valid & ~found])
        if new.size:
            new_codes = np.arange(len(self.sessions), len(self.sessions) + new.size)
            self.sessions = np.concatenate([self.sessions, new])
            merged = np.concatenate([known, new])
            order = np.argsort(merged, kind="stable")
            self._sorted_sessions = (merged[order], np.concatenate([code_of, new_codes])[order])
            return self._session_codes(ids)
        return pa.array(code_of[at], pa.int64(), mask=~valid)

    def _create(self, name: str, table: pa.Table) -> None:
        self.con.register("arrow_in", self._coded(name, table))
        self.con.execute(f"CREATE TABLE {name}_all AS SELECT * FROM arrow_in")
        self.con.unregister("arrow_in")

    def code(self, table: str, column: str, value: str) -> int | None:
        """The code of ``value`` in a coded column (None when the value never occurs)."""
        order = self.codes[(table, column)]
        return order.index(value) if value in order else None

    def name(self, table: str, column: str, code: Any) -> Any:
        """The text behind a code (None for null)."""
        return None if code is None else self.codes[(table, column)][int(code)]

    def keep_facts(self, rules: Mapping[str, InstrumentRule]) -> None:
        """Compute course facts for every course and keep them for later reports."""
        key = _fact_key(rules)
        with _runner(self.con) as run:
            _course_facts(self, run, scope=None, key=key, prefix="kept_", keep=True)
        self.facts = key

    def ingest(self, tables: RegistryTables) -> None:
        """Add arriving rows and bring kept course facts up to date for the courses they
        touch.

        Scores, follow-ups, diary days and adverse events are appended (pass each row
        once); a course row replaces the stored row of the same course. The cost is a scan
        of each table for the touched courses plus their facts, whatever the batch size,
        so rows are best ingested in batches (``docs/analytics.md`` has the figures).
        """
        touched = [
            t.select(["course_id"])
            for t in (
                tables.courses,
                tables.scores,
                tables.follow_ups,
                tables.flares,
                tables.adverse_events,
            )
            if t is not None and t.num_rows
        ]
        if not touched:
            return
        con = self.con
        con.register("touched_in", pa.concat_tables(touched))
        con.execute(
            "CREATE OR REPLACE TEMP TABLE touched AS SELECT DISTINCT course_id FROM touched_in"
        )
        con.unregister("touched_in")
        for name in ("courses", "scores", "follow_ups", "flares", "adverse_events"):
            table = getattr(tables, name)
            if table is None or not table.num_rows:
                continue
            exists = con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [f"{name}_all"]
            ).fetchone()
            if not exists or not exists[0]:
                self._create(name, table)
                self.has_flares = self.has_flares or name == "flares"
                self.has_adverse_events = self.has_adverse_events or name == "adverse_events"
                continue
            con.register("arrow_in", self._coded(name, table))
            if name == "courses":
                con.execute(
                    "DELETE FROM courses_all WHERE course_id IN (SELECT course_id FROM arrow_in)"
                )
            con.execute(f"INSERT INTO {name}_all SELECT * FROM arrow_in")
            con.unregister("arrow_in")
        self._refresh_touched_facts()

    def replace(self, tables: RegistryTables, course_ids: Sequence[int]) -> None:
        """Replace every row of the courses ``course_ids`` with the rows in ``tables`` and
        bring their kept facts up to date.

        ``tables`` holds the courses' complete current rows (none for a deleted course),
        so edits and deletions are applied as well as additions. Used by
        :mod:`prolo.outcomes.facts` after the database marked the courses as changed.
        """
        if not course_ids:
            return
        con = self.con
        con.register("touched_in", pa.table({"course_id": pa.array(course_ids, pa.int64())}))
        con.execute(
            "CREATE OR REPLACE TEMP TABLE touched AS SELECT DISTINCT course_id FROM touched_in"
        )
        con.unregister("touched_in")
        # Only courses already held have rows to delete; new courses (most of a batch of
        # new patients) skip the scans. The id range lets DuckDB skip row groups.
        low, high, n_known = con.execute(
            "SELECT min(course_id), max(course_id), count(*) FROM courses_all "
            "WHERE course_id IN (FROM touched)"
        ).fetchone() or (None, None, 0)
        for name in ("courses", "scores", "follow_ups", "flares", "adverse_events"):
            table = getattr(tables, name)
            exists = con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [f"{name}_all"]
            ).fetchone()
            if exists and exists[0] and n_known:
                deleted = con.execute(
                    f"DELETE FROM {name}_all WHERE course_id BETWEEN ? AND ? "
                    "AND course_id IN (FROM touched)",
                    [low, high],
                ).fetchone()
                self.removed = self.removed or bool(deleted and deleted[0])
                self._compact_later(f"{name}_all", int(deleted[0]) if deleted else 0)
            if name != "courses" and exists and exists[0]:
                # The touched courses' complete rows: their facts are computed from
                # these, not from a scan of the whole table.
                con.execute(f"CREATE OR REPLACE TEMP TABLE scope_{name} AS FROM {name}_all LIMIT 0")
            if table is None or not table.num_rows:
                continue
            if not exists or not exists[0]:
                self._create(name, table)
                self.has_flares = self.has_flares or name == "flares"
                self.has_adverse_events = self.has_adverse_events or name == "adverse_events"
                if name != "courses":
                    con.execute(f"CREATE OR REPLACE TEMP TABLE scope_{name} AS FROM {name}_all")
                continue
            con.register("arrow_in", self._coded(name, table))
            con.execute(f"INSERT INTO {name}_all SELECT * FROM arrow_in")
            if name != "courses":
                con.execute(f"INSERT INTO scope_{name} SELECT * FROM arrow_in")
            con.unregister("arrow_in")
        self._refresh_touched_facts(
            prepared=True, known=bool(n_known), span=(int(low), int(high)) if n_known else None
        )
        self._compact()

    def _refresh_touched_facts(
        self,
        *,
        prepared: bool = False,
        known: bool = True,
        span: tuple[int, int] | None = None,
    ) -> None:
        """Recompute the kept facts of the courses in temp table ``touched`` (from the
        ``scope_*`` tables when ``prepared``: their complete rows). ``known``: some
        touched courses may already have facts (else there is nothing to delete);
        ``span``: their id range, when known."""
        if self.facts is None:
            _drop_work_tables(_plain(self.con))
            return
        with _runner(self.con) as run:
            _course_facts(
                self,
                run,
                scope="touched",
                key=self.facts,
                prefix="new_",
                keep=True,
                prepared=prepared,
            )
            for fact in _FACT_TABLES:
                if not known:  # only new courses: no kept fact to replace
                    deleted: Any = (0,)
                elif span is None:
                    deleted = run(
                        f"DELETE FROM kept_{fact} WHERE course_id IN (FROM touched)"
                    ).fetchone()
                else:
                    deleted = run(
                        f"DELETE FROM kept_{fact} WHERE course_id BETWEEN ? AND ? "
                        "AND course_id IN (FROM touched)",
                        list(span),
                    ).fetchone()
                run(f"INSERT INTO kept_{fact} SELECT * FROM new_{fact}")
                run(f"DROP TABLE new_{fact}")
                self._compact_later(f"kept_{fact}", int(deleted[0]) if deleted else 0)

    def _compact_later(self, table: str, deleted: int) -> None:
        self._deleted[table] = self._deleted.get(table, 0) + deleted

    def _compact(self) -> None:
        """Rewrite tables where deleted rows reach a fifth of the rows.

        An in-memory DuckDB table keeps deleted rows as markers that every scan skips;
        after half the courses were replaced, reports were about 17% slower (200,000
        courses) until the tables were rewritten.
        """
        for table, deleted in list(self._deleted.items()):
            row = self.con.execute(f"SELECT count(*) FROM {table}").fetchone()
            if deleted and 5 * deleted >= max(int(row[0]) if row else 0, 1):
                self.con.execute(f"CREATE OR REPLACE TABLE {table} AS FROM {table}")
                self._deleted[table] = 0
                self.compactions += 1

    def close(self) -> None:
        self.con.close()


def load(tables: RegistryTables, *, threads: int | None = None) -> LoadedRegistry:
    """Copy the registry into DuckDB (see :class:`LoadedRegistry`)."""
    return LoadedRegistry(tables, threads=threads)


def compute(
    tables: RegistryTables | LoadedRegistry,
    selection: Selection,
    *,
    as_of: dt.date,
    rules: Mapping[str, InstrumentRule],
    threads: int | None = None,
) -> Aggregates:
    """The report's aggregates for the courses in ``selection``, as of ``as_of``."""
    if isinstance(tables, LoadedRegistry):
        return _compute(tables, selection, as_of=as_of, rules=rules)
    loaded = LoadedRegistry(tables, threads=threads)
    try:
        return _compute(loaded, selection, as_of=as_of, rules=rules)
    finally:
        loaded.close()


Run = Any  # (sql, params=None) -> DuckDBPyConnection


@contextmanager
def _runner(con: duckdb.DuckDBPyConnection) -> Iterator[Run]:
    timings = TIMINGS if TRACE else None

    def run(sql: str, params: Any = None) -> duckdb.DuckDBPyConnection:
        if timings is None:
            return con.execute(sql, params)
        start, cpu = time.perf_counter(), time.process_time()
        result = con.execute(sql, params)
        label = f"cpu {time.process_time() - cpu:.3f} s  " + " ".join(sql.split())[:90]
        timings.append((time.perf_counter() - start, label))
        return result

    yield run


def _fact_key(rules: Mapping[str, InstrumentRule]) -> _FactKey:
    primary = rules.get(PRIMARY_INSTRUMENT)
    if primary is None:
        return _FactKey(False, None)
    return _FactKey(primary.higher_is_better, primary.mcid)


# --------------------------------------------------------------------------- #
# course facts: the only grouping by course

_FACT_TABLES = ("pc", "km", "fs", "fa", "sg")


def _dense(run: Run, count: int | None, span: int | None) -> bool:
    """Let DuckDB use perfect hash tables for the next groupings when ``count`` keys fill
    at least a quarter of their ``span``; otherwise its ordinary hash tables."""
    dense = bool(count) and bool(span) and 4 * int(count or 0) >= int(span or 0)
    bits = PERFECT_HASH_BITS if dense else DEFAULT_PERFECT_HASH_BITS
    run(f"SET perfect_ht_threshold = {bits}")
    return dense


def _course_facts(
    loaded: LoadedRegistry,
    run: Run,
    *,
    scope: str | None,
    key: _FactKey,
    prefix: str,
    keep: bool,
    prepared: bool = False,
) -> dict[str, str]:
    """Per-course facts for the courses listed in table ``scope`` (None: every course).

    Returns what to put after FROM for each fact: a table ``{prefix}<fact>`` when ``keep``
    (every fact is stored), else a subquery for the facts one report reads once (only
    ``pc`` and the first responses are stored; storing a million rows costs about as much
    as computing them). The facts:

    - ``pc``: per course and instrument with a baseline, the baseline mean ``b``, the
      follow-up means ``v0``..``v3``, and the course's start, condition and practitioner;
    - ``km``: per course with a primary baseline and a later score, the first day that
      reaches the MCID, the last day and the first later day below it;
    - ``fa``: every diary session and its course;
    - ``fs``: per diary session of a course with a primary baseline, peak pain and flare
      days;
    - ``sg``: per course with surgery planned at baseline, whether it was done later and
      whether the 12-month status is known.
    """
    facts: dict[str, str] = {}
    temp = "" if prefix == "kept_" else "TEMP "

    def store(name: str, sql: str, *, always: bool = False) -> None:
        if keep or always:
            run(f"CREATE OR REPLACE {temp}TABLE {prefix}{name} AS {sql}")
            facts[name] = f"{prefix}{name}"
        else:
            facts[name] = f"({sql})"

    # A scope's rows are copied out of each table once; the facts are computed from them.
    source = {name: f"{name}_all" for name in ("scores", "follow_ups", "flares")}
    courses = "courses_all"
    if scope:
        for name in ("scores", "follow_ups") + (("flares",) if loaded.has_flares else ()):
            if not prepared:  # else the caller made them (LoadedRegistry.replace)
                run(
                    f"CREATE OR REPLACE TEMP TABLE scope_{name} AS SELECT * FROM {name}_all "
                    f"WHERE course_id IN (SELECT course_id FROM {scope})"
                )
            source[name] = f"scope_{name}"
        courses = (
            scope if scope == "c" else f"(FROM courses_all SEMI JOIN {scope} USING (course_id))"
        )
    scores, follow_ups, flares = source["scores"], source["follow_ups"], source["flares"]
    # Perfect hash tables are sized from the key's span in the table grouped (here: the
    # scope's courses); they pay for every slot, so only dense keys get them.
    count, span = run(
        "SELECT count(*), CAST(max(course_id) AS HUGEINT) - min(course_id) + 1 "
        f"FROM {scope or 'courses_all'}"
    ).fetchone() or (0, 0)
    dense = _dense(run, count, span)

    primary = loaded.code("scores", "instrument_id", PRIMARY_INSTRUMENT)
    with_baseline = [
        int(k)
        for (k,) in run(
            f"SELECT DISTINCT instrument_id FROM {scores} WHERE timepoint = 0"
        ).fetchall()
    ]
    # One pass per instrument, grouping by course alone: a dense integer key, so DuckDB
    # aggregates into a perfect hash table (an array indexed by course id).
    means = ", ".join(
        f"avg(value) FILTER (WHERE timepoint = {i + 1}) AS v{i}" for i in range(N_FOLLOW_UPS)
    )
    # The course's start (for "due") and breakdown keys ride along, so that the report
    # needs no join back to the courses. Joined per instrument: each side has one row per
    # course, which lets DuckDB join through an array too.
    parts = [
        f"""SELECT p.*, c.started_on, c.condition_id, c.practitioner_id
            FROM (
                SELECT course_id, CAST({k} AS USMALLINT) AS instrument_id,
                       avg(value) FILTER (WHERE timepoint = 0) AS b, {means}
                FROM {scores}
                WHERE instrument_id = {k} AND timepoint <= {N_FOLLOW_UPS}
                GROUP BY course_id HAVING b IS NOT NULL
            ) p JOIN {courses} c USING (course_id)"""
        for k in with_baseline
    ]
    empty_pc = (
        "SELECT CAST(NULL AS BIGINT) AS course_id, CAST(NULL AS USMALLINT) AS instrument_id, "
        "CAST(NULL AS DOUBLE) AS b, "
        + ", ".join(f"CAST(NULL AS DOUBLE) AS v{i}" for i in range(N_FOLLOW_UPS))
        + ", CAST(NULL AS DATE) AS started_on, CAST(NULL AS USMALLINT) AS condition_id, "
        "CAST(NULL AS BIGINT) AS practitioner_id WHERE FALSE"
    )
    store("pc", " UNION ALL ".join(parts) or empty_pc, always=True)

    has_primary = primary is not None and primary in with_baseline
    pb = f"(SELECT course_id, b FROM {facts['pc']} WHERE instrument_id = {primary})"
    if has_primary:
        # Inner joins throughout: with a dense build side DuckDB joins through an array
        # (a perfect hash join), where an outer join would hash every probe.
        later = f"s.instrument_id = {primary} AND s.timepoint <> 0"
        mcid = _double(float("inf") if key.mcid is None else float(key.mcid))

        def responds(b: str) -> str:
            improvement = f"s.value - {b}" if key.higher_is_better else f"{b} - s.value"
            return f"{improvement} >= {mcid}"

        # The first responding day and the last day per course ...
        run(
            f"""
            CREATE OR REPLACE TEMP TABLE km_first AS
            SELECT s.course_id, any_value(pb.b) AS b,
                   min(s.day) FILTER (WHERE {responds("pb.b")}) AS first_day, max(s.day) AS last_day
            FROM {scores} s JOIN {pb} pb USING (course_id)
            WHERE {later} AND s.day > 0
            GROUP BY s.course_id
            """
        )
        # ... then the first non-responding day after the first response.
        store(
            "km",
            f"""
            SELECT f.course_id, f.first_day, f.last_day, l.loss_day
            FROM km_first f LEFT JOIN (
                SELECT s.course_id, min(s.day) AS loss_day
                FROM {scores} s JOIN km_first f USING (course_id)
                WHERE {later} AND s.day > f.first_day AND NOT ({responds("f.b")})
                GROUP BY s.course_id
            ) l USING (course_id)
            """,
        )
    else:
        store(
            "km",
            "SELECT CAST(NULL AS BIGINT) AS course_id, CAST(NULL AS INTEGER) AS first_day, "
            "CAST(NULL AS INTEGER) AS last_day, CAST(NULL AS INTEGER) AS loss_day WHERE FALSE",
        )
    # Diary sessions are numbered densely when loaded: dense whenever the courses are.
    _dense(run, 1 if dense else 0, 1)
    no_sessions = (
        "SELECT CAST(NULL AS BIGINT) AS course_id, CAST(NULL AS BIGINT) AS session_id, "
        "CAST(NULL AS INTEGER) AS peak, CAST(0 AS BIGINT) AS flare_days WHERE FALSE"
    )
    # Every diary session (fa), and those whose course has a primary baseline (fs), with
    # their peak pain and flare days.
    store(
        "fa",
        f"SELECT any_value(course_id) AS course_id, session_id FROM {flares} GROUP BY session_id"
        if loaded.has_flares
        else f"SELECT course_id, session_id FROM ({no_sessions})",
    )
    store(
        "fs",
        f"""
        SELECT any_value(fl.course_id) AS course_id, fl.session_id, max(fl.pain) AS peak,
               count(*) FILTER (WHERE fl.pain >= pb.b + {_double(FLARE_RISE)}) AS flare_days
        FROM {flares} fl JOIN {pb} pb USING (course_id)
        GROUP BY fl.session_id
        """
        if loaded.has_flares and has_primary
        else no_sessions,
    )
    month_12 = TIMEPOINT_CODES.index("month_12")
    store(
        "sg",
        f"""
        WITH planned AS (
            SELECT DISTINCT course_id FROM {follow_ups}
            WHERE timepoint = 0 AND surgery_planned
        )
        SELECT p.course_id, coalesce(q.done, FALSE) AS done, coalesce(q.known12, FALSE) AS known12
        FROM planned p LEFT JOIN (
            SELECT course_id, bool_or(surgery_done) AS done,
                   bool_or(timepoint = {month_12} AND surgery_done IS NOT NULL) AS known12
            FROM {follow_ups}
            WHERE timepoint <> 0 AND course_id IN (SELECT course_id FROM planned)
            GROUP BY course_id
        ) q USING (course_id)
        """,
    )
    if keep:
        _drop_work_tables(run)
    return facts


def _drop_work_tables(run: Run) -> None:
    """Drop the tables one computation of course facts leaves behind."""
    for name in (
        "scope_scores",
        "scope_follow_ups",
        "scope_flares",
        "scope_adverse_events",
        "km_first",
    ):
        run(f"DROP TABLE IF EXISTS {name}")


def _plain(con: duckdb.DuckDBPyConnection) -> Run:
    return lambda sql, params=None: con.execute(sql, params)


def _double(value: float) -> str:
    """A float as a DuckDB DOUBLE literal (exact: repr round-trips; inf included)."""
    return f"CAST('{value!r}' AS DOUBLE)"


# --------------------------------------------------------------------------- #
# the report from course facts


def _where(loaded: LoadedRegistry, selection: Selection) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for name, column in (("clinic_id", "clinic_id"), ("practitioner_id", "practitioner_id")):
        value = getattr(selection, name)
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    for name in ("condition_id", "injectate"):
        value = getattr(selection, name)
        if value is not None:
            code = loaded.code("courses", name, value)
            clauses.append(f"{name} = {code}" if code is not None else "FALSE")
    if selection.started_from is not None:
        clauses.append("started_on >= ?")
        params.append(selection.started_from)
    if selection.started_to is not None:
        clauses.append("started_on <= ?")
        params.append(selection.started_to)
    return (" AND ".join(clauses) or "TRUE"), params


def _compute(
    loaded: LoadedRegistry,
    selection: Selection,
    *,
    as_of: dt.date,
    rules: Mapping[str, InstrumentRule],
) -> Aggregates:
    with _runner(loaded.con) as run:
        return _report(loaded, run, selection, as_of=as_of, rules=rules)


def _report(
    loaded: LoadedRegistry,
    run: Run,
    selection: Selection,
    *,
    as_of: dt.date,
    rules: Mapping[str, InstrumentRule],
) -> Aggregates:
    where, params = _where(loaded, selection)
    filtered = where != "TRUE"
    for kind, name in loaded.con.execute(
        "SELECT 'VIEW', view_name FROM duckdb_views() WHERE view_name = 'c' "
        "UNION ALL SELECT 'TABLE', table_name FROM duckdb_tables() WHERE table_name = 'c'"
    ).fetchall():
        run(f"DROP {kind} {name}")
    if filtered:
        run(f"CREATE TEMP TABLE c AS SELECT * FROM courses_all WHERE {where}", params)
    else:
        run("CREATE TEMP VIEW c AS SELECT * FROM courses_all")
    key = _fact_key(rules)
    kept = loaded.facts == key
    if kept:
        facts = {name: f"kept_{name}" for name in _FACT_TABLES}
    else:
        facts = _course_facts(
            loaded, run, scope="c" if filtered else None, key=key, prefix="", keep=False
        )
    try:
        return _report_from_facts(
            loaded, run, selection, facts, kept=kept, filtered=filtered, as_of=as_of, rules=rules
        )
    finally:
        _drop_work_tables(run)


def _report_from_facts(
    loaded: LoadedRegistry,
    run: Run,
    selection: Selection,
    facts: Mapping[str, str],
    *,
    kept: bool,
    filtered: bool,
    as_of: dt.date,
    rules: Mapping[str, InstrumentRule],
) -> Aggregates:
    in_c = "WHERE course_id IN (SELECT course_id FROM c)" if filtered else ""
    # Kept facts cover every course: those of unselected courses are left out.
    semi = in_c if kept else ""

    def fact(name: str) -> str:
        return f"(SELECT * FROM {facts[name]} {semi})" if semi else facts[name]

    agg = Aggregates()
    _courses(loaded, run, agg)

    if filtered or loaded.removed:
        seen = [
            loaded.name("scores", "instrument_id", k)
            for (k,) in run(f"SELECT DISTINCT instrument_id FROM scores_all {in_c}").fetchall()
        ]
    else:  # every instrument code stands for values that occur (no row was removed)
        seen = list(loaded.codes.get(("scores", "instrument_id"), []))
    agg.instruments_seen = sorted(str(k) for k in seen)

    pc = fact("pc")
    codes = {
        int(k): str(loaded.name("scores", "instrument_id", k))
        for (k,) in run(f"SELECT DISTINCT instrument_id FROM {facts['pc']}").fetchall()
    }
    cutoffs = [as_of - dt.timedelta(days=tp.days) for tp in FOLLOW_UPS]
    due = ", ".join(
        f"count(*) FILTER (WHERE v{i} IS NULL AND started_on <= ?)" for i in range(N_FOLLOW_UPS)
    )
    missing_due: dict[str, list[int]] = {}
    for k, n, mean, sd, *not_answered in run(
        f"SELECT instrument_id, count(*), avg(b), stddev_samp(b), {due} FROM {pc} GROUP BY 1",
        cutoffs,
    ).fetchall():
        agg.baseline[codes[int(k)]] = (int(n), _f(mean), _f(sd))
        missing_due[codes[int(k)]] = [int(x) for x in not_answered]

    # Every answered follow-up as one row (instrument, follow-up, baseline, value), counted
    # per distinct (baseline, value) pair: questionnaire scores take few distinct values, so
    # a few thousand counts stand for millions of pairs, and every change figure follows
    # from them exactly (numpy, below) with the same arithmetic as row by row.
    answered = " UNION ALL ".join(
        f"SELECT instrument_id, {i} AS tp, b, v{i} AS v FROM {pc} WHERE v{i} IS NOT NULL"
        for i in range(N_FOLLOW_UPS)
    )
    pairs = run(
        f"SELECT instrument_id, tp, b, v, count(*) AS w FROM ({answered}) GROUP BY ALL"
    ).fetchnumpy()
    slots = np.asarray(pairs["instrument_id"], np.int64) * N_FOLLOW_UPS + np.asarray(
        pairs["tp"], np.int64
    )
    for slot in np.unique(slots):
        code, i = divmod(int(slot), N_FOLLOW_UPS)
        instrument_id = codes[code]
        take = slots == slot
        change = _change_from_counts(
            np.asarray(pairs["b"], np.float64)[take],
            np.asarray(pairs["v"], np.float64)[take],
            np.asarray(pairs["w"], np.int64)[take],
            rules.get(instrument_id),
        )
        change.eligible = change.n + missing_due[instrument_id][i]
        agg.change[(instrument_id, FOLLOW_UPS[i].key)] = change
    for instrument_id in agg.baseline:  # a follow-up nobody answered
        for i, tp in enumerate(FOLLOW_UPS):
            if (instrument_id, tp.key) not in agg.change:
                agg.change[(instrument_id, tp.key)] = ChangeAgg(
                    eligible=missing_due[instrument_id][i]
                )

    primary = rules.get(PRIMARY_INSTRUMENT)
    primary_code = loaded.code("scores", "instrument_id", PRIMARY_INSTRUMENT)
    keys = ("condition_id", "practitioner_id", "year(started_on)")
    sets = "GROUPING SETS ((condition_id), (practitioner_id), (year(started_on)))"
    stats: dict[tuple[int, Any], tuple[Any, ...]] = {}
    if PRIMARY_INSTRUMENT in agg.baseline and primary is not None:
        n_primary = agg.baseline[PRIMARY_INSTRUMENT][0]
        # Kaplan-Meier inputs as counts per day, both curves and the total in one pass:
        # response at the first response (else censored at the last score); durability,
        # for responders, at the first loss (else censored at the last score).
        response: list[tuple[int, int, int]] = []
        durability: list[tuple[int, int, int]] = []
        n_post = 0
        for g, t_response, t_durability, n, responded, lost in run(
            f"""
            SELECT GROUPING(tr, td), tr, td, count(*),
                   count(*) FILTER (WHERE first_day IS NOT NULL),
                   count(*) FILTER (WHERE loss_day IS NOT NULL)
            FROM (SELECT *, coalesce(first_day, last_day) AS tr,
                         coalesce(loss_day, last_day) - first_day AS td FROM {fact("km")})
            GROUP BY GROUPING SETS ((tr), (td), ())
            """
        ).fetchall():
            if g == 0b01:
                response.append((int(t_response), int(responded), int(n) - int(responded)))
            elif g == 0b10 and t_durability is not None:
                durability.append((int(t_durability), int(lost), int(n) - int(lost)))
            elif g == 0b11:
                n_post = int(n)
        agg.no_post_baseline = n_primary - n_post
        if primary.mcid is not None:
            agg.km_response = sorted(response)
            agg.km_durability = sorted(durability)
        latest = "coalesce(v3, v2, v1, v0)"
        sign = f"{latest} - b" if primary.higher_is_better else f"b - {latest}"
        mcid_value = float("inf") if primary.mcid is None else float(primary.mcid)
        lc = f"""(SELECT *, {latest} AS latest, {latest} - b AS ch, ({sign}) >= ? AS resp
                  FROM {pc} WHERE instrument_id = {primary_code} AND {latest} IS NOT NULL)"""
        agg.waterfall_percent = primary.pain
        waterfall_sql = (
            f"SELECT 100.0 * (latest - b) / b FROM {lc} WHERE b > 0"
            if primary.pain
            else f"SELECT ch FROM {lc}"
        )
        column = next(iter(run(waterfall_sql, [mcid_value]).fetchnumpy().values()))
        agg.waterfall = np.asarray(column, dtype=np.float64)
        for g, *key3, n, mean, sd, rs in run(
            f"""
            SELECT GROUPING({", ".join(keys)}), {", ".join(keys)},
                   count(*), avg(ch), stddev_samp(ch), count(*) FILTER (WHERE resp)
            FROM {lc} GROUP BY {sets}
            """,
            [mcid_value],
        ).fetchall():
            stats[(int(g), _breakdown_key(g, key3))] = (n, mean, sd, rs)

    breakdowns: dict[str, list[GroupAgg]] = {dim: [] for dim in _BREAKDOWNS.values()}
    for g, *key3, courses in run(
        f"SELECT GROUPING({', '.join(keys)}), {', '.join(keys)}, count(*) FROM c GROUP BY {sets}"
    ).fetchall():
        key = _breakdown_key(g, key3)
        n, mean, sd, rs = stats.get((int(g), key), (0, None, None, 0))
        if g == 0b011:
            label = str(loaded.name("courses", "condition_id", key))
        elif g == 0b101:
            label = "none" if key is None else str(key)
        else:
            label = "not started" if key is None else str(key)
        breakdowns[_BREAKDOWNS[int(g)]].append(
            GroupAgg(
                key=label,
                courses=int(courses),
                n=int(n),
                mean=_f(mean),
                sd=_f(sd),
                responders=int(rs),
            )
        )
    agg.breakdowns = {
        dim: sorted(groups, key=lambda g: g.key) for dim, groups in breakdowns.items()
    }

    f_source = f"(SELECT * FROM follow_ups_all {in_c})" if filtered else "follow_ups_all"
    for r in run(
        f"""
        SELECT timepoint, count(*), count(pain_medicine_use),
               count(*) FILTER (WHERE pain_medicine_use), count(opioid_use),
               count(*) FILTER (WHERE opioid_use),
               count(opioid_mme_per_day) FILTER (WHERE opioid_use),
               avg(opioid_mme_per_day) FILTER (WHERE opioid_use),
               median(opioid_mme_per_day) FILTER (WHERE opioid_use)
        FROM {f_source} GROUP BY 1
        """
    ).fetchall():
        agg.follow_ups[str(loaded.name("follow_ups", "timepoint", r[0]))] = FollowUpAgg(
            n=int(r[1]),
            medicine_known=int(r[2]),
            medicine_users=int(r[3]),
            opioid_known=int(r[4]),
            opioid_users=int(r[5]),
            mme_n=int(r[6]),
            mme_mean=_f(r[7]),
            mme_median=_f(r[8]),
        )
    surgery = run(
        f"SELECT count(*), count(*) FILTER (WHERE done), "
        f"count(*) FILTER (WHERE NOT done AND known12) FROM {fact('sg')}"
    ).fetchone()
    assert surgery is not None  # noqa: S101  (an aggregate always returns a row)
    agg.surgery_planned, agg.surgery_done, agg.surgery_avoided = map(int, surgery)

    if loaded.has_flares:
        fl = run(
            f"""
            SELECT count(*),
                   count(*) FILTER (WHERE flare_days > 0),
                   avg(peak) FILTER (WHERE flare_days > 0),
                   stddev_samp(peak) FILTER (WHERE flare_days > 0),
                   avg(flare_days) FILTER (WHERE flare_days > 0),
                   stddev_samp(flare_days) FILTER (WHERE flare_days > 0),
                   (SELECT count(*) FROM {fact("fa")})
            FROM {fact("fs")}
            """
        ).fetchone()
        assert fl is not None  # noqa: S101
        agg.flares = {
            "sessions": int(fl[0]),
            "flared": int(fl[1]),
            "peak_mean": _f(fl[2]),
            "peak_sd": _f(fl[3]),
            "duration_mean": _f(fl[4]),
            "duration_sd": _f(fl[5]),
            "not_evaluable": int(fl[6]) - int(fl[0]),
        }
    if loaded.has_adverse_events:
        ae_source = (
            f"(SELECT * FROM adverse_events_all {in_c})" if filtered else "adverse_events_all"
        )
        agg.adverse_events = {
            str(loaded.name("adverse_events", "kind", k)): int(n)
            for k, n in run(f"SELECT kind, count(*) FROM {ae_source} GROUP BY 1").fetchall()
        }
    return agg


def _change_from_counts(
    b: NDArray[np.float64],
    v: NDArray[np.float64],
    w: NDArray[np.int64],
    rule: InstrumentRule | None,
) -> ChangeAgg:
    """Change figures from distinct (baseline, follow-up) pairs and how often each occurs.

    The same arithmetic as pair by pair (change ``v - b``, the responder and percent
    tests on the same doubles), each term counted ``w`` times.
    """
    n = int(w.sum())
    change = v - b
    mean = float((w * change).sum()) / n
    sd = math.sqrt(float((w * (change - mean) ** 2).sum()) / (n - 1)) if n > 1 else None
    improvement = change if rule is not None and rule.higher_is_better else b - v
    positive = b > 0
    return ChangeAgg(
        n=n,
        mean=mean,
        sd=sd,
        baseline_mean=float((w * b).sum()) / n,
        follow_up_mean=float((w * v).sum()) / n,
        responders=(
            int(w[improvement >= rule.mcid].sum())
            if rule is not None and rule.mcid is not None
            else 0
        ),
        pct_n=int(w[positive].sum()),
        pct30=int(w[positive & ((b - v) * 10 >= 3 * b)].sum()),
        pct50=int(w[positive & ((b - v) * 2 >= b)].sum()),
    )


_BREAKDOWNS = {0b011: "condition_id", 0b101: "practitioner_id", 0b110: "start_year"}


def _breakdown_key(grouping: int, keys: Sequence[Any]) -> Any:
    """The key of a GROUPING SETS row over (condition, practitioner, start year)."""
    return keys[{0b011: 0, 0b101: 1, 0b110: 2}[int(grouping)]]


def _courses(loaded: LoadedRegistry, run: Run, agg: Aggregates) -> None:
    """Counts over the selected courses: patients, status, stop reasons, sessions."""
    row = run(
        """
        SELECT count(*), count(started_on),
               avg(sessions_done) FILTER (WHERE started_on IS NOT NULL),
               median(sessions_done) FILTER (WHERE started_on IS NOT NULL),
               min(sessions_done) FILTER (WHERE started_on IS NOT NULL),
               max(sessions_done) FILTER (WHERE started_on IS NOT NULL),
               avg(planned_sessions) FILTER (WHERE started_on IS NOT NULL)
        FROM c
        """
    ).fetchone()
    assert row is not None  # noqa: S101  (an aggregate always returns a row)
    agg.n_courses, agg.n_started = int(row[0]), int(row[1])
    agg.sessions_n = agg.n_started
    agg.sessions_mean, agg.sessions_median = _f(row[2]), _f(row[3])
    agg.sessions_min = None if row[4] is None else int(row[4])
    agg.sessions_max = None if row[5] is None else int(row[5])
    agg.planned_mean = _f(row[6])
    span = run(
        "SELECT CAST(max(patient_id) AS HUGEINT) - min(patient_id) + 1 FROM courses_all"
    ).fetchone()
    _dense(run, agg.n_courses, (span or (0,))[0])
    patients = run(
        """
        SELECT count(*), count(*) FILTER (WHERE started)
        FROM (SELECT patient_id, bool_or(started_on IS NOT NULL) AS started
              FROM c WHERE patient_id IS NOT NULL GROUP BY patient_id)
        """
    ).fetchone()
    assert patients is not None  # noqa: S101
    agg.n_patients, agg.n_patients_treated = int(patients[0]), int(patients[1])
    for g, status, reason, n in run(
        """
        SELECT GROUPING(status, stop_reason), status, stop_reason, count(*)
        FROM c GROUP BY GROUPING SETS ((status), (stop_reason))
        """
    ).fetchall():
        if g == 0b01:
            agg.status_counts[str(loaded.name("courses", "status", status))] = int(n)
        elif reason is not None:
            agg.stop_reasons[str(loaded.name("courses", "stop_reason", reason))] = int(n)
