"""PRTEE: pain = sum of 5 items, function = sum of 10 items / 2, total = pain + function."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prolo.instruments.base import ItemError, NotScorable, ScoreSet
from prolo.instruments.catalog import get_instrument
from prolo.instruments.library.prtee import FUNCTION_ITEMS, PAIN_ITEMS

PRTEE = get_instrument("prtee")


def answers(
    pain: Sequence[float | None], function: Sequence[float | None]
) -> dict[str, float | None]:
    return dict(zip(PAIN_ITEMS, pain, strict=True)) | dict(
        zip(FUNCTION_ITEMS, function, strict=True)
    )


def values(result: ScoreSet) -> dict[str, float]:
    return {score.key: score.value for score in result.scores}


def test_item_structure() -> None:
    assert len(PAIN_ITEMS) == 5 and len(FUNCTION_ITEMS) == 10
    assert PRTEE.item_ids == PAIN_ITEMS + FUNCTION_ITEMS


def test_worked_example() -> None:
    # Pain 7+5+6+8+4 = 30 (of 50).
    # Function 6+5+7+4+3+5 (specific) + 4+3+5+6 (usual) = 48, halved = 24 (of 50).
    # Total 30 + 24 = 54 (of 100).
    result = PRTEE.score(answers([7, 5, 6, 8, 4], [6, 5, 7, 4, 3, 5, 4, 3, 5, 6]))
    assert values(result) == {"total": 54.0, "pain": 30.0, "function": 24.0}


def test_worked_example_odd_function_sum() -> None:
    # Function 1+0+0+0+0+0+0+0+0+0 = 1, halved = 0.5; pain 0; total 0.5.
    result = PRTEE.score(answers([0] * 5, [1] + [0] * 9))
    assert values(result) == {"total": 0.5, "pain": 0.0, "function": 0.5}


def test_boundaries() -> None:
    assert values(PRTEE.score(answers([0] * 5, [0] * 10))) == {
        "total": 0.0,
        "pain": 0.0,
        "function": 0.0,
    }
    # 5 x 10 = 50 pain; 10 x 10 / 2 = 50 function; 100 in all.
    assert values(PRTEE.score(answers([10] * 5, [10] * 10))) == {
        "total": 100.0,
        "pain": 50.0,
        "function": 50.0,
    }


def test_function_item_missing_leaves_pain_only() -> None:
    # No missing items are allowed within a subscale (no imputation rule was read), so
    # one blank function item drops function and total; pain 2 x 5 = 10 remains.
    result = PRTEE.score(answers([2] * 5, [3] * 9 + [None]))
    assert values(result) == {"pain": 10.0}


def test_pain_item_missing_leaves_function_only() -> None:
    # Function 10 x 3 = 30, halved = 15.
    result = PRTEE.score(answers([None, 2, 2, 2, 2], [3] * 10))
    assert values(result) == {"function": 15.0}


def test_both_subscales_incomplete_is_not_scorable() -> None:
    with pytest.raises(NotScorable) as raised:
        PRTEE.score(answers([None, 2, 2, 2, 2], [3] * 9 + [None]))
    assert raised.value.items == ("prtee-pain-1", "prtee-function-10")


def test_out_of_range_item_names_it() -> None:
    with pytest.raises(ItemError) as raised:
        PRTEE.score(answers([0] * 5, [0, 0, 11, 0, 0, 0, 0, 0, 0, 0]))
    assert raised.value.item == "prtee-function-3"


def test_mcid_only_on_total() -> None:
    total = PRTEE.spec("total").mcid
    assert total is not None and total.value == pytest.approx(14.8)
    assert PRTEE.spec("pain").mcid is None and PRTEE.spec("function").mcid is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 10), min_size=15, max_size=15), st.integers(0, 14))
def test_raising_one_item_never_lowers_any_score(item_values: list[int], raised: int) -> None:
    if item_values[raised] == 10:
        return
    before = dict(zip(PRTEE.item_ids, map(float, item_values), strict=True))
    after = before | {PRTEE.item_ids[raised]: item_values[raised] + 1.0}
    low, high = values(PRTEE.score(before)), values(PRTEE.score(after))
    assert all(high[key] >= low[key] for key in low)
    assert high["total"] > low["total"]
