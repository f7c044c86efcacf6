"""JFLS-8: mean of answered items, at most two missing (DC/TMD scoring manual)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prolo.instruments.base import ItemError, NotScorable
from prolo.instruments.catalog import get_instrument
from prolo.instruments.library.jfls_8 import INSTRUMENT, ITEM_IDS, jfls_8_score

ITEMS = [f"jfls8-{i}" for i in range(1, 9)]


def test_is_in_the_catalog_with_eight_items_scored_0_to_10() -> None:
    assert get_instrument("jfls-8") is INSTRUMENT
    assert list(ITEM_IDS) == ITEMS
    spec = INSTRUMENT.spec("total")
    assert (spec.low, spec.high, spec.direction) == (0.0, 10.0, "lower_is_better")
    # The manual says norms are not established and no MCID was found.
    assert spec.mcid is None


def test_worked_example_all_answered() -> None:
    answers = dict(zip(ITEMS, [3, 5, 0, 2, 7, 1, 4, 2], strict=True))
    # Sum = 3 + 5 + 0 + 2 + 7 + 1 + 4 + 2 = 24; mean = 24 / 8 = 3.0
    score = jfls_8_score(answers)["total"]
    assert score.value == pytest.approx(3.0)
    assert (score.items_answered, score.items_total) == (8, 8)


def test_worked_example_two_missing_divides_by_items_present() -> None:
    answers = dict(zip(ITEMS, [6, None, 3, 4, None, 2, 5, 1], strict=True))
    # Answered: 6 + 3 + 4 + 2 + 5 + 1 = 21 over 6 items present; 21 / 6 = 3.5
    score = jfls_8_score(answers)["total"]
    assert score.value == pytest.approx(3.5)
    assert score.items_answered == 6


def test_boundaries() -> None:
    assert jfls_8_score(dict.fromkeys(ITEMS, 0))["total"].value == 0.0
    assert jfls_8_score(dict.fromkeys(ITEMS, 10))["total"].value == 10.0


def test_three_missing_is_not_scorable_and_names_them() -> None:
    answers = dict.fromkeys(ITEMS, 5) | {"jfls8-1": None, "jfls8-4": None, "jfls8-8": None}
    with pytest.raises(NotScorable) as caught:
        jfls_8_score(answers)
    assert caught.value.items == ("jfls8-1", "jfls8-4", "jfls8-8")


def test_omitted_keys_count_as_missing() -> None:
    # Six answered, two never sent: still at the limit, so scorable (mean of six 10s = 10).
    assert jfls_8_score(dict.fromkeys(ITEMS[:6], 10))["total"].value == 10.0
    with pytest.raises(NotScorable):
        jfls_8_score(dict.fromkeys(ITEMS[:5], 10))


@pytest.mark.parametrize("bad", [-1, 11, 2.5, "3", True, float("nan")])
def test_bad_answers_raise_item_error_naming_the_item(bad: Any) -> None:
    answers = dict.fromkeys(ITEMS, 1) | {"jfls8-3": bad}
    with pytest.raises(ItemError) as caught:
        jfls_8_score(answers)
    assert caught.value.item == "jfls8-3"


def test_unknown_item_is_refused() -> None:
    with pytest.raises(ItemError):
        jfls_8_score(dict.fromkeys(ITEMS, 1) | {"jfls8-9": 1})


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.integers(min_value=0, max_value=10), min_size=8, max_size=8),
    blanks=st.sets(st.integers(min_value=0, max_value=7), max_size=2),
    index=st.integers(min_value=0, max_value=7),
)
def test_raising_one_answer_never_lowers_the_limitation_score(
    values: list[int], blanks: set[int], index: int
) -> None:
    answers: dict[str, float | None] = {
        item: None if i in blanks else value
        for i, (item, value) in enumerate(zip(ITEMS, values, strict=True))
    }
    raised = ITEMS[index]
    current = answers[raised]
    start = 0 if current is None or current == 10 else current
    before = jfls_8_score(answers | {raised: start})["total"].value
    after = jfls_8_score(answers | {raised: start + 1})["total"].value
    # Lower is better, so more limitation on one item can only raise the score.
    assert after > before
    assert 0.0 <= before <= 10.0
