"""ODI: 100 x total / (5 x sections answered); at most one section missing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prolo.instruments.base import ItemError, NotScorable
from prolo.instruments.catalog import get_instrument

ODI = get_instrument("odi")
SECTIONS = ODI.item_ids


def answers(*values: int | None) -> dict[str, float | None]:
    return dict(zip(SECTIONS, values, strict=True))


def test_item_ids_are_ten_sections() -> None:
    assert SECTIONS == tuple(f"odi-{n}" for n in range(1, 11))


def test_worked_example_all_sections() -> None:
    # 3+2+2+1+3+2+1+0+1+1 = 16 of a possible 10 x 5 = 50 -> 16 / 50 x 100 = 32.0%
    score = ODI.score(answers(3, 2, 2, 1, 3, 2, 1, 0, 1, 1))["total"]
    assert score.value == pytest.approx(32.0)
    assert (score.items_answered, score.items_total) == (10, 10)


def test_worked_example_one_section_missing() -> None:
    # Section 8 left blank: the same 16 points over 9 x 5 = 45 -> 16 / 45 x 100 = 35.56%
    score = ODI.score(answers(3, 2, 2, 1, 3, 2, 1, None, 1, 1))["total"]
    assert score.value == pytest.approx(1600 / 45)
    assert round(score.value, 1) == 35.6
    assert score.items_answered == 9


def test_worked_example_mixed() -> None:
    # 5+4+3+2+1+0+5+4+3+2 = 29 of 50 -> 58.0%
    assert ODI.score(answers(5, 4, 3, 2, 1, 0, 5, 4, 3, 2))["total"].value == pytest.approx(58.0)


def test_boundaries() -> None:
    assert ODI.score(answers(*[0] * 10))["total"].value == 0.0
    assert ODI.score(answers(*[5] * 10))["total"].value == 100.0
    # With one section missing the ends are still reachable: 45 / 45 x 100 = 100.
    assert ODI.score(answers(*[5] * 9, None))["total"].value == 100.0


@pytest.mark.parametrize("missing", SECTIONS)
def test_any_one_missing_section_is_scorable(missing: str) -> None:
    values = dict.fromkeys(SECTIONS, 2.0) | {missing: None}
    # 9 sections x 2 = 18 over 45 -> 40.0%, whichever section is missing
    assert ODI.score(values)["total"].value == pytest.approx(40.0)


def test_two_missing_sections_are_not_scorable() -> None:
    with pytest.raises(NotScorable) as raised:
        ODI.score(answers(2, 2, 2, 2, 2, 2, 2, None, 2, None))
    assert raised.value.items == ("odi-8", "odi-10")


def test_out_of_range_section_names_it() -> None:
    with pytest.raises(ItemError) as raised:
        ODI.score(answers(0, 0, 6, 0, 0, 0, 0, 0, 0, 0))
    assert raised.value.item == "odi-3"


def test_mcid_is_ten_points() -> None:
    mcid = ODI.spec("total").mcid
    assert mcid is not None and mcid.value == 10.0 and "Ostelo" in mcid.source.source


section_values = st.lists(st.integers(0, 5), min_size=10, max_size=10)


@settings(max_examples=200, deadline=None)
@given(section_values, st.integers(0, 9), st.one_of(st.none(), st.integers(0, 9)))
def test_raising_one_section_never_lowers_the_index(
    values: list[int], raised: int, blank: int | None
) -> None:
    if values[raised] == 5 or raised == blank:
        return
    before: dict[str, float | None] = dict(zip(SECTIONS, map(float, values), strict=True))
    if blank is not None:
        before[SECTIONS[blank]] = None
    after = before | {SECTIONS[raised]: values[raised] + 1.0}
    assert ODI.score(after)["total"].value > ODI.score(before)["total"].value
