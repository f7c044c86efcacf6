"""Kept report parts: after every replace, the parts a kept registry holds for each recent
selection equal the parts counted afresh, and the report from them equals pandas."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from prolo.outcomes import baseline_pandas, engine, parts
from prolo.outcomes.report import (
    ADVERSE_EVENT_SCHEMA,
    RegistryTables,
    Selection,
    compare_aggregates,
    instrument_rules,
)
from prolo.synth import registry_tables

AS_OF = dt.date(2026, 6, 1)
RULES = instrument_rules()
NAMES = ("courses", "scores", "follow_ups", "flares", "adverse_events")
# Kept selections, each with its report date: follow-ups are due by the report date.
SELECTIONS = (
    (Selection(), AS_OF),
    (Selection(), AS_OF - dt.timedelta(days=200)),
    (Selection(clinic_id=2), AS_OF),
    (Selection(condition_id="knee-osteoarthritis", started_from=dt.date(2025, 1, 1)), AS_OF),
    (Selection(practitioner_id=3), AS_OF),
)


@pytest.fixture(scope="module")
def registry() -> RegistryTables:
    return registry_tables(1500, seed=11, as_of=AS_OF, patients_per_clinic=500)


def _rows_of(tables: RegistryTables, ids: pa.Array, *, keep: bool) -> RegistryTables:
    """The rows of courses ``ids`` (``keep``), or every other row."""
    out: dict[str, Any] = {}
    for name in NAMES:
        table = getattr(tables, name)
        if table is not None:
            chosen = pc.is_in(table["course_id"], ids)
            table = table.filter(chosen if keep else pc.invert(chosen))
        out[name] = table
    return RegistryTables(**out)


def _apply(current: RegistryTables, batch: RegistryTables, ids: list[int]) -> RegistryTables:
    """``current`` with every row of courses ``ids`` replaced by ``batch``'s rows."""
    rest = _rows_of(current, pa.array(ids, pa.int64()), keep=False)
    out: dict[str, Any] = {}
    for name in NAMES:
        parts_ = [t for t in (getattr(rest, name), getattr(batch, name)) if t is not None]
        out[name] = pa.concat_tables([t.cast(parts_[0].schema) for t in parts_]) if parts_ else None
    return RegistryTables(**out)


def _edited(current: RegistryTables, ids: list[int], seed: int) -> RegistryTables:
    """Edited complete rows for courses ``ids``: some stopped, some moved to another
    patient, a share of their scores, diary days and follow-up records gone, and the
    last course deleted outright (no rows at all)."""
    rng = np.random.default_rng(seed)
    rows = _rows_of(current, pa.array(ids[:-1], pa.int64()), keep=True)
    courses = rows.courses
    status = courses["status"].to_pylist()
    reasons = courses["stop_reason"].to_pylist()
    for i in range(0, len(status), 3):
        status[i], reasons[i] = "stopped", "patient_choice"
    patients = courses["patient_id"].to_pylist()
    patients[1] = patients[0]  # two courses of one patient now
    patients[2] = int(current.courses["patient_id"][0].as_py())  # joins a patient held
    for column, values in (("status", status), ("stop_reason", reasons), ("patient_id", patients)):
        at = courses.schema.get_field_index(column)
        courses = courses.set_column(at, column, pa.array(values, courses.schema.field(at).type))
    out: dict[str, Any] = {"courses": courses}
    for name, share in (("scores", 0.3), ("follow_ups", 0.2), ("flares", 0.5)):
        table = getattr(rows, name)
        out[name] = table.filter(pa.array(rng.random(table.num_rows) >= share))
    out["adverse_events"] = rows.adverse_events
    return RegistryTables(**out)


def _check(loaded: engine.LoadedRegistry, current: RegistryTables) -> None:
    """Every kept selection's parts equal a fresh count, and the report equals pandas."""
    assert len(loaded.parts) == len(SELECTIONS)  # kept through the replace, not dropped
    kept = {key: {n: dict(rows) for n, rows in held.items()} for key, held in loaded.parts.items()}
    for selection, as_of in SELECTIONS:
        agg = engine.compute(loaded, selection, as_of=as_of, rules=RULES)
        expected = baseline_pandas.compute(current, selection, as_of=as_of, rules=RULES)
        assert compare_aggregates(agg, expected) == [], selection
    loaded.parts.clear()
    for selection, as_of in SELECTIONS:
        engine.compute(loaded, selection, as_of=as_of, rules=RULES)
    fresh = {
        key: {n: rows for n, rows in held.items() if rows} for key, held in loaded.parts.items()
    }
    assert {
        key: {n: rows for n, rows in held.items() if rows} for key, held in kept.items()
    } == fresh


