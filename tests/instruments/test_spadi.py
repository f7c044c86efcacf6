"""SPADI: each subscale and the total are 100 x sum / (10 x items answered)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prolo.instruments.base import ItemError, NotScorable, ScoreSet
from prolo.instruments.catalog import get_instrument
from prolo.instruments.library.spadi import DISABILITY_ITEMS, PAIN_ITEMS

SPADI = get_instrument("spadi")


def answers(
    pain: Sequence[float | None], disability: Sequence[float | None]
) -> dict[str, float | None]:
    return dict(zip(PAIN_ITEMS, pain, strict=True)) | dict(
        zip(DISABILITY_ITEMS, disability, strict=True)
    )


def values(result: ScoreSet) -> dict[str, float]:
    return {score.key: score.value for score in result.scores}


def test_item_structure() -> None:
    assert len(PAIN_ITEMS) == 5 and len(DISABILITY_ITEMS) == 8


def test_worked_example() -> None:
    # Pain 8+6+7+5+4 = 30 of 50 -> 60.0%.
    # Disability 5+6+4+3+2+7+6+3 = 36 of 80 -> 45.0%.
    # Total (30 + 36) = 66 of 130 -> 50.77% (not the 52.5% mean of the two subscales).
    result = values(SPADI.score(answers([8, 6, 7, 5, 4], [5, 6, 4, 3, 2, 7, 6, 3])))
    assert result["pain"] == pytest.approx(60.0)
    assert result["disability"] == pytest.approx(45.0)
    assert result["total"] == pytest.approx(6600 / 130)
    assert round(result["total"], 2) == 50.77


def test_one_missing_item_per_subscale_is_scorable() -> None:
    # Pain item 5 blank: 8+6+7+5 = 26 over 40 -> 65.0% (the form's "divide by 40").
    # Disability item 8 blank: 5+6+4+3+2+7+6 = 33 over 70 -> 47.14%.
    # Total 26 + 33 = 59 over 110 -> 53.64% (two items out of 130).
    result = SPADI.score(answers([8, 6, 7, 5, None], [5, 6, 4, 3, 2, 7, 6, None]))
    scores = values(result)
    assert scores["pain"] == pytest.approx(65.0)
    assert scores["disability"] == pytest.approx(3300 / 70)
    assert scores["total"] == pytest.approx(5900 / 110)
    assert result["total"].items_answered == 11


def test_two_missing_in_a_subscale_drops_it_and_the_total() -> None:
    # Pain has two blanks, so pain and total go; disability 8 x 5 = 40 of 80 -> 50.0%.
    result = SPADI.score(answers([None, None, 3, 3, 3], [5] * 8))
    assert values(result) == {"disability": 50.0}


def test_both_subscales_over_the_limit_is_not_scorable() -> None:
    with pytest.raises(NotScorable):
        SPADI.score(answers([None, None, 3, 3, 3], [None, None, 5, 5, 5, 5, 5, 5]))


def test_boundaries() -> None:
    assert values(SPADI.score(answers([0] * 5, [0] * 8))) == {
        "total": 0.0,
        "pain": 0.0,
        "disability": 0.0,
    }
    assert values(SPADI.score(answers([10] * 5, [10] * 8))) == {
        "total": 100.0,
        "pain": 100.0,
        "disability": 100.0,
    }


def test_out_of_range_item_names_it() -> None:
    with pytest.raises(ItemError) as raised:
        SPADI.score(answers([0] * 5, [0, 0, 0, 0, 0, 0, 0, 10.5]))
    assert raised.value.item == "spadi-disability-8"


def test_mcid_on_total() -> None:
    mcid = SPADI.spec("total").mcid
    assert mcid is not None and mcid.value == 8.0 and "8-13" in mcid.note


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 10), min_size=13, max_size=13),
    st.integers(0, 12),
    st.one_of(st.none(), st.integers(0, 12)),
)
def test_raising_one_item_never_lowers_any_score(
    item_values: list[int], raised: int, blank: int | None
) -> None:
    if item_values[raised] == 10 or raised == blank:
        return
    before: dict[str, float | None] = dict(
        zip(SPADI.item_ids, map(float, item_values), strict=True)
    )
    if blank is not None:
        before[SPADI.item_ids[blank]] = None
    after = before | {SPADI.item_ids[raised]: item_values[raised] + 1.0}
    low, high = values(SPADI.score(before)), values(SPADI.score(after))
    assert low.keys() == high.keys()
    assert all(high[key] >= low[key] for key in low)
    assert high["total"] > low["total"]
