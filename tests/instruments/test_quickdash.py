"""QuickDASH: ((sum / n) - 1) x 25 over n answered items; at least 10 of 11."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prolo.instruments.base import ItemError, NotScorable
from prolo.instruments.catalog import get_instrument

QD = get_instrument("quickdash")
ITEMS = QD.item_ids


def answers(*values: int | None) -> dict[str, float | None]:
    return dict(zip(ITEMS, values, strict=True))


def test_eleven_items() -> None:
    assert len(ITEMS) == 11


def test_worked_example_all_items() -> None:
    # 3+3+2+4+3+2+3+3+2+4+4 = 33; 33 / 11 = 3.0; (3.0 - 1) x 25 = 50.0
    assert QD.score(answers(3, 3, 2, 4, 3, 2, 3, 3, 2, 4, 4))["total"].value == 50.0


def test_worked_example_uneven() -> None:
    # 1+1+2+1+1+1+2+1+1+1+2 = 14; 14 / 11 = 1.2727; (1.2727 - 1) x 25 = 6.818
    score = QD.score(answers(1, 1, 2, 1, 1, 1, 2, 1, 1, 1, 2))["total"]
    assert score.value == pytest.approx((14 / 11 - 1) * 25)
    assert round(score.value, 2) == 6.82


def test_ten_of_eleven_is_scorable() -> None:
    # Item 11 blank: 3+3+2+4+3+2+3+3+2+4 = 29 over n = 10; (2.9 - 1) x 25 = 47.5
    score = QD.score(answers(3, 3, 2, 4, 3, 2, 3, 3, 2, 4, None))["total"]
    assert score.value == pytest.approx(47.5)
    assert (score.items_answered, score.items_total) == (10, 11)


def test_nine_of_eleven_is_not_scorable() -> None:
    with pytest.raises(NotScorable) as raised:
        QD.score(answers(3, 3, 2, 4, 3, 2, 3, 3, 2, None, None))
    assert raised.value.items == ("quickdash-10", "quickdash-11")


def test_boundaries() -> None:
    assert QD.score(answers(*[1] * 11))["total"].value == 0.0  # (1 - 1) x 25
    assert QD.score(answers(*[5] * 11))["total"].value == 100.0  # (5 - 1) x 25
    assert QD.score(answers(*[5] * 10, None))["total"].value == 100.0


def test_zero_is_out_of_range() -> None:
    # Items run 1-5, so 0 (a common data-entry slip) is rejected, naming the item.
    with pytest.raises(ItemError) as raised:
        QD.score(answers(1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1))
    assert raised.value.item == "quickdash-5"


def test_mcid() -> None:
    mcid = QD.spec("total").mcid
    assert mcid is not None and mcid.value == pytest.approx(15.91)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(1, 5), min_size=11, max_size=11),
    st.integers(0, 10),
    st.one_of(st.none(), st.integers(0, 10)),
)
def test_raising_one_item_never_lowers_the_score(
    values: list[int], raised: int, blank: int | None
) -> None:
    if values[raised] == 5 or raised == blank:
        return
    before: dict[str, float | None] = dict(zip(ITEMS, map(float, values), strict=True))
    if blank is not None:
        before[ITEMS[blank]] = None
    after = before | {ITEMS[raised]: values[raised] + 1.0}
    assert QD.score(after)["total"].value > QD.score(before)["total"].value
