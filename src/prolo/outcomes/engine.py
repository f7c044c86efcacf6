# ruff: noqa: S608  (SQL text is built from this module's own constants; values are bound)
"""The outcome report's aggregates on DuckDB, an embedded columnar engine.

DuckDB reads the registry as Arrow tables (from the application database through
SQLAlchemy, see :mod:`prolo.outcomes.service`, or from a Parquet snapshot) without
copying them, and runs the report as a handful of grouped scans. No DuckDB extension
is loaded: extensions download at run time, and prolo never reaches the internet.

The definitions live in :mod:`prolo.outcomes.report`; :mod:`prolo.outcomes.baseline_pandas`
computes the same aggregates with pandas, and the tests hold the two together.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import duckdb
import numpy as np

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
    rules_table,
)

__all__ = ["compute"]

TRACE = False  # set by the benchmark to time each query
TIMINGS: list[tuple[float, str]] = []

_FILTERS = (
    ("clinic_id", "clinic_id = ?"),
    ("condition_id", "condition_id = ?"),
    ("practitioner_id", "practitioner_id = ?"),
    ("injectate", "injectate = ?"),
    ("started_from", "started_on >= ?"),
    ("started_to", "started_on <= ?"),
)


def _where(selection: Selection) -> tuple[str, list[Any]]:
    clauses, params = [], []
    for name, clause in _FILTERS:
        value = getattr(selection, name)
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return (" AND ".join(clauses) or "TRUE"), params


def _f(value: Any) -> float | None:
    return None if value is None else float(value)


class LoadedRegistry:
    """The registry copied into DuckDB's own columnar tables, ready for many reports.

    Copying once from Arrow costs about as much as one scan; after it every query reads
    DuckDB's compressed native storage instead of converting Arrow vectors again. The
    benchmark times this step apart, as it times pandas' conversion from Arrow apart.
    """

    def __init__(self, tables: RegistryTables, *, threads: int | None = None) -> None:
        self.con = duckdb.connect(":memory:")
        self.con.execute("SET preserve_insertion_order = false")
        if threads:
            self.con.execute(f"SET threads TO {int(threads)}")
        self.has_flares = tables.flares is not None
        self.has_adverse_events = tables.adverse_events is not None
        for name, table in (
            ("courses_all", tables.courses),
            ("scores_all", tables.scores),
            ("follow_ups_all", tables.follow_ups),
            ("flares_all", tables.flares),
            ("adverse_all", tables.adverse_events),
        ):
            if table is not None:
                self.con.register(f"{name}_arrow", table)
                self.con.execute(f"CREATE TABLE {name} AS SELECT * FROM {name}_arrow")
                self.con.unregister(f"{name}_arrow")

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


def _compute(
    loaded: LoadedRegistry,
    selection: Selection,
    *,
    as_of: dt.date,
    rules: Mapping[str, InstrumentRule],
) -> Aggregates:
    con = loaded.con
    timings = TIMINGS if TRACE else None

    def run(sql: str, params: Any = None) -> duckdb.DuckDBPyConnection:
        if timings is None:
            return con.execute(sql, params)
        import time

        start, cpu = time.perf_counter(), time.process_time()
        result = con.execute(sql, params)
        label = f"cpu {time.process_time() - cpu:.3f} s  " + " ".join(sql.split())[:80]
        timings.append((time.perf_counter() - start, label))
        return result

    con.register("rules", rules_table(rules))
    for temp in ("fr", "lc", "pc"):
        run(f"DROP TABLE IF EXISTS {temp}")
    run("DROP VIEW IF EXISTS c")
    run("DROP TABLE IF EXISTS c")
    where, params = _where(selection)
    filtered = where != "TRUE"
    if filtered:
        run(f"CREATE TEMP TABLE c AS SELECT * FROM courses_all WHERE {where}", params)
    else:
        run("CREATE TEMP VIEW c AS SELECT * FROM courses_all")
    in_c = "WHERE course_id IN (SELECT course_id FROM c)" if filtered else ""
    agg = Aggregates()

    row = run(
        """
        SELECT count(*), count(DISTINCT patient_id),
               count(*) FILTER (WHERE started_on IS NOT NULL),
               count(DISTINCT patient_id) FILTER (WHERE started_on IS NOT NULL),
               avg(sessions_done) FILTER (WHERE started_on IS NOT NULL),
               median(sessions_done) FILTER (WHERE started_on IS NOT NULL),
               min(sessions_done) FILTER (WHERE started_on IS NOT NULL),
               max(sessions_done) FILTER (WHERE started_on IS NOT NULL),
               avg(planned_sessions) FILTER (WHERE started_on IS NOT NULL)
        FROM c
        """
    ).fetchone()
    assert row is not None  # noqa: S101  (an aggregate always returns a row)
    agg.n_courses, agg.n_patients, agg.n_started, agg.n_patients_treated = map(int, row[:4])
    agg.sessions_n = agg.n_started
    agg.sessions_mean, agg.sessions_median = _f(row[4]), _f(row[5])
    agg.sessions_min = None if row[6] is None else int(row[6])
    agg.sessions_max = None if row[7] is None else int(row[7])
    agg.planned_mean = _f(row[8])
    agg.status_counts = {
        str(k): int(n) for k, n in run("SELECT status, count(*) FROM c GROUP BY 1").fetchall()
    }
    agg.stop_reasons = {
        str(k): int(n)
        for k, n in run(
            "SELECT stop_reason, count(*) FROM c WHERE stop_reason IS NOT NULL GROUP BY 1"
        ).fetchall()
    }

    tps = [t.key for t in FOLLOW_UPS]
    value_columns = ", ".join(
        f"avg(value) FILTER (WHERE timepoint = '{tp}') AS v{i}" for i, tp in enumerate(tps)
    )
    wanted = ", ".join(f"'{tp}'" for tp in ("baseline", *tps))
    score_source = f"(SELECT * FROM scores_all {in_c})" if filtered else "scores_all"
    run(
        f"""
        CREATE TEMP TABLE pc AS
        SELECT p.*, c.started_on
        FROM (
            SELECT course_id, instrument_id,
                   avg(value) FILTER (WHERE timepoint = 'baseline') AS b, {value_columns}
            FROM {score_source}
            WHERE timepoint IN ({wanted}) AND instrument_id IN (
                SELECT DISTINCT instrument_id FROM {score_source} WHERE timepoint = 'baseline'
            )
            GROUP BY course_id, instrument_id
        ) p JOIN c USING (course_id)
        WHERE p.b IS NOT NULL
        """
    )
    agg.instruments_seen = sorted(
        str(r[0]) for r in run(f"SELECT DISTINCT instrument_id FROM {score_source}").fetchall()
    )
    agg.baseline = {
        str(k): (int(n), _f(m), _f(sd))
        for k, n, m, sd in run(
            "SELECT instrument_id, count(*), avg(b), stddev_samp(b) FROM pc GROUP BY 1"
        ).fetchall()
    }

    columns = []
    change_params: list[Any] = []
    for i, tp in enumerate(FOLLOW_UPS):
        v = f"v{i}"
        improvement = f"(CASE WHEN r.higher_is_better THEN {v} - b ELSE b - {v} END)"
        columns.append(
            f"""count({v}), avg({v} - b), stddev_samp({v} - b),
                avg(b) FILTER (WHERE {v} IS NOT NULL), avg({v}),
                count(*) FILTER (WHERE {v} IS NOT NULL AND {improvement} >= r.mcid),
                count(*) FILTER (WHERE {v} IS NOT NULL AND b > 0),
                count(*) FILTER (WHERE {v} IS NOT NULL AND b > 0 AND (b - {v}) * 10 >= 3 * b),
                count(*) FILTER (WHERE {v} IS NOT NULL AND b > 0 AND (b - {v}) * 2 >= b),
                count(*) FILTER (WHERE {v} IS NOT NULL OR started_on <= ?)"""
        )
        change_params.append(as_of - dt.timedelta(days=tp.days))
    width = 10
    for r in run(
        f"""
        SELECT instrument_id, {", ".join(columns)}
        FROM pc LEFT JOIN rules r USING (instrument_id)
        GROUP BY instrument_id
        """,
        change_params,
    ).fetchall():
        for i, tp in enumerate(FOLLOW_UPS):
            x = r[1 + i * width : 1 + (i + 1) * width]
            agg.change[(str(r[0]), tp.key)] = ChangeAgg(
                n=int(x[0]),
                mean=_f(x[1]),
                sd=_f(x[2]),
                baseline_mean=_f(x[3]),
                follow_up_mean=_f(x[4]),
                responders=int(x[5]),
                pct_n=int(x[6]),
                pct30=int(x[7]),
                pct50=int(x[8]),
                eligible=int(x[9]),
            )

    primary = rules.get(PRIMARY_INSTRUMENT)
    has_primary = PRIMARY_INSTRUMENT in agg.baseline and primary is not None
    if has_primary and primary is not None:
        imp = "s.value - pb.b" if primary.higher_is_better else "pb.b - s.value"
        n_primary = agg.baseline[PRIMARY_INSTRUMENT][0]
        m = float("inf") if primary.mcid is None else float(primary.mcid)
        # One pass over the primary instrument's later scores: the first responding day,
        # the last day, and the (few) non-responding days, from which durability follows.
        run(
            f"""
            CREATE TEMP TABLE fr AS
            SELECT s.course_id, min(s.day) FILTER (WHERE {imp} >= ?) AS first_day,
                   max(s.day) AS last_day, list(s.day) FILTER (WHERE {imp} < ?) AS nonresp
            FROM {score_source} s
            JOIN (SELECT course_id, b FROM pc WHERE instrument_id = ?) pb USING (course_id)
            WHERE s.instrument_id = ? AND s.timepoint <> 'baseline' AND s.day > 0
            GROUP BY s.course_id
            """,
            [m, m, PRIMARY_INSTRUMENT, PRIMARY_INSTRUMENT],
        )
        n_post = run("SELECT count(*) FROM fr").fetchone() or (0,)
        agg.no_post_baseline = n_primary - int(n_post[0])
        if primary.mcid is not None:
            agg.km_response = [
                (int(t), int(d), int(c))
                for t, d, c in run(
                    """
                    SELECT coalesce(first_day, last_day) AS t, count(first_day),
                           count(*) - count(first_day)
                    FROM fr GROUP BY t ORDER BY t
                    """
                ).fetchall()
            ]
            agg.km_durability = [
                (int(t), int(d), int(c))
                for t, d, c in run(
                    """
                    SELECT coalesce(loss, last_day) - first_day AS t, count(loss),
                           count(*) - count(loss)
                    FROM (
                        SELECT first_day, last_day,
                               list_min(list_filter(nonresp, lambda d: d > first_day)) AS loss
                        FROM fr WHERE first_day IS NOT NULL
                    ) GROUP BY t ORDER BY t
                    """
                ).fetchall()
            ]

        latest = "coalesce(v3, v2, v1, v0)"
        sign = f"{latest} - b" if primary.higher_is_better else f"b - {latest}"
        mcid_value = float("inf") if primary.mcid is None else float(primary.mcid)
        run(
            f"""
            CREATE TEMP TABLE lc AS
            SELECT course_id, b, {latest} AS latest, {latest} - b AS ch, ({sign}) >= ? AS resp
            FROM pc WHERE instrument_id = ? AND {latest} IS NOT NULL
            """,
            [mcid_value, PRIMARY_INSTRUMENT],
        )
        agg.waterfall_percent = primary.pain
        waterfall_sql = (
            "SELECT 100.0 * (latest - b) / b FROM lc WHERE b > 0"
            if primary.pain
            else "SELECT ch FROM lc"
        )
        column = next(iter(run(waterfall_sql).fetchnumpy().values()))
        agg.waterfall = np.asarray(column, dtype=np.float64)
        join_lc = "LEFT JOIN lc USING (course_id)"
        ch, resp = "lc.ch", "lc.resp"
    else:
        join_lc, ch, resp = "", "CAST(NULL AS DOUBLE)", "FALSE"

    keys = {
        "condition_id": "CAST(c.condition_id AS VARCHAR)",
        "practitioner_id": "coalesce(CAST(c.practitioner_id AS VARCHAR), 'none')",
        "start_year": "coalesce(CAST(year(c.started_on) AS VARCHAR), 'not started')",
    }
    for dim, key in keys.items():
        agg.breakdowns[dim] = [
            GroupAgg(
                key=str(k),
                courses=int(n),
                n=int(nc),
                mean=_f(mean),
                sd=_f(sd),
                responders=int(rs),
            )
            for k, n, nc, mean, sd, rs in run(
                f"""
                SELECT {key} AS k, count(*), count({ch}), avg({ch}), stddev_samp({ch}),
                       count(*) FILTER (WHERE {resp})
                FROM c {join_lc} GROUP BY k ORDER BY k
                """
            ).fetchall()
        ]

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
        agg.follow_ups[str(r[0])] = FollowUpAgg(
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
        f"""
        SELECT count(*), count(*) FILTER (WHERE coalesce(q.done, FALSE)),
               count(*) FILTER (WHERE NOT coalesce(q.done, FALSE) AND coalesce(q.known12, FALSE))
        FROM (SELECT DISTINCT course_id FROM {f_source}
              WHERE timepoint = 'baseline' AND surgery_planned) p
        LEFT JOIN (
            SELECT course_id, bool_or(surgery_done) AS done,
                   bool_or(timepoint = 'month_12' AND surgery_done IS NOT NULL) AS known12
            FROM {f_source} WHERE timepoint <> 'baseline' GROUP BY course_id
        ) q USING (course_id)
        """
    ).fetchone()
    assert surgery is not None  # noqa: S101
    agg.surgery_planned, agg.surgery_done, agg.surgery_avoided = map(int, surgery)

    if loaded.has_flares:
        fl_source = f"(SELECT * FROM flares_all {in_c})" if filtered else "flares_all"
        base = "(SELECT course_id, b FROM pc WHERE instrument_id = ?)"
        fl = run(
            f"""
            SELECT count(*) FILTER (WHERE b IS NOT NULL),
                   count(*) FILTER (WHERE flare_days > 0),
                   avg(peak) FILTER (WHERE flare_days > 0),
                   stddev_samp(peak) FILTER (WHERE flare_days > 0),
                   avg(flare_days) FILTER (WHERE flare_days > 0),
                   stddev_samp(flare_days) FILTER (WHERE flare_days > 0),
                   count(*) FILTER (WHERE b IS NULL)
            FROM (
                SELECT fl.session_id, any_value(bl.b) AS b, max(fl.pain) AS peak,
                       count(*) FILTER (WHERE fl.pain >= bl.b + ?) AS flare_days
                FROM {fl_source} fl LEFT JOIN {base} bl USING (course_id)
                GROUP BY fl.session_id
            )
            """,
            [FLARE_RISE, PRIMARY_INSTRUMENT],
        ).fetchone()
        assert fl is not None  # noqa: S101
        agg.flares = {
            "sessions": int(fl[0]),
            "flared": int(fl[1]),
            "peak_mean": _f(fl[2]),
            "peak_sd": _f(fl[3]),
            "duration_mean": _f(fl[4]),
            "duration_sd": _f(fl[5]),
            "not_evaluable": int(fl[6]),
        }
    if loaded.has_adverse_events:
        ae_source = f"(SELECT * FROM adverse_all {in_c})" if filtered else "adverse_all"
        agg.adverse_events = {
            str(k): int(n)
            for k, n in run(f"SELECT kind, count(*) FROM {ae_source} GROUP BY 1").fetchall()
        }
    return agg
