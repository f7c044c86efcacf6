"""FIQR: function sum / 3 + overall sum + symptom sum / 2 (fiqr.info scoring page)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prolo.instruments.base import ItemError, NotScorable
from prolo.instruments.catalog import get_instrument
from prolo.instruments.library.fiqr import (
    FUNCTION_ITEMS,
    INSTRUMENT,
    ITEM_IDS,
    OVERALL_ITEMS,
    SYMPTOM_ITEMS,
    fiqr_score,
)


def answers_from(
    function: list[int | None], overall: list[int], symptoms: list[int]
) -> dict[str, float | None]:
    answers: dict[str, float | None] = {}
    return (
        answers
        | dict(zip(FUNCTION_ITEMS, function, strict=True))
        | dict(zip(OVERALL_ITEMS, overall, strict=True))
        | dict(zip(SYMPTOM_ITEMS, symptoms, strict=True))
    )


def test_structure_matches_the_published_domains() -> None:
    assert get_instrument("fiqr") is INSTRUMENT
    assert (len(FUNCTION_ITEMS), len(OVERALL_ITEMS), len(SYMPTOM_ITEMS)) == (9, 2, 10)
    assert len(ITEM_IDS) == 21
    ranges = {spec.key: (spec.low, spec.high) for spec in INSTRUMENT.scores}
    assert ranges == {
        "total": (0, 100),
        "function": (0, 30),
        "overall": (0, 20),
        "symptoms": (0, 50),
    }
    assert all(spec.direction == "lower_is_better" for spec in INSTRUMENT.scores)
    assert all(spec.mcid is None for spec in INSTRUMENT.scores)


def test_worked_example() -> None:
    answers = answers_from(
        function=[2, 3, 4, 5, 6, 1, 0, 7, 2],
        overall=[6, 8],
        symptoms=[7, 5, 6, 4, 8, 3, 2, 5, 6, 4],
    )
    # Function: 2+3+4+5+6+1+0+7+2 = 30; 30 / 3 = 10.0
    # Overall: 6 + 8 = 14; 14 / 1 = 14.0
    # Symptoms: 7+5+6+4+8+3+2+5+6+4 = 50; 50 / 2 = 25.0
    # Total: 10.0 + 14.0 + 25.0 = 49.0
    scores = fiqr_score(answers)
    assert scores["function"].value == pytest.approx(10.0)
    assert scores["overall"].value == pytest.approx(14.0)
    assert scores["symptoms"].value == pytest.approx(25.0)
    assert scores["total"].value == pytest.approx(49.0)
    assert (scores["total"].items_answered, scores["total"].items_total) == (21, 21)


def test_one_missing_function_item_is_weighted_by_nine_over_eight() -> None:
    answers = answers_from(
        function=[4, 4, 4, 4, 4, 4, 4, 4, None],
        overall=[0, 0],
        symptoms=[0] * 10,
    )
    # Function: 8 answered items sum to 32; weighted 32 * 9/8 = 36; 36 / 3 = 12.0
    scores = fiqr_score(answers)
    assert scores["function"].value == pytest.approx(12.0)
    assert scores["function"].items_answered == 8
    assert scores["total"].value == pytest.approx(12.0)


def test_boundaries() -> None:
    low = fiqr_score(dict.fromkeys(ITEM_IDS, 0))
    high = fiqr_score(dict.fromkeys(ITEM_IDS, 10))
    assert [s.value for s in low.scores] == [0.0, 0.0, 0.0, 0.0]
    # 90/3 = 30, 20/1 = 20, 100/2 = 50, total 100
    assert {s.key: s.value for s in high.scores} == {
        "total": 100.0,
        "function": 30.0,
        "overall": 20.0,
        "symptoms": 50.0,
    }


def test_two_missing_function_items_invalidate_the_questionnaire() -> None:
    answers = dict.fromkeys(ITEM_IDS, 5) | {FUNCTION_ITEMS[0]: None, FUNCTION_ITEMS[5]: None}
    with pytest.raises(NotScorable) as caught:
        fiqr_score(answers)
    assert caught.value.items == (FUNCTION_ITEMS[0], FUNCTION_ITEMS[5])


@pytest.mark.parametrize("item", [OVERALL_ITEMS[1], SYMPTOM_ITEMS[0], SYMPTOM_ITEMS[9]])
def test_any_missing_overall_or_symptom_item_invalidates(item: str) -> None:
    with pytest.raises(NotScorable) as caught:
        fiqr_score(dict.fromkeys(ITEM_IDS, 5) | {item: None})
    assert caught.value.items == (item,)


@pytest.mark.parametrize("bad", [-1, 11, 4.5, "7"])
def test_bad_answers_raise_item_error(bad: Any) -> None:
    with pytest.raises(ItemError) as caught:
        fiqr_score(dict.fromkeys(ITEM_IDS, 5) | {SYMPTOM_ITEMS[3]: bad})
    assert caught.value.item == SYMPTOM_ITEMS[3]


item_value = st.integers(min_value=0, max_value=10)


@settings(max_examples=200, deadline=None)
@given(
    function=st.lists(item_value, min_size=9, max_size=9),
    blank=st.one_of(st.none(), st.sampled_from(FUNCTION_ITEMS)),
    overall=st.lists(item_value, min_size=2, max_size=2),
    symptoms=st.lists(item_value, min_size=10, max_size=10),
    index=st.integers(min_value=0, max_value=20),
)
def test_raising_one_answer_never_lowers_any_score(
    function: list[int | None],
    blank: str | None,
    overall: list[int],
    symptoms: list[int],
    index: int,
) -> None:
    answers = answers_from(function, overall, symptoms)
    if blank is not None:  # the one function item the rule lets go missing
        answers[blank] = None
    item = ITEM_IDS[index]
    current = answers[item]
    start = 0.0 if current is None or current == 10 else current
    before = fiqr_score(answers | {item: start})
    after = fiqr_score(answers | {item: start + 1})
    # Lower is better: more impact on one item never lowers a domain or the total.
    for key in ("function", "overall", "symptoms", "total"):
        assert after[key].value >= before[key].value
    assert after["total"].value > before["total"].value
    assert 0.0 <= before["total"].value <= 100.0


def test_every_breached_domain_is_reported() -> None:
    answers: dict[str, float | None] = dict.fromkeys(ITEM_IDS, 3.0)
    answers |= dict.fromkeys([FUNCTION_ITEMS[1], FUNCTION_ITEMS[2], SYMPTOM_ITEMS[4]], None)
    with pytest.raises(NotScorable) as caught:
        fiqr_score(answers)
    assert caught.value.items == (FUNCTION_ITEMS[1], FUNCTION_ITEMS[2], SYMPTOM_ITEMS[4])
    assert "function 2 missing" in caught.value.message
    assert "symptoms 1 missing" in caught.value.message
