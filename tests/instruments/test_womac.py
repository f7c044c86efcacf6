"""WOMAC LK3.1: subscale sums and total; function tolerates 3 missing (mean substituted)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prolo.instruments.base import ItemError, NotScorable
from prolo.instruments.catalog import get_instrument
from prolo.instruments.library.womac import (
    FUNCTION_ITEMS,
    INSTRUMENT,
    ITEM_IDS,
    PAIN_ITEMS,
    STIFFNESS_ITEMS,
    womac_score,
)
from prolo.instruments.questionnaire import is_structure_only, load_questionnaire


def answers_from(
    pain: list[int], stiffness: list[int], function: list[int | None]
) -> dict[str, float | None]:
    answers: dict[str, float | None] = {}
    return (
        answers
        | dict(zip(PAIN_ITEMS, pain, strict=True))
        | dict(zip(STIFFNESS_ITEMS, stiffness, strict=True))
        | dict(zip(FUNCTION_ITEMS, function, strict=True))
    )


def test_structure_and_licence() -> None:
    assert get_instrument("womac") is INSTRUMENT
    assert (len(PAIN_ITEMS), len(STIFFNESS_ITEMS), len(FUNCTION_ITEMS)) == (5, 2, 17)
    ranges = {spec.key: (spec.low, spec.high) for spec in INSTRUMENT.scores}
    assert ranges == {"total": (0, 96), "pain": (0, 20), "stiffness": (0, 8), "function": (0, 68)}
    assert all(spec.direction == "lower_is_better" for spec in INSTRUMENT.scores)
    assert all(spec.mcid is None for spec in INSTRUMENT.scores)
    assert INSTRUMENT.licence == "licensed"


def test_licensed_wording_is_not_shipped() -> None:
    def texts(items: list[dict[str, Any]]) -> Iterator[str]:
        for item in items:
            yield item.get("text", "")
            yield from texts(item.get("item", []))
            for option in item.get("answerOption", []):
                yield option["valueCoding"]["display"]

    data = load_questionnaire("womac")
    assert is_structure_only(data)
    shipped = list(texts(data["item"]))
    assert all(text.startswith(("WOMAC ", "Score ")) for text in shipped)


def test_worked_example_complete() -> None:
    answers = answers_from(
        pain=[2, 3, 1, 2, 2],
        stiffness=[3, 1],
        function=[2, 3, 2, 1, 2, 1, 2, 1, 3, 2, 1, 1, 2, 0, 1, 4, 1],
    )
    # Pain: 2+3+1+2+2 = 10
    # Stiffness: 3+1 = 4
    # Function: 2+3+2+1+2+1+2+1+3+2+1+1+2+0+1+4+1 = 29
    # Total: 10 + 4 + 29 = 43
    scores = womac_score(answers)
    assert scores["pain"].value == 10.0
    assert scores["stiffness"].value == 4.0
    assert scores["function"].value == 29.0
    assert scores["total"].value == 43.0
    assert (scores["total"].items_answered, scores["total"].items_total) == (24, 24)


def test_three_missing_function_items_take_the_answered_mean() -> None:
    function = [2] * 7 + [3] * 7 + [None] * 3
    answers = answers_from(pain=[1] * 5, stiffness=[0, 0], function=function)
    # Function: 14 answered sum to 7*2 + 7*3 = 35, mean 35/14 = 2.5;
    #   each of the 3 missing items takes 2.5, so 35 + 3 * 2.5 = 42.5 (= 35 * 17/14)
    # Total: pain 5 + stiffness 0 + function 42.5 = 47.5
    scores = womac_score(answers)
    assert scores["function"].value == pytest.approx(42.5)
    assert scores["function"].items_answered == 14
    assert scores["total"].value == pytest.approx(47.5)
    assert scores["total"].items_answered == 21


def test_four_missing_function_items_drop_function_and_total() -> None:
    answers = dict.fromkeys(ITEM_IDS, 1) | dict.fromkeys(FUNCTION_ITEMS[:4], None)
    scores = womac_score(answers)
    assert [s.key for s in scores.scores] == ["pain", "stiffness"]


@pytest.mark.parametrize("item", [PAIN_ITEMS[2], STIFFNESS_ITEMS[1]])
def test_pain_and_stiffness_need_every_item(item: str) -> None:
    scores = womac_score(dict.fromkeys(ITEM_IDS, 1) | {item: None})
    keys = [s.key for s in scores.scores]
    assert "total" not in keys
    assert ("pain" in keys) == (item not in PAIN_ITEMS)
    assert ("stiffness" in keys) == (item not in STIFFNESS_ITEMS)
    assert "function" in keys


def test_no_valid_subscale_is_not_scorable() -> None:
    answers = dict.fromkeys(ITEM_IDS, 1) | {PAIN_ITEMS[0]: None, STIFFNESS_ITEMS[0]: None}
    answers |= dict.fromkeys(FUNCTION_ITEMS[:4], None)
    with pytest.raises(NotScorable) as caught:
        womac_score(answers)
    assert len(caught.value.items) == 6
    with pytest.raises(NotScorable):
        womac_score({})


def test_boundaries() -> None:
    low = womac_score(dict.fromkeys(ITEM_IDS, 0))
    high = womac_score(dict.fromkeys(ITEM_IDS, 4))
    assert {s.key: s.value for s in low.scores} == dict.fromkeys(
        ["total", "pain", "stiffness", "function"], 0.0
    )
    # 5*4 = 20, 2*4 = 8, 17*4 = 68, total 96
    assert {s.key: s.value for s in high.scores} == {
        "total": 96.0,
        "pain": 20.0,
        "stiffness": 8.0,
        "function": 68.0,
    }


@pytest.mark.parametrize("bad", [-1, 5, 1.5, "2"])
def test_bad_answers_raise_item_error(bad: Any) -> None:
    with pytest.raises(ItemError) as caught:
        womac_score(dict.fromkeys(ITEM_IDS, 1) | {FUNCTION_ITEMS[16]: bad})
    assert caught.value.item == FUNCTION_ITEMS[16]


item_value = st.integers(min_value=0, max_value=4)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(item_value, min_size=24, max_size=24),
    function_blanks=st.sets(st.sampled_from(FUNCTION_ITEMS), max_size=3),
    index=st.integers(min_value=0, max_value=23),
)
def test_raising_one_answer_never_lowers_any_score(
    values: list[int], function_blanks: set[str], index: int
) -> None:
    answers: dict[str, float | None] = dict(zip(ITEM_IDS, values, strict=True))
    answers |= dict.fromkeys(function_blanks, None)
    item = ITEM_IDS[index]
    current = answers[item]
    start = 0.0 if current is None or current == 4 else current
    before = womac_score(answers | {item: start})
    after = womac_score(answers | {item: start + 1})
    # Lower is better: worse on one item never lowers a subscale or the total.
    for score in before.scores:
        assert after[score.key].value >= score.value
        assert score.low <= score.value <= score.high
    assert after["total"].value > before["total"].value
