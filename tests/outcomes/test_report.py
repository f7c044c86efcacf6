"""The report's definitions, worked by hand, and the DuckDB engine held to pandas."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prolo.outcomes import baseline_pandas, engine, parts
from prolo.outcomes.report import (
    COURSE_SCHEMA,
    FLARE_SCHEMA,
    FOLLOW_UP_SCHEMA,
    SCORE_SCHEMA,
    InstrumentRule,
    RegistryTables,
    Selection,
    build_report,
    compare_aggregates,
    instrument_rules,
)
from prolo.outcomes.survival import kaplan_meier, kaplan_meier_from_counts
from prolo.synth import registry_tables

AS_OF = dt.date(2026, 8, 1)
START = dt.date(2026, 1, 1)
RULES = instrument_rules()


def _tables(columns: dict[str, list[Any]], schema: pa.Schema) -> pa.Table:
    return pa.table(
        {n: pa.array(columns[n], schema.field(n).type) for n in schema.names}, schema=schema
    )


def tiny() -> RegistryTables:
    """Three courses whose every figure is worked out by hand in the tests below."""
    courses = _tables(
        {
            "course_id": [1, 2, 3],
            "clinic_id": [1, 1, 1],
            "patient_id": [11, 12, 13],
            "practitioner_id": [10, 20, None],
            "condition_id": ["knee-osteoarthritis", "knee-osteoarthritis", "low-back-pain"],
            "injectate": ["D25", "D15", "D25"],
            "status": ["completed", "stopped", "planned"],
            "stop_reason": [None, "no_response", None],
            "planned_sessions": [4, 4, 3],
            "sessions_done": [4, 2, 0],
            "started_on": [START, START, None],
        },
        COURSE_SCHEMA,
    )
    rows = [
        (1, "baseline", 0, 8.0),
        (1, "pre_session", 28, 7.0),
        (1, "week_6", 42, 5.0),
        (1, "month_3", 91, 6.0),
        (1, "month_6", 182, 7.0),
        (2, "baseline", 0, 6.0),
        (2, "pre_session", 28, 6.0),
        (2, "month_3", 91, 5.0),
    ]
    # PGIC is asked only at follow-ups: it has no baseline, so no change.
    instruments = ["pain-nrs"] * len(rows) + ["pgic"]
    rows.append((1, "month_3", 91, 2.0))
    scores = _tables(
        {
            "course_id": [r[0] for r in rows],
            "instrument_id": instruments,
            "timepoint": [r[1] for r in rows],
            "day": [r[2] for r in rows],
            "value": [r[3] for r in rows],
        },
        SCORE_SCHEMA,
    )
    follow = _tables(
        {
            "course_id": [1, 1, 2, 2],
            "timepoint": ["baseline", "month_6", "baseline", "month_12"],
            "surgery_planned": [True, True, True, False],
            "surgery_done": [None, False, None, True],
            "pain_medicine_use": [True, False, True, None],
            "opioid_use": [True, False, False, None],
            "opioid_mme_per_day": [30.0, 0.0, 0.0, None],
        },
        FOLLOW_UP_SCHEMA,
    )
    flares = _tables(
        {
            "course_id": [1, 1, 1, 3],
            "session_id": [100, 100, 101, 300],
            "day": [1, 2, 1, 1],
            "pain": [9, 10, 8, 9],
        },
        FLARE_SCHEMA,
    )
    return RegistryTables(courses, scores, follow, flares=flares)


@pytest.mark.parametrize("compute", [engine.compute, baseline_pandas.compute])
def test_the_worked_example(compute: Any) -> None:
    agg = compute(tiny(), Selection(), as_of=AS_OF, rules=RULES)
    assert (agg.n_courses, agg.n_started, agg.n_patients_treated) == (3, 2, 2)
    assert agg.instruments_seen == ["pain-nrs", "pgic"] and "pgic" not in agg.baseline
    assert (agg.sessions_mean, agg.sessions_median) == (3.0, 3.0)
    assert agg.stop_reasons == {"no_response": 1}
    week6 = agg.change[("pain-nrs", "week_6")]
    # Course 1: 8 -> 5 is -3, a response (>= 2) and a 37.5% reduction (>= 30%, < 50%);
    # course 2 is due (started 212 days before) but did not answer.
    assert (week6.n, week6.mean, week6.eligible) == (1, -3.0, 2)
    assert (week6.responders, week6.pct30, week6.pct50) == (1, 1, 0)
    month3 = agg.change[("pain-nrs", "month_3")]
    assert (month3.n, month3.mean, month3.responders) == (2, -1.5, 1)  # -2 and -1
    assert month3.sd == pytest.approx(math.sqrt(0.5))
    month12 = agg.change[("pain-nrs", "month_12")]
    assert (month12.n, month12.eligible) == (0, 0)  # not due for anyone yet
    # First response: course 1 at day 42; course 2 never, censored at its last score (91).
    assert agg.km_response == [(42, 1, 0), (91, 0, 1)]
    # Course 1 still responds at 91 (improvement exactly 2), loses it at 182: 140 days.
    assert agg.km_durability == [(140, 1, 0)]
    assert sorted(agg.waterfall.round(4)) == [round(-100 / 6, 4), -12.5]
    assert (agg.surgery_planned, agg.surgery_done, agg.surgery_avoided) == (2, 1, 0)
    base = agg.follow_ups["baseline"]
    assert (base.medicine_users, base.opioid_users, base.mme_n, base.mme_mean) == (2, 1, 1, 30.0)
    # Baseline pain 8: a flare day needs 10 or more. Session 300's course has no baseline.
    assert agg.flares == {
        "sessions": 2,
        "flared": 1,
        "peak_mean": 10.0,
        "peak_sd": None,
        "duration_mean": 1.0,
        "duration_sd": None,
        "not_evaluable": 1,
    }
    by_condition = {g.key: (g.courses, g.n) for g in agg.breakdowns["condition_id"]}
    assert by_condition == {"knee-osteoarthritis": (2, 2), "low-back-pain": (1, 0)}


def _walk(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _walk(v)]
    if isinstance(value, list | tuple):
        return [x for v in value for x in _walk(v)]
    return [value] if isinstance(value, float) else []


def test_the_report_says_no_data_instead_of_nan() -> None:
    tables = tiny()
    report = build_report(
        engine.compute(tables, Selection(), as_of=AS_OF, rules=RULES),
        selection=Selection(),
        as_of=AS_OF,
        rules=RULES,
    )
    assert all(math.isfinite(x) for x in _walk(report))
    pgic = next(i for i in report["instruments"] if i["id"] == "pgic")
    assert pgic["baseline"]["n"] == 0 and "never answered at baseline" in pgic["note"]
    month12 = report["instruments"][0]["follow_ups"][3]
    assert month12["change"]["mean"] is None and "No follow-up is due" in month12["note"]
    empty = build_report(
        engine.compute(tables, Selection(condition_id="nothing"), as_of=AS_OF, rules=RULES),
        selection=Selection(condition_id="nothing"),
        as_of=AS_OF,
        rules=RULES,
    )
    assert empty["empty"] is True and empty["instruments"] == []
    assert empty["time_to_response"] is None and empty["surgery"]["avoided"]["share"] is None
    assert all(math.isfinite(x) for x in _walk(empty))


@pytest.fixture(scope="module")
def registry() -> RegistryTables:
    return registry_tables(4000, seed=3, as_of=AS_OF, patients_per_clinic=1000)


@pytest.mark.parametrize(
    "selection",
    [
        Selection(),
        Selection(clinic_id=2),
        Selection(condition_id="knee-osteoarthritis"),
        Selection(practitioner_id=3, started_from=dt.date(2025, 1, 1)),
        Selection(injectate="Dextrose 25% (synthetic)", started_to=dt.date(2025, 12, 31)),
        Selection(clinic_id=99),
    ],
)
def test_engine_and_pandas_give_the_same_numbers(
    registry: RegistryTables, selection: Selection
) -> None:
    a = engine.compute(registry, selection, as_of=AS_OF, rules=RULES)
    b = baseline_pandas.compute(registry, selection, as_of=AS_OF, rules=RULES)
    assert compare_aggregates(a, b) == []
    if selection.clinic_id != 99:
        assert a.n_courses > 0 and a.change  # the comparison compared something


def test_a_snapshot_round_trips(registry: RegistryTables, tmp_path: Any) -> None:
    registry.write_parquet(tmp_path)
    again = RegistryTables.read_parquet(tmp_path)
    a = engine.compute(registry, Selection(), as_of=AS_OF, rules=RULES)
    b = engine.compute(again, Selection(), as_of=AS_OF, rules=RULES)
    assert compare_aggregates(a, b) == []
    with pytest.raises(ValueError, match="not a registry snapshot"):
        RegistryTables.read_parquet(tmp_path / "missing")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.booleans()), min_size=1, max_size=40))
def test_km_from_counts_equals_km_from_subjects(subjects: list[tuple[int, bool]]) -> None:
    counts: dict[int, list[int]] = {}
    for t, event in subjects:
        counts.setdefault(t, [0, 0])[0 if event else 1] += 1
    times = sorted(counts)
    from_counts = kaplan_meier_from_counts(
        times, [counts[t][0] for t in times], [counts[t][1] for t in times]
    )
    direct = kaplan_meier([t for t, _ in subjects], [int(e) for _, e in subjects])
    assert from_counts == direct


# --------------------------------------------------------------------------- #
# the engine's fast paths: each must give the numbers the definitions give


def test_duplicate_scores_at_a_timepoint_are_averaged() -> None:
    """Two baselines (6 and 8) make a baseline of 7; two 3-month scores (4 and 5) make 4.5."""
    tables = tiny()
    extra = _tables(
        {
            "course_id": [2, 2],
            "instrument_id": ["pain-nrs", "pain-nrs"],
            "timepoint": ["baseline", "month_3"],
            "day": [0, 91],
            "value": [8.0, 4.0],
        },
        SCORE_SCHEMA,
    )
    tables.scores = pa.concat_tables([tables.scores, extra])
    for compute in (engine.compute, baseline_pandas.compute):
        agg = compute(tables, Selection(), as_of=AS_OF, rules=RULES)
        month3 = agg.change[("pain-nrs", "month_3")]
        # Course 1: 8 -> 6 is -2; course 2: 7 -> 4.5 is -2.5 (a response: 2.5 >= 2).
        assert (month3.n, month3.mean, month3.responders) == (2, -2.25, 2)
        assert agg.baseline["pain-nrs"][:2] == (2, 7.5)
    a = engine.compute(tables, Selection(), as_of=AS_OF, rules=RULES)
    b = baseline_pandas.compute(tables, Selection(), as_of=AS_OF, rules=RULES)
    assert compare_aggregates(a, b) == []


def test_one_loaded_registry_serves_many_selections_in_turn(registry: RegistryTables) -> None:
    loaded = engine.load(registry)
    try:
        for selection in (
            Selection(clinic_id=2),
            Selection(),
            Selection(condition_id="knee-osteoarthritis"),
            Selection(clinic_id=99),
            Selection(),
        ):
            a = engine.compute(loaded, selection, as_of=AS_OF, rules=RULES)
            b = baseline_pandas.compute(registry, selection, as_of=AS_OF, rules=RULES)
            assert compare_aggregates(a, b) == [], selection
    finally:
        loaded.close()


def test_sparse_course_ids_give_the_same_numbers(registry: RegistryTables) -> None:
    """Course ids spread over nearly all of BIGINT (no perfect hash table) change nothing."""

    def spread(table: pa.Table) -> pa.Table:
        ids = pc.multiply(table["course_id"], 2**50)
        return table.set_column(table.schema.get_field_index("course_id"), "course_id", ids)

    sparse = RegistryTables(
        courses=spread(registry.courses),
        scores=spread(registry.scores),
        follow_ups=spread(registry.follow_ups),
        flares=spread(registry.flares) if registry.flares is not None else None,
    )
    a = engine.compute(registry, Selection(), as_of=AS_OF, rules=RULES)
    b = engine.compute(sparse, Selection(), as_of=AS_OF, rules=RULES)
    assert compare_aggregates(a, b) == []
    assert a.n_courses == 4000 and a.km_response


def _split(tables: RegistryTables, seed: int) -> tuple[RegistryTables, list[RegistryTables]]:
    """The registry as it stood, and three batches of rows that arrive later: new courses
    with all their rows, a course whose status changes, and scattered new rows."""
    rng = np.random.default_rng(seed)
    new = pa.array(range(3801, 4001), pa.int64())

    def of_new(table: pa.Table) -> pa.Array:
        return pc.is_in(table["course_id"], new)

    later_rows = {}
    first = {}
    for name in ("scores", "follow_ups", "flares"):
        table = getattr(tables, name)
        late = pa.array(rng.random(table.num_rows) < 0.1)
        keep = pc.and_(pc.invert(late), pc.invert(of_new(table)))
        first[name] = table.filter(keep)
        later_rows[name] = table.filter(pc.and_(late, pc.invert(of_new(table))))
    courses = tables.courses.filter(pc.invert(of_new(tables.courses)))
    changed = courses.slice(10, 1)
    status = changed.schema.get_field_index("status")
    changed = changed.set_column(status, "status", pa.array(["stopped"], pa.string()))
    batches = [
        RegistryTables(
            courses=tables.courses.filter(of_new(tables.courses)),
            scores=tables.scores.filter(of_new(tables.scores)),
            follow_ups=tables.follow_ups.filter(of_new(tables.follow_ups)),
            flares=tables.flares.filter(of_new(tables.flares)),
        ),
        RegistryTables(
            courses=changed,
            scores=tables.scores.slice(0, 0),
            follow_ups=tables.follow_ups.slice(0, 0),
        ),
        RegistryTables(
            courses=tables.courses.slice(0, 0),
            scores=later_rows["scores"],
            follow_ups=later_rows["follow_ups"],
            flares=later_rows["flares"],
        ),
    ]
    start = RegistryTables(
        courses=courses,
        scores=first["scores"],
        follow_ups=first["follow_ups"],
        flares=first["flares"],
    )
    return start, batches


def test_kept_course_facts_follow_arriving_rows(registry: RegistryTables) -> None:
    start, batches = _split(registry, seed=5)
    # What the registry holds at the end: the changed course replaces the old one.
    changed = batches[1].courses
    final_courses = pa.concat_tables(
        [
            registry.courses.filter(
                pc.invert(pc.is_in(registry.courses["course_id"], changed["course_id"]))
            ),
            changed,
        ]
    )
    final = RegistryTables(
        courses=final_courses,
        scores=registry.scores,
        follow_ups=registry.follow_ups,
        flares=registry.flares,
    )
    loaded = engine.load(start)
    try:
        loaded.keep_facts(RULES)
        assert loaded.facts is not None
        before = engine.compute(loaded, Selection(), as_of=AS_OF, rules=RULES)
        assert (
            compare_aggregates(before, engine.compute(start, Selection(), as_of=AS_OF, rules=RULES))
            == []
        )
        for batch in batches:
            loaded.ingest(batch)
        for selection in (Selection(), Selection(clinic_id=4), Selection(practitioner_id=3)):
            kept = engine.compute(loaded, selection, as_of=AS_OF, rules=RULES)
            expected = baseline_pandas.compute(final, selection, as_of=AS_OF, rules=RULES)
            assert compare_aggregates(kept, expected) == [], selection
        assert kept.n_courses > 0 and kept.change
        # Facts kept for one MCID are not used with another: the report is computed afresh.
        other = dict(RULES)
        other["pain-nrs"] = replace(RULES["pain-nrs"], mcid=3.0)
        a = engine.compute(loaded, Selection(), as_of=AS_OF, rules=other)
        b = baseline_pandas.compute(final, Selection(), as_of=AS_OF, rules=other)
        assert compare_aggregates(a, b) == []
        assert a.km_response != before.km_response
    finally:
        loaded.close()


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 10), st.integers(0, 10), st.integers(1, 5)),
        min_size=1,
        max_size=30,
        unique_by=lambda t: (t[0], t[1]),
    ),
    st.booleans(),
    st.sampled_from([None, 1.0, 2.0, 2.5]),
)
def test_change_from_counts_equals_pair_by_pair(
    pairs: list[tuple[int, int, int]], higher: bool, mcid: float | None
) -> None:
    rule = InstrumentRule("x", "x", higher, mcid, True)
    b = np.array([p[0] for p in pairs], np.float64) / 2  # half points, as means make
    v = np.array([p[1] for p in pairs], np.float64)
    w = np.array([p[2] for p in pairs], np.int64)
    got = parts.change_from_counts(b, v, w, rule)
    rows_b, rows_v = np.repeat(b, w), np.repeat(v, w)
    change = rows_v - rows_b
    improvement = change if higher else rows_b - rows_v
    assert got.n == len(rows_b)
    assert got.mean == pytest.approx(change.mean(), rel=1e-12, abs=1e-12)
    if got.n > 1:
        assert got.sd == pytest.approx(change.std(ddof=1), rel=1e-9, abs=1e-12)
    else:
        assert got.sd is None
    assert got.baseline_mean == pytest.approx(
        rows_b.mean()
    ) and got.follow_up_mean == pytest.approx(rows_v.mean())
    assert got.responders == (int((improvement >= mcid).sum()) if mcid is not None else 0)
    positive = rows_b > 0
    assert got.pct_n == int(positive.sum())
    assert got.pct30 == int((positive & ((rows_b - rows_v) * 10 >= 3 * rows_b)).sum())
    assert got.pct50 == int((positive & ((rows_b - rows_v) * 2 >= rows_b)).sum())


def test_a_snapshot_reads_back_dictionary_encoded_and_pandas_agrees(
    registry: RegistryTables, tmp_path: Any
) -> None:
    registry.write_parquet(tmp_path)
    again = RegistryTables.read_parquet(tmp_path)
    assert pa.types.is_dictionary(again.scores.schema.field("instrument_id").type)
    a = engine.compute(again, Selection(clinic_id=3), as_of=AS_OF, rules=RULES)
    b = baseline_pandas.compute(again, Selection(clinic_id=3), as_of=AS_OF, rules=RULES)
    c = baseline_pandas.compute(registry, Selection(clinic_id=3), as_of=AS_OF, rules=RULES)
    assert compare_aggregates(a, b) == [] and compare_aggregates(b, c) == []


def test_diary_sessions_are_numbered_in_arrival_order() -> None:
    loaded = engine.load(tiny())  # sessions 100, 101, 300
    try:
        assert loaded.sessions is not None and sorted(loaded.sessions.tolist()) == [100, 101, 300]
        codes = loaded._session_codes(pa.array([300, 7, None, 100, 7], pa.int64()))
        known = loaded.sessions.tolist()
        assert codes.to_pylist() == [known.index(300), 3, None, known.index(100), 3]
        assert known[3] == 7
    finally:
        loaded.close()