def test_kept_parts_follow_new_edited_and_deleted_courses(registry: RegistryTables) -> None:
    ids = registry.courses["course_id"].to_numpy()
    new_first, new_later = ids[-200:-100].tolist(), ids[-100:].tolist()
    current = _rows_of(registry, pa.array(ids[-200:]), keep=False)
    loaded = engine.load(current)
    try:
        loaded.keep_facts(RULES)
        for selection, as_of in SELECTIONS:
            engine.compute(loaded, selection, as_of=as_of, rules=RULES)
        rng = np.random.default_rng(3)
        held = sorted(rng.choice(ids[:-200], 40, replace=False).tolist())
        steps = [
            (new_first, _rows_of(registry, pa.array(new_first), keep=True)),
            (held, _edited(current, held, seed=1)),
            # New courses beside held ones replaced by their own unchanged rows.
            (
                new_later + held[:10],
                _apply(
                    _rows_of(registry, pa.array(new_later), keep=True),
                    _rows_of(current, pa.array(held[:10]), keep=True),
                    [],
                ),
            ),
        ]
        for touched, batch in steps:
            loaded.replace(batch, touched)
            current = _apply(current, batch, touched)
            _check(loaded, current)
    finally:
        loaded.close()


def test_a_table_seen_for_the_first_time_counts_afresh(registry: RegistryTables) -> None:
    assert registry.adverse_events is None
    loaded = engine.load(registry)
    try:
        loaded.keep_facts(RULES)
        engine.compute(loaded, Selection(), as_of=AS_OF, rules=RULES)
        course = int(registry.courses["course_id"][5].as_py())
        batch = _rows_of(registry, pa.array([course], pa.int64()), keep=True)
        events = pa.table(
            {"course_id": pa.array([course, course], pa.int64()), "kind": ["bruising", "flare"]}
        ).cast(ADVERSE_EVENT_SCHEMA)
        batch = RegistryTables(**{**batch.__dict__, "adverse_events": events})
        loaded.replace(batch, [course])
        assert not loaded.parts  # the kept parts had no adverse events to update
        current = _apply(registry, batch, [course])
        agg = engine.compute(loaded, Selection(), as_of=AS_OF, rules=RULES)
        assert agg.adverse_events == {"bruising": 1, "flare": 1}
        expected = baseline_pandas.compute(current, Selection(), as_of=AS_OF, rules=RULES)
        assert compare_aggregates(agg, expected) == []
    finally:
        loaded.close()


def test_merge_adds_subtracts_and_refuses_to_go_negative() -> None:
    held: parts.Parts = {"pairs": {(0, 1, 5.0, 3.0): [4]}, "surgery": {(): [2, 1, 0]}}
    parts.merge(held, {"pairs": {(0, 1, 5.0, 3.0): [4], (0, 2, 5.0, 2.0): [1]}}, -1 + 2)
    assert held["pairs"] == {(0, 1, 5.0, 3.0): [8], (0, 2, 5.0, 2.0): [1]}
    parts.merge(held, {"pairs": {(0, 1, 5.0, 3.0): [8]}, "surgery": {(): [2, 1, 0]}}, -1)
    assert held == {"pairs": {(0, 2, 5.0, 2.0): [1]}, "surgery": {}}  # zero counts dropped
    with pytest.raises(ValueError, match="negative"):
        parts.merge(held, {"pairs": {(0, 2, 5.0, 2.0): [2]}}, -1)


def test_median_and_spread_from_counts_equal_value_by_value() -> None:
    rng = np.random.default_rng(8)
    for _ in range(50):
        values = rng.integers(0, 12, rng.integers(1, 40)).astype(np.float64) / 2
        x, w = np.unique(values, return_counts=True)
        n, mean, sd = parts._mean_sd(x, w.astype(np.int64))
        assert n == values.size
        assert mean == pytest.approx(float(values.mean()), rel=1e-12)
        if n > 1:
            assert sd == pytest.approx(float(values.std(ddof=1)), rel=1e-9, abs=1e-12)
        assert parts._median(x, w.astype(np.int64)) == float(np.median(values))
