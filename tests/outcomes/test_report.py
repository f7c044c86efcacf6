"""The report's definitions, worked by hand, and the DuckDB engine held to pandas."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prolo.outcomes import baseline_pandas, engine
from prolo.outcomes.report import (
    COURSE_SCHEMA,
    FLARE_SCHEMA,
    FOLLOW_UP_SCHEMA,
    SCORE_SCHEMA,
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
