"""Pain NRS: the score is the 0-10 rating (Farrar et al. 2001)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prolo.instruments.base import ItemError, NotScorable
from prolo.instruments.catalog import get_instrument

NRS = get_instrument("pain-nrs")


@pytest.mark.parametrize("rating", range(11))
def test_score_is_the_rating(rating: int) -> None:
    # Farrar 2001: 0 = no pain, 10 = worst possible pain; nothing is transformed.
    assert NRS.score({"pain-nrs": rating})["total"].value == rating


def test_boundaries() -> None:
    assert NRS.score({"pain-nrs": 0})["total"].value == 0.0
    assert NRS.score({"pain-nrs": 10})["total"].value == 10.0
    with pytest.raises(ItemError, match="pain-nrs"):
        NRS.score({"pain-nrs": 11})


def test_missing_rating_is_not_scorable() -> None:
    # One item: there is no missing-item allowance.
    with pytest.raises(NotScorable):
        NRS.score({"pain-nrs": None})


def test_mcid_is_two_points() -> None:
    # Farrar 2001 abstract: "a reduction of approximately two points".
    mcid = NRS.spec("total").mcid
    assert mcid is not None and (mcid.value, mcid.unit) == (2.0, "points")
    assert "11690728" in mcid.source.source


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 9))
def test_raising_the_rating_raises_the_score(rating: int) -> None:
    lower = NRS.score({"pain-nrs": rating})["total"].value
    higher = NRS.score({"pain-nrs": rating + 1})["total"].value
    assert higher > lower
