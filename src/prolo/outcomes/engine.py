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
- **The report's parts** (:mod:`prolo.outcomes.parts`) are then a handful of scans over
  course facts and courses, each counting rows per few distinct values (instrument and
  timepoint, baseline and follow-up score, day, condition, ...); the aggregates follow
  from the counts in numpy.

Course facts do not depend on the selection or the report date, so a long-lived
:class:`LoadedRegistry` can keep them and bring them up to date as rows arrive
(:meth:`LoadedRegistry.replace`, :meth:`LoadedRegistry.ingest`); a report then skips the
grouping by course. Counts add up over courses, so it also keeps recent selections'
parts and updates them with the counts of the courses each replace touched, before and
after: a report after a batch then only finishes the counts. Without kept facts, each
report computes facts for the selected courses only.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from prolo.outcomes import parts
from prolo.outcomes.report import (
    FLARE_RISE,
    FOLLOW_UPS,
    PRIMARY_INSTRUMENT,
    Aggregates,
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
# Selections whose report parts a registry with kept facts keeps up to date (most
# recently used first); each costs a few thousand counts and a few milliseconds per
# refresh.
KEPT_SELECTIONS = 8
FEW_COURSES = 1000  # a replace of at most this many courses runs on one thread

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
        self.threads = threads
        if threads:
            self.con.execute(f"SET threads TO {int(threads)}")
        self.has_flares = tables.flares is not None
        self.has_adverse_events = tables.adverse_events is not None
        self.codes: dict[tuple[str, str], list[Any]] = {}
        self.sessions: NDArray[np.int64] | None = None  # diary session ids, in code order
        self._sorted_sessions: tuple[NDArray[np.int64], NDArray[np.int64]] | None = None
        self.facts: _FactKey | None = None
        # With kept facts: recent selections' report parts, (where, params, as_of) ->
        # parts, brought up to date by every replace (prolo.outcomes.parts).
        self.parts: OrderedDict[tuple[Any, ...], parts.Parts] = OrderedDict()
        self._deleted: dict[str, int] = {}  # rows deleted per table since it was rewritten
        self.held: set[str] = set()  # registry tables created (courses, scores, ...)
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
            # Inserted where they sort (both sorted), not a sort of every session again;
            # new appointments mostly have the largest ids, which is an append.
            at_new = np.searchsorted(known, new)
            if not len(known) or at_new[0] == len(known):
                merged = (np.concatenate([known, new]), np.concatenate([code_of, new_codes]))
            else:
                merged = (np.insert(known, at_new, new), np.insert(code_of, at_new, new_codes))
            self._sorted_sessions = merged
            return self._session_codes(ids)
        return pa.array(code_of[at], pa.int64(), mask=~valid)

    def _create(self, name: str, table: pa.Table) -> None:
        self.con.register("arrow_in", self._coded(name, table))
        self.con.execute(f"CREATE TABLE {name}_all AS SELECT * FROM arrow_in")
        self.con.unregister("arrow_in")
        self.held.add(name)

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
        self.parts.clear()

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
        self.parts.clear()  # rows are appended without their held state: count afresh
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
            if name not in self.held:
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
        bring their kept facts, and the kept report parts of recent selections, up to
        date.

        ``tables`` holds the courses' complete current rows (none for a deleted course),
        so edits and deletions are applied as well as additions. Used by
        :mod:`prolo.outcomes.facts` after the database marked the courses as changed.
        """
        if not course_ids:
            return
        # A refresh of a few courses is a hundred small queries, each with more
        # scheduling than work: on one thread they cost less, and do not wait for a
        # second core that other work holds (measured: 0.13 s against 0.16 s at load 2,
        # 0.13 against 0.31 s at load 3, for 200 courses at registry scale).
        few = len(course_ids) <= FEW_COURSES
        if few:
            self.con.execute("SET threads TO 1")
        try:
            self._replace(tables, course_ids)
        finally:
            if few:
                self.con.execute(
                    f"SET threads TO {int(self.threads)}" if self.threads else "RESET threads"
                )

    def _replace(self, tables: RegistryTables, course_ids: Sequence[int]) -> None:
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
        # Kept report parts are updated by subtracting the touched courses' parts before
        # the change and adding those after it: the held rows are kept as they are
        # deleted (old_*), the new ones as they are inserted (scope_*).
        track = self.facts is not None and bool(self.parts)
        if track:
            self._held_patients(tables.courses, low, high, bool(n_known))
        for name in ("courses", "scores", "follow_ups", "flares", "adverse_events"):
            table = getattr(tables, name)
            held = name in self.held
            if held and n_known:
                deleted = _delete(
                    con,
                    f"DELETE FROM {name}_all WHERE course_id BETWEEN ? AND ? "
                    "AND course_id IN (FROM touched)",
                    [low, high],
                    keep=f"old_{name}" if track else None,
                )
                self._compact_later(f"{name}_all", deleted)
            elif held and track:
                con.execute(f"CREATE OR REPLACE TEMP TABLE old_{name} AS FROM {name}_all LIMIT 0")
            if held:
                # The touched courses' complete rows: their facts are computed from
                # these, not from a scan of the whole table.
                con.execute(f"CREATE OR REPLACE TEMP TABLE scope_{name} AS FROM {name}_all LIMIT 0")
            if table is None or not table.num_rows:
                continue
            if not held:
                self._create(name, table)
                self.has_flares = self.has_flares or name == "flares"
                self.has_adverse_events = self.has_adverse_events or name == "adverse_events"
                con.execute(f"CREATE OR REPLACE TEMP TABLE scope_{name} AS FROM {name}_all")
                # The report now covers a table it did not: count afresh.
                self.parts.clear()
                track = False
                continue
            con.register("arrow_in", self._coded(name, table))
            con.execute(f"INSERT INTO {name}_all SELECT * FROM arrow_in")
            con.execute(f"INSERT INTO scope_{name} SELECT * FROM arrow_in")
            con.unregister("arrow_in")
        self._refresh_touched_facts(
            prepared=True,
            known=bool(n_known),
            span=(int(low), int(high)) if n_known else None,
            track=track,
        )
        self._compact()

    def _held_patients(self, courses: pa.Table | None, low: Any, high: Any, known: bool) -> None:
        """Temp tables ``touched_patients`` (the patients of the touched courses, held or
        arriving) and ``old_patients`` (all their held courses), before the change."""
        con = self.con
        incoming = (
            courses.column("patient_id").cast(pa.int64())
            if courses is not None
            else pa.array([], pa.int64())
        )
        con.register("patients_in", pa.table({"patient_id": incoming}))
        held = (
            " UNION ALL SELECT patient_id FROM courses_all WHERE course_id BETWEEN ? AND ? "
            "AND course_id IN (FROM touched)"
            if known
            else ""
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE touched_patients AS SELECT DISTINCT patient_id "
            f"FROM (SELECT patient_id FROM patients_in{held}) WHERE patient_id IS NOT NULL",
            [low, high] if known else None,
        )
        con.unregister("patients_in")
        con.execute(
            "CREATE OR REPLACE TEMP TABLE old_patients AS FROM courses_all "
            "WHERE patient_id IN (FROM touched_patients)"
        )

    def _refresh_touched_facts(
        self,
        *,
        prepared: bool = False,
        known: bool = True,
        span: tuple[int, int] | None = None,
        track: bool = False,
    ) -> None:
        """Recompute the kept facts of the courses in temp table ``touched`` (from the
        ``scope_*`` tables when ``prepared``: their complete rows). ``known``: some
        touched courses may already have facts (else there is nothing to delete);
        ``span``: their id range, when known; ``track``: bring the kept report parts up
        to date too (:meth:`replace` kept the rows before and after the change)."""
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
                drop=False,
            )
            for fact in _FACT_TABLES:
                if not known:  # only new courses: no kept fact to replace
                    deleted = 0
                    if track:
                        run(f"CREATE OR REPLACE TEMP TABLE old_{fact} AS FROM kept_{fact} LIMIT 0")
                else:
                    within = "course_id BETWEEN ? AND ? AND " if span is not None else ""
                    deleted = _delete(
                        self.con,
                        f"DELETE FROM kept_{fact} WHERE {within}course_id IN (FROM touched)",
                        list(span) if span is not None else None,
                        keep=f"old_{fact}" if track else None,
                    )
                self._compact_later(f"kept_{fact}", deleted)
            if track:
                self._count_changes(run)
            for fact in _FACT_TABLES:
                run(f"INSERT INTO kept_{fact} SELECT * FROM new_{fact}")
                run(f"DROP TABLE new_{fact}")
            _drop_work_tables(run)

    def _count_changes(self, run: Run) -> None:
        """Bring every kept selection's report parts up to date with the touched courses,
        all selections in one pass: each touched course's rows before the change
        (``old_*``, sign -1) and after it (``scope_*`` and ``new_*``, sign 1), once for
        every kept selection it belongs to (column ``sel``), with that selection's
        cutoffs. Patients are counted over all courses of the touched patients, before
        and after."""
        keys = list(self.parts)
        cut = ", ".join(f"CAST(? AS DATE) AS cut{i}" for i in range(len(FOLLOW_UPS)))
        new_patients = (
            "(SELECT * FROM old_patients WHERE course_id NOT IN (FROM touched) "
            "UNION ALL BY NAME FROM scope_courses)"
        )
        courses: list[str] = []
        patients: list[str] = []
        params: list[Any] = []
        patient_params: list[Any] = []
        for i, (where, where_params, as_of) in enumerate(keys):
            for sign, before, after in (
                (-1, "old_courses", "old_patients"),
                (1, "scope_courses", new_patients),
            ):
                courses.append(
                    f"SELECT *, {sign} AS sign, {i} AS sel, {cut} FROM {before} WHERE {where}"
                )
                params += [*_cutoffs(as_of), *where_params]
                patients.append(f"SELECT *, {sign} AS sign, {i} AS sel FROM {after} WHERE {where}")
                patient_params += where_params
        run("CREATE OR REPLACE TEMP TABLE dc AS " + " UNION ALL BY NAME ".join(courses), params)
        run(
            "CREATE OR REPLACE TEMP TABLE dp AS " + " UNION ALL BY NAME ".join(patients),
            patient_params,
        )

        def both(old: str, new: str) -> str:
            """A table's rows of the touched courses before and after, per selection."""
            return " UNION ALL BY NAME ".join(
                f"SELECT t.*, d.sign, d.sel, d.cut0, d.cut1, d.cut2, d.cut3 FROM {table} t "
                f"JOIN dc d ON t.course_id = d.course_id AND d.sign = {sign}"
                for sign, table in ((-1, old), (1, new))
            ).join("()")

        run(f"SET perfect_ht_threshold = {DEFAULT_PERFECT_HASH_BITS}")  # small groupings
        changes = parts.count_changes(
            run,
            _sources(
                self,
                c="dc",
                patients="dp",
                facts={f: both(f"old_{f}", f"new_{f}") for f in _FACT_TABLES},
                scores=both("old_scores", "scope_scores"),
                follow_ups=both("old_follow_ups", "scope_follow_ups"),
                adverse_events=both("old_adverse_events", "scope_adverse_events"),
            ),
            len(keys),
        )
        for key, change in zip(keys, changes, strict=True):
            parts.merge(self.parts[key], change, 1)

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
    drop: bool = True,
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
        if scope == "c":
            courses = scope
        elif prepared:
            courses = "scope_courses"
        else:
            courses = f"(FROM courses_all SEMI JOIN {scope} USING (course_id))"
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
    if keep and drop:
        _drop_work_tables(run)
    return facts


def _drop_work_tables(run: Run) -> None:
    """Drop the tables one computation of course facts leaves behind."""
    tables = ["km_first", "touched_patients", "old_patients", "dc", "dp"]
    for name in ("courses", "scores", "follow_ups", "flares", "adverse_events"):
        tables += [f"scope_{name}", f"old_{name}"]
    tables += [f"old_{name}" for name in _FACT_TABLES]
    for name in tables:
        run(f"DROP TABLE IF EXISTS {name}")


def _delete(con: duckdb.DuckDBPyConnection, sql: str, params: Any, *, keep: str | None) -> int:
    """Run a DELETE; with ``keep``, the deleted rows go to temp table ``keep``. Returns
    how many rows were deleted."""
    if keep is None:
        row = con.execute(sql, params).fetchone()
        return int(row[0]) if row else 0
    deleted = con.execute(f"{sql} RETURNING *", params).arrow().read_all()
    con.register("deleted_in", deleted)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {keep} AS FROM deleted_in")
    con.unregister("deleted_in")
    return int(deleted.num_rows)


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
    kept = loaded.facts == _fact_key(rules)
    key = (where, tuple(params), as_of)
    counted = loaded.parts.get(key) if kept else None
    if counted is None:
        counted = _count_selection(loaded, run, where, params, as_of=as_of, rules=rules)
        if kept:
            loaded.parts[key] = counted
            while len(loaded.parts) > KEPT_SELECTIONS:
                loaded.parts.popitem(last=False)
    else:
        loaded.parts.move_to_end(key)
    return parts.finish(counted, name=loaded.name, rules=rules)


def _cutoffs(as_of: dt.date) -> list[dt.date]:
    """The latest start date at which each follow-up is due on ``as_of``."""
    return [as_of - dt.timedelta(days=tp.days) for tp in FOLLOW_UPS]


def _count_selection(
    loaded: LoadedRegistry,
    run: Run,
    where: str,
    params: list[Any],
    *,
    as_of: dt.date,
    rules: Mapping[str, InstrumentRule],
) -> parts.Parts:
    """The report's parts for the courses matching ``where``, counted from every row."""
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
    in_c = "WHERE course_id IN (SELECT course_id FROM c)" if filtered else ""
    # Kept facts cover every course: those of unselected courses are left out.
    semi = in_c if kept else ""

    def fact(name: str) -> str:
        return f"(SELECT * FROM {facts[name]} {semi})" if semi else facts[name]

    def rows(table: str) -> str:
        return f"(SELECT * FROM {table}_all {in_c})" if filtered else f"{table}_all"

    try:
        n_courses, span = run(
            "SELECT (SELECT count(*) FROM c), (SELECT CAST(max(patient_id) AS HUGEINT) "
            "- min(patient_id) + 1 FROM courses_all)"
        ).fetchone() or (0, 0)
        dense = bool(n_courses) and bool(span) and 4 * int(n_courses) >= int(span or 0)
        return parts.count(
            run,
            _sources(
                loaded,
                c="c",
                patients="c",
                facts={name: fact(name) for name in _FACT_TABLES},
                scores=rows("scores"),
                follow_ups=rows("follow_ups"),
                adverse_events=rows("adverse_events"),
            ),
            cutoffs=_cutoffs(as_of),
            patient_bits=PERFECT_HASH_BITS if dense else DEFAULT_PERFECT_HASH_BITS,
        )
    finally:
        _drop_work_tables(run)


def _sources(
    loaded: LoadedRegistry,
    *,
    c: str,
    patients: str,
    facts: Mapping[str, str],
    scores: str,
    follow_ups: str,
    adverse_events: str,
) -> parts.Sources:
    return parts.Sources(
        c=c,
        patients=patients,
        pc=facts["pc"],
        km=facts["km"],
        sg=facts["sg"],
        scores=scores,
        follow_ups=follow_ups,
        fa=facts["fa"] if loaded.has_flares else None,
        fs=facts["fs"] if loaded.has_flares else None,
        adverse_events=adverse_events if loaded.has_adverse_events else None,
        primary=loaded.code("scores", "instrument_id", PRIMARY_INSTRUMENT),
    )
