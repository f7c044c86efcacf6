"""PGIC: one rating, 1 (very much improved) to 7 (very much worse) (NINDS CDE)."""

from __future__ import annotations

import pytest

from prolo.instruments.base import ItemError, NotScorable
from prolo.instruments.catalog import get_instrument
from prolo.instruments.questionnaire import (
    is_structure_only,
    load_questionnaire,
    questionnaire_items,
)

PGIC = get_instrument("pgic")


def test_score_is_the_rating() -> None:
    # The score is the rating itself: "much improved" (2) scores 2.
    assert PGIC.score({"pgic": 2})["total"].value == 2.0


def test_boundaries_and_direction() -> None:
    assert PGIC.score({"pgic": 1})["total"].value == 1.0  # very much improved: best
    assert PGIC.score({"pgic": 7})["total"].value == 7.0  # very much worse: worst
    assert PGIC.spec("total").direction == "lower_is_better"
    for bad in (0, 8):
        with pytest.raises(ItemError, match="pgic"):
            PGIC.score({"pgic": bad})


def test_answer_labels_run_from_improved_to_worse() -> None:
    (item,) = questionnaire_items("pgic")
    labels = {option.ordinal: option.display for option in item.options}
    # The NINDS CDE anchors: 1 = very much improved, 7 = very much worse; 2 and 3 as
    # named by Farrar 2001 and IMMPACT. 4-6 were not read in a source, so stay neutral.
    assert labels[1.0] == "Very much improved"
    assert labels[2.0] == "Much improved"
    assert labels[3.0] == "Minimally improved"
    assert labels[7.0] == "Very much worse"
    assert [labels[n] for n in (4.0, 5.0, 6.0)] == ["Rating 4", "Rating 5", "Rating 6"]


def test_neutral_labels_are_flagged_for_the_clinic() -> None:
    assert is_structure_only(load_questionnaire("pgic"))


def test_missing_rating_is_not_scorable() -> None:
    with pytest.raises(NotScorable):
        PGIC.score({"pgic": None})


def test_pgic_has_no_mcid_of_its_own() -> None:
    # PGIC is the anchor other MCIDs are measured against; docs/instruments.md gives
    # the responder categories instead.
    assert PGIC.spec("total").mcid is None


@pytest.mark.parametrize("rating", range(1, 7))
def test_raising_the_rating_never_lowers_the_score(rating: int) -> None:
    assert (
        PGIC.score({"pgic": rating + 1})["total"].value
        > PGIC.score({"pgic": rating})["total"].value
    )
