"""KOOS scoring, checked by hand against the 2012 scoring instructions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prolo.instruments.base import ItemError, NotScorable
from prolo.instruments.library.koos import ITEM_IDS, SUBSCALE_ITEMS, koos_score


def _all(value: int | None) -> dict[str, int | None]:
    return dict.fromkeys(ITEM_IDS, value)


def test_worked_example() -> None:
    answers = _all(1)
    # Pain: P1..P9 = 0,1,2,3,4,0,1,2,3 -> sum 16, mean 16/9 = 1.7778
    #   score = 100 - 1.7778 * 25 = 55.556
    for n, v in enumerate((0, 1, 2, 3, 4, 0, 1, 2, 3), start=1):
        answers[f"koos-p{n}"] = v
    # QOL: Q1..Q4 = 4,4,3,3 -> mean 3.5 -> 100 - 87.5 = 12.5
    answers.update({"koos-q1": 4, "koos-q2": 4, "koos-q3": 3, "koos-q4": 3})
    scores = koos_score(answers)
    assert scores["pain"].value == pytest.approx(100 - 16 / 9 * 25)
    assert scores["qol"].value == pytest.approx(12.5)
    # Symptoms, ADL, Sport/Rec all 1 -> 100 - 25 = 75
    for key in ("symptoms", "adl", "sport_rec"):
        assert scores[key].value == pytest.approx(75.0)


def test_boundaries() -> None:
    assert {s.value for s in koos_score(_all(0)).scores} == {100.0}
    assert {s.value for s in koos_score(_all(4)).scores} == {0.0}


@pytest.mark.parametrize(
    ("key", "needed"), [("pain", 5), ("symptoms", 4), ("adl", 9), ("sport_rec", 3), ("qol", 2)]
)
def test_half_the_items_rule(key: str, needed: int) -> None:
    items = SUBSCALE_ITEMS[key]
    answers = _all(2)
    for item in items[needed:]:
        answers[item] = None
    # At the limit: scored from the answered items (all 2 -> 50).
    assert koos_score(answers)[key].value == pytest.approx(50.0)
    assert koos_score(answers)[key].items_answered == needed
    answers[items[needed - 1]] = None
    scores = koos_score(answers)
    assert key not in {s.key for s in scores.scores}  # left out, others still reported


def test_nothing_scorable_and_bad_answers() -> None:
    with pytest.raises(NotScorable, match="no KOOS subscale"):
        koos_score(_all(None))
    with pytest.raises(ItemError, match="koos-a3"):
        koos_score({**_all(0), "koos-a3": 5})
    with pytest.raises(ItemError, match="koos-x1"):
        koos_score({**_all(0), "koos-x1": 1})


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 4), min_size=len(ITEM_IDS), max_size=len(ITEM_IDS)),
    st.integers(0, len(ITEM_IDS) - 1),
)
def test_more_trouble_never_raises_a_score(values: list[int], index: int) -> None:
    answers = dict(zip(ITEM_IDS, values, strict=True))
    before = {s.key: s.value for s in koos_score(answers).scores}
    if answers[ITEM_IDS[index]] == 4:
        return
    answers[ITEM_IDS[index]] += 1
    after = {s.key: s.value for s in koos_score(answers).scores}
    assert all(after[k] <= before[k] + 1e-9 for k in before)
    assert all(0.0 <= v <= 100.0 for v in after.values())
