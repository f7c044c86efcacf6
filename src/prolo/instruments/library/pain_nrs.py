"""Pain intensity numeric rating scale (NRS), 0 = no pain to 10 = worst possible pain.

The score is the rating itself. The MCID is the ~2-point (or ~30%) reduction that
Farrar et al. (2001) tied to "much improved" or better on the PGIC across 2724
patients in 10 chronic-pain trials.
"""

from __future__ import annotations

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
)
from prolo.instruments.questionnaire import questionnaire_item_ids, shared_bounds

INSTRUMENT_ID = "pain-nrs"
ITEM_IDS = questionnaire_item_ids(INSTRUMENT_ID)
LOW, HIGH = shared_bounds(INSTRUMENT_ID)

FARRAR_2001 = Source(
    source=(
        "Farrar JT, Young JP Jr, LaMoreaux L, Werth JL, Poole RM. 2001. Clinical importance of "
        "changes in chronic pain intensity measured on an 11-point numerical pain rating scale. "
        "Pain 94(2):149-158. PMID 11690728. doi:10.1016/s0304-3959(01)00349-9"
    ),
    url="https://pubmed.ncbi.nlm.nih.gov/11690728/",
    locator=(
        "Abstract: '0=no pain and 10=worst possible pain'; 'a reduction of approximately two "
        "points or a reduction of approximately 30% in the PI-NRS represented a clinically "
        "important difference'"
    ),
    grade="primary",
)

SCORES = (
    ScoreSpec(
        key="total",
        name="Pain intensity",
        low=LOW,
        high=HIGH,
        direction="lower_is_better",
        mcid=Mcid(
            value=2.0,
            unit="points",
            source=FARRAR_2001,
            note="Farrar 2001 also gives ~30% reduction from baseline; higher baselines need "
            "larger raw changes.",
        ),
    ),
)


def pain_nrs_score(answers: Answers) -> ScoreSet:
    """Score a 0-10 pain rating: the score is the rating.

    Raises :class:`~prolo.instruments.base.ItemError` for an out-of-range rating and
    :class:`~prolo.instruments.base.NotScorable` when the rating is missing.

    Examples
    --------
    >>> pain_nrs_score({"pain-nrs": 7})["total"].value
    7.0
    """
    values = checked_answers(answers, ITEM_IDS, low=LOW, high=HIGH)
    rating = values[ITEM_IDS[0]]
    if rating is None:
        raise NotScorable("the pain rating is missing", items=ITEM_IDS)
    spec = SCORES[0]
    score = Score(
        key=spec.key,
        value=rating,
        low=spec.low,
        high=spec.high,
        direction=spec.direction,
        items_answered=1,
        items_total=1,
    )
    return ScoreSet(instrument_id=INSTRUMENT_ID, scores=(score,))


INSTRUMENT = Instrument(
    id=INSTRUMENT_ID,
    name="Pain intensity numeric rating scale (0-10)",
    short_name="Pain NRS",
    loinc="72514-3",
    licence="public_domain",
    licence_note="Generic 0-10 numeric rating format; no copyright holder.",
    item_ids=ITEM_IDS,
    scores=SCORES,
    scoring_source=FARRAR_2001,
    score=pain_nrs_score,
)
