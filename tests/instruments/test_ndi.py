"""NDI: sum of ten 0-5 items (0-50); one missed item replaced by the mean of the rest."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prolo.instruments.base import ItemError, NotScorable
from prolo.instruments.catalog import get_instrument

NDI = get_instrument("ndi")
ITEMS = NDI.item_ids


def answers(*values: int | None) -> dict[str, float | None]:
    return dict(zip(ITEMS, values, strict=True))


def test_worked_example_all_items() -> None:
    # 2+1+3+2+1+2+0+1+2+2 = 16 of 50 (32% when doubled)
    score = NDI.score(answers(2, 1, 3, 2, 1, 2, 0, 1, 2, 2))["total"]
    assert score.value == 16.0
    assert score.value * 2 == 32.0


def test_worked_example_one_item_missing() -> None:
    # Item 10 blank: the nine answered sum to 14; their mean 14/9 = 1.556 is added:
    # 14 + 1.556 = 15.556 (the same as 14 x 10 / 9).
    score = NDI.score(answers(2, 1, 3, 2, 1, 2, 0, 1, 2, None))["total"]
    assert score.value == pytest.approx(14 + 14 / 9)
    assert score.items_answered == 9
    # Doubling agrees with the scoring form's "total over 45" percentage: 14 / 45 x 100.
    assert score.value * 2 == pytest.approx(14 / 45 * 100)


def test_boundaries() -> None:
    assert NDI.score(answers(*[0] * 10))["total"].value == 0.0
    assert NDI.score(answers(*[5] * 10))["total"].value == 50.0
    assert NDI.score(answers(None, *[5] * 9))["total"].value == 50.0


def test_two_missing_items_are_not_scorable() -> None:
    with pytest.raises(NotScorable) as raised:
        NDI.score(answers(None, 1, 1, 1, 1, 1, 1, 1, 1, None))
    assert raised.value.items == ("ndi-1", "ndi-10")


def test_out_of_range_item_names_it() -> None:
    with pytest.raises(ItemError) as raised:
        NDI.score(answers(0, 0, 0, 0, 0, 0, 0, -1, 0, 0))
    assert raised.value.item == "ndi-8"


def test_mcid_is_five_raw_points() -> None:
    mcid = NDI.spec("total").mcid
    assert mcid is not None and (mcid.value, mcid.unit) == (5.0, "points")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 5), min_size=10, max_size=10),
    st.integers(0, 9),
    st.one_of(st.none(), st.integers(0, 9)),
)
def test_raising_one_item_never_lowers_the_total(
    values: list[int], raised: int, blank: int | None
) -> None:
    if values[raised] == 5 or raised == blank:
        return
    before: dict[str, float | None] = dict(zip(ITEMS, map(float, values), strict=True))
    if blank is not None:
        before[ITEMS[blank]] = None
    after = before | {ITEMS[raised]: values[raised] + 1.0}
    assert NDI.score(after)["total"].value > NDI.score(before)["total"].value
