"""Foot and Ankle Ability Measure (FAAM): ADL and Sports subscales.

Two independently scored subscales: activities of daily living (21 items) and
Sports (8 items), each item 4 (no difficulty) to 0 (unable to do). "Unable to do"
is a real answer scored 0; an item marked N/A (limited by something other than the
foot or ankle) is not counted, exactly like a blank item, so both arrive here as
``None``. A subscale's score is the sum of its answered items divided by four times
the number answered, as a percentage: 0-100, higher is better.

A subscale is scored only under the published "90% of items" rule, which the source
states as 19 of 21 ADL items and 7 of 8 Sports items answered. The subscales stand
alone: a patient who does no sport still gets an ADL score; only when neither
subscale meets the rule is the answer set not scorable. MCIDs are 8 points (ADL)
and 9 points (Sports) from Martin et al. 2005.
"""

from __future__ import annotations

from collections.abc import Mapping

from prolo.instruments.base import (
    Answers,
    Instrument,
    Mcid,
    NotScorable,
    Score,
    ScoreSet,
    ScoreSpec,
    Source,
    checked_answers,
    score_from_spec,
)
from prolo.instruments.questionnaire import questionnaire_item_ids, shared_bounds

INSTRUMENT_ID = "faam"
ITEM_IDS = questionnaire_item_ids(INSTRUMENT_ID)
LOW, HIGH = shared_bounds(INSTRUMENT_ID)

ADL_ITEMS = tuple(item for item in ITEM_IDS if item.startswith("faam-adl-"))
SPORTS_ITEMS = tuple(item for item in ITEM_IDS if item.startswith("faam-sports-"))

# The source states the 90% rule with explicit counts: "19 of 21 for the ADL and 7 of
# 8 for the Sports subscales". 7 of 8 is 87.5%, so the counts, not a formula, are the
# rule (a ceiling of 90% would demand all 8 Sports items).
MIN_ANSWERED = {"adl": 19, "sports": 7}

MARTIN_2005 = Source(
    source=(
        "Martin RL, Irrgang JJ, Burdett RG, Conti SF, Van Swearingen JM. 2005. Evidence of "
        "validity for the Foot and Ankle Ability Measure (FAAM). Foot Ankle Int 26(11):968-983. "
        "PMID 16309613. doi:10.1177/107110070502601113"
    ),
    url=(
        "https://bmjopensem.bmj.com/lookup/external-ref?access_num=16309613&link_type=MED"
        "&atom=%2Fbmjosem%2F3%2F1%2Fe000234.atom"
    ),
    locator=(
        "Abstract: 'The final version of the FAAM consists of the 21-item activities of daily "
        "living (ADL) and 8-item Sports subscales'; 'The minimal clinically important "
        "differences were 8 and 9 points for the ADL and Sports subscales, respectively.'"
    ),
    grade="primary",
)

FAAM_SCORING = Source(
    source=(
        "Physiopedia. 8-Item Sports Subscale (Foot and Ankle Ability Measure), citing "
        "Martin et al. 2005"
    ),
    url="https://www.physio-pedia.com/8-Item_Sports_Subscale",
    locator=(
        "'Scoring the FAAM': items scored 4 ('no difficulty') to 0 ('unable to do'); 'N/A "
        "responses are not counted'; 'The number of items with a response is multiplied by 4 to "
        "get the highest potential score'; 'The item score total is divided by the highest "
        "potential score. This value is multiplied by 100 to get a percentage'; scores 'be "
        "generated only when subjects completed 90% or more of the items (19 of 21 for the ADL "
        "and 7 of 8 for the Sports subscales respectively)'"
    ),
    grade="secondary",
)

SUBSCALES: tuple[tuple[str, tuple[str, ...]], ...] = (("adl", ADL_ITEMS), ("sports", SPORTS_ITEMS))

SCORES = (
    ScoreSpec(
        key="adl",
        name="Activities of daily living",
        low=0.0,
        high=100.0,
        direction="higher_is_better",
        mcid=Mcid(value=8.0, unit="points", source=MARTIN_2005),
    ),
    ScoreSpec(
        key="sports",
        name="Sports",
        low=0.0,
        high=100.0,
        direction="higher_is_better",
        mcid=Mcid(value=9.0, unit="points", source=MARTIN_2005),
    ),
)


def _subscale(values: Mapping[str, float | None], items: tuple[str, ...]) -> tuple[float, int]:
    """The subscale percentage and how many items were answered."""
    answered = [value for item in items if (value := values[item]) is not None]
    return 100.0 * sum(answered) / (4.0 * len(answered)), len(answered)


def faam_score(answers: Answers) -> ScoreSet:
    """Score the FAAM subscales that meet the 90% rule (percentages, higher is better).

    A subscale with fewer than 19 of 21 (ADL) or 7 of 8 (Sports) items answered,
    counting N/A and blank alike as unanswered, is left out of the result; when both
    are left out, raises
    :class:`~prolo.instruments.base.NotScorable`. Answers outside 0-4 raise
    :class:`~prolo.instruments.base.ItemError`.

    Examples
    --------
    >>> answers = {item: 4 for item in ITEM_IDS}
    >>> answers["faam-adl-1"] = 0  # unable to do
    >>> scores = faam_score(answers)
    >>> round(scores["adl"].value, 2), scores["sports"].value
    (95.24, 100.0)
    """
    values = checked_answers(answers, ITEM_IDS, low=LOW, high=HIGH)
    scores: list[Score] = []
    short: list[str] = []
    for spec, (key, items) in zip(SCORES, SUBSCALES, strict=True):
        answered = sum(values[item] is not None for item in items)
        if answered < MIN_ANSWERED[key]:
            short.append(f"{key} {answered} of {len(items)} (needs {MIN_ANSWERED[key]})")
            continue
        value, answered = _subscale(values, items)
        scores.append(score_from_spec(spec, value, items_answered=answered, items_total=len(items)))
    if not scores:
        missing = tuple(item for item in ITEM_IDS if values[item] is None)
        raise NotScorable(
            "no FAAM subscale meets the 90% answered rule: " + "; ".join(short), items=missing
        )
    return ScoreSet(instrument_id=INSTRUMENT_ID, scores=tuple(scores))


INSTRUMENT = Instrument(
    id=INSTRUMENT_ID,
    name="Foot and Ankle Ability Measure",
    short_name="FAAM",
    loinc=None,
    licence="free_with_attribution",
    licence_note=(
        "Developed by Martin RL, Irrgang JJ and colleagues (University of Pittsburgh). The "
        "Shirley Ryan AbilityLab Rehabilitation Measures Database lists its cost as free; no "
        "licence statement from the developers was read, so prolo cites Martin et al. 2005 and "
        "ships neutral labels until a clinic loads the wording."
    ),
    item_ids=ITEM_IDS,
    scores=SCORES,
    scoring_source=FAAM_SCORING,
    score=faam_score,
    body_regions=("ankle_foot",),
)
