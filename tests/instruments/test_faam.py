"""FAAM: per-subscale percentage of the highest potential score, 90% answered rule."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prolo.instruments.base import ItemError, NotScorable
from prolo.instruments.catalog import get_instrument
from prolo.instruments.library.faam import (
    ADL_ITEMS,
    INSTRUMENT,
    ITEM_IDS,
    SPORTS_ITEMS,
    faam_score,
)


def test_structure_and_mcids() -> None:
    assert get_instrument("faam") is INSTRUMENT
    assert (len(ADL_ITEMS), len(SPORTS_ITEMS), len(ITEM_IDS)) == (21, 8, 29)
    adl, sports = INSTRUMENT.spec("adl"), INSTRUMENT.spec("sports")
    assert (adl.low, adl.high, adl.direction) == (0.0, 100.0, "higher_is_better")
    assert (sports.low, sports.high, sports.direction) == (0.0, 100.0, "higher_is_better")
    # Martin et al. 2005: MCIDs of 8 (ADL) and 9 (Sports) points.
    assert adl.mcid is not None and adl.mcid.value == 8.0
    assert sports.mcid is not None and sports.mcid.value == 9.0
    # No total FAAM score: only the two subscales.
    assert [spec.key for spec in INSTRUMENT.scores] == ["adl", "sports"]


def test_worked_example_all_answered() -> None:
    adl = [4, 4, 3, 3, 2, 4, 4, 4, 3, 4, 4, 1, 0, 4, 4, 3, 4, 4, 2, 4, 4]
    sports = [3, 2, 2, 1, 0, 3, 4, 1]
    answers = dict(zip(ADL_ITEMS, adl, strict=True)) | dict(zip(SPORTS_ITEMS, sports, strict=True))
    # ADL: 4+4+3+3+2+4+4+4+3+4+4+1+0+4+4+3+4+4+2+4+4 = 69 over 21 answered;
    #   highest potential 21 * 4 = 84; 69 / 84 * 100 = 82.142857...
    # Sports: 3+2+2+1+0+3+4+1 = 16 over 8 answered; 16 / 32 * 100 = 50.0
    scores = faam_score(answers)
    assert sum(adl) == 69
    assert scores["adl"].value == pytest.approx(69 / 84 * 100)
    assert scores["adl"].value == pytest.approx(82.142857, abs=1e-6)
    assert scores["sports"].value == pytest.approx(50.0)


def test_na_items_shrink_the_highest_potential_score() -> None:
    answers = dict.fromkeys(ITEM_IDS, 3) | {ADL_ITEMS[0]: None, ADL_ITEMS[1]: None}
    answers |= {SPORTS_ITEMS[7]: None}
    # ADL: 19 answered * 3 = 57 over 19 * 4 = 76; 57 / 76 * 100 = 75.0
    # Sports: 7 answered * 3 = 21 over 7 * 4 = 28; 21 / 28 * 100 = 75.0
    scores = faam_score(answers)
    assert scores["adl"].value == pytest.approx(75.0)
    assert (scores["adl"].items_answered, scores["adl"].items_total) == (19, 21)
    assert scores["sports"].value == pytest.approx(75.0)
    assert (scores["sports"].items_answered, scores["sports"].items_total) == (7, 8)


def test_unable_to_do_counts_as_zero_not_as_missing() -> None:
    answers = dict.fromkeys(ITEM_IDS, 4) | {SPORTS_ITEMS[0]: 0}
    # Sports: 7 * 4 + 0 = 28 over 8 * 4 = 32; 28 / 32 * 100 = 87.5 (N/A would give 100)
    assert faam_score(answers)["sports"].value == pytest.approx(87.5)


def test_boundaries() -> None:
    low = faam_score(dict.fromkeys(ITEM_IDS, 0))
    high = faam_score(dict.fromkeys(ITEM_IDS, 4))
    assert [s.value for s in low.scores] == [0.0, 0.0]
    assert [s.value for s in high.scores] == [100.0, 100.0]


def test_a_subscale_below_the_rule_is_left_out_and_the_other_kept() -> None:
    # Three ADL items missing (18 of 21 < 19): ADL dropped; Sports complete.
    answers = dict.fromkeys(ITEM_IDS, 2) | dict.fromkeys(ADL_ITEMS[:3], None)
    scores = faam_score(answers)
    assert [s.key for s in scores.scores] == ["sports"]
    # A patient who does no sport: all Sports N/A, ADL still scored.
    answers = dict.fromkeys(ADL_ITEMS, 2)
    scores = faam_score(answers)
    assert [s.key for s in scores.scores] == ["adl"]
    assert scores["adl"].value == pytest.approx(50.0)


def test_neither_subscale_meeting_the_rule_is_not_scorable() -> None:
    answers = dict.fromkeys(ITEM_IDS, 2) | dict.fromkeys(ADL_ITEMS[:3], None)
    answers |= dict.fromkeys(SPORTS_ITEMS[:2], None)  # 6 of 8 < 7
    with pytest.raises(NotScorable) as caught:
        faam_score(answers)
    assert set(caught.value.items) == set(ADL_ITEMS[:3]) | set(SPORTS_ITEMS[:2])
    with pytest.raises(NotScorable):
        faam_score({})


@pytest.mark.parametrize("bad", [-1, 5, 3.5, "4"])
def test_bad_answers_raise_item_error(bad: Any) -> None:
    with pytest.raises(ItemError) as caught:
        faam_score(dict.fromkeys(ITEM_IDS, 4) | {ADL_ITEMS[10]: bad})
    assert caught.value.item == ADL_ITEMS[10]


item_value = st.integers(min_value=0, max_value=4)


@settings(max_examples=200, deadline=None)
@given(
    adl=st.lists(item_value, min_size=21, max_size=21),
    sports=st.lists(item_value, min_size=8, max_size=8),
    adl_blanks=st.sets(st.sampled_from(ADL_ITEMS), max_size=2),
    sports_blank=st.one_of(st.none(), st.sampled_from(SPORTS_ITEMS)),
    index=st.integers(min_value=0, max_value=28),
)
def test_raising_one_answer_never_lowers_a_subscale(
    adl: list[int], sports: list[int], adl_blanks: set[str], sports_blank: str | None, index: int
) -> None:
    answers: dict[str, float | None] = dict(zip(ADL_ITEMS, adl, strict=True))
    answers |= dict(zip(SPORTS_ITEMS, sports, strict=True))
    answers |= dict.fromkeys(adl_blanks, None)
    if sports_blank is not None:
        answers[sports_blank] = None
    item = ITEM_IDS[index]
    current = answers[item]
    start = 0.0 if current is None or current == 4 else current
    before = faam_score(answers | {item: start})
    after = faam_score(answers | {item: start + 1})
    # Higher is better: less difficulty on one item never lowers either subscale.
    for key in ("adl", "sports"):
        assert after[key].value >= before[key].value
        assert 0.0 <= before[key].value <= 100.0
    changed = "adl" if item in ADL_ITEMS else "sports"
    assert after[changed].value > before[changed].value
