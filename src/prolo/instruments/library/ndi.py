"""Neck Disability Index (NDI): ten items scored 0-5, total 0-50.

Higher means more neck-related disability; doubling the total gives a percentage.
When a respondent leaves an item out, the author's scoring note adds the average of
the answered items in its place, so the total is the sum times 10 over the number
answered. The author's note and the scoring form describe a single missed item
("one question or another"; "if one section is missed ... / 45"); no rule for more
was found, so a second missing item makes the NDI unscorable rather than imputing
half of a scale no source covers.

Item wording is treated as protected, so the data file carries structure only.
"""

from __future__ import annotations

from prolo.instruments.base import (
    Answers,
    Instrument,
    Mcid,
    NotScorable,
    ScoreSet,
    ScoreSpec,
    Source,
    checked_answers,
    score_from_spec,
)
from prolo.instruments.questionnaire import questionnaire_item_ids, shared_bounds

INSTRUMENT_ID = "ndi"
ITEM_IDS = questionnaire_item_ids(INSTRUMENT_ID)
LOW, HIGH = shared_bounds(INSTRUMENT_ID)
MAX_MISSING = 1

VERNON_NOTE = Source(
    source=(
        "Vernon H. The Neck Disability Index: an informal note from the author (hosted by "
        "chiro.org); the NDI was published by Vernon and Mior, J Manipulative Physiol Ther 1991"
    ),
    url="https://chiro.org/forms/NDI_Explain.shtml",
    locator=(
        "'Each of the 10 items is scored from 0 - 5. The maximum score is therefore 50. The "
        "obtained score can be multiplied by 2 to produce a percentage score. Occasionally, a "
        "respondent will not complete one question or another. The average of all other items "
        "is then added to the completed items.'; 'the minimum detectable score and the minimal "
        "clinically important difference amounts to the same figure - 5 NDI points'"
    ),
    grade="primary",
)

SCORES = (
    ScoreSpec(
        key="total",
        name="Neck Disability Index",
        low=0.0,
        high=50.0,
        direction="lower_is_better",
        mcid=Mcid(
            value=5.0,
            unit="points",
            source=VERNON_NOTE,
            note="The author's figure on the 0-50 scale (10 percentage points); later "
            "studies report a range of values by population.",
        ),
    ),
)


def ndi_score(answers: Answers) -> ScoreSet:
    """Score the NDI: the sum of the ten items, a missed item replaced by the mean.

    At most one item may be missing; more raise
    :class:`~prolo.instruments.base.NotScorable`.

    Examples
    --------
    Items 2,1,3,2,1,2,0,1,2,2 sum to 16 of 50. With the last item missing the nine
    answered sum to 14, mean 14/9, so the total is 14 + 14/9 = 15.56.

    >>> answers = {f"ndi-{n}": v for n, v in enumerate([2, 1, 3, 2, 1, 2, 0, 1, 2, 2], 1)}
    >>> ndi_score(answers)["total"].value
    16.0
    >>> round(ndi_score(answers | {"ndi-10": None})["total"].value, 2)
    15.56
    """
    values = checked_answers(answers, ITEM_IDS, low=LOW, high=HIGH)
    missing = tuple(item for item, value in values.items() if value is None)
    if len(missing) > MAX_MISSING:
        raise NotScorable(
            f"{len(missing)} of {len(ITEM_IDS)} NDI items are missing; "
            f"at most {MAX_MISSING} may be",
            items=missing,
        )
    answered = [value for value in values.values() if value is not None]
    total = sum(answered) * len(ITEM_IDS) / len(answered)
    score = score_from_spec(
        SCORES[0], total, items_answered=len(answered), items_total=len(ITEM_IDS)
    )
    return ScoreSet(instrument_id=INSTRUMENT_ID, scores=(score,))


INSTRUMENT = Instrument(
    id=INSTRUMENT_ID,
    name="Neck Disability Index",
    short_name="NDI",
    loinc=None,
    licence="licensed",
    licence_note=(
        "Developed by Howard Vernon (1989) from the Oswestry index with its author's "
        "permission; licence terms not confirmed, so wording is treated as protected. "
        "Structure only; clinics load licensed wording."
    ),
    item_ids=ITEM_IDS,
    scores=SCORES,
    scoring_source=VERNON_NOTE,
    score=ndi_score,
    body_regions=("neck",),
)
