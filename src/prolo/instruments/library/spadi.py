"""Shoulder Pain and Disability Index (SPADI), 0-10 numeric rating version.

Thirteen items rated 0-10: pain (5 items) and disability (8 items). The scoring
form that cites Roach et al. (1991) gives each subscale as the sum over its total
possible score (50 and 80), and the total as the sum of all items over 130, each
times 100: 0 is best and 100 worst. A missed item is taken out of the total possible
score (divide by 40 instead of 50). The form works through exactly one missed item
per subscale and states no larger limit, so prolo scores a subscale with at most one
item missing and the total only when both subscales are scorable.

Another common description averages the two subscale percentages for the total; it
weights pain and disability equally and so differs from the form's sum over 130.
prolo follows the form. Wording is treated as protected: structure only.
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
    score_from_spec,
)
from prolo.instruments.questionnaire import questionnaire_item_ids, shared_bounds

INSTRUMENT_ID = "spadi"
ITEM_IDS = questionnaire_item_ids(INSTRUMENT_ID)
LOW, HIGH = shared_bounds(INSTRUMENT_ID)
PAIN_ITEMS = tuple(item for item in ITEM_IDS if item.startswith("spadi-pain-"))
DISABILITY_ITEMS = tuple(item for item in ITEM_IDS if item.startswith("spadi-disability-"))
MAX_MISSING_PER_SUBSCALE = 1

SPADI_FORM = Source(
    source=(
        "Shoulder Pain and Disability Index scoring form, 'Source: Roach et al. (1991). "
        "Development of a shoulder pain and disability index' (Arthritis Care Res 1991;"
        "4(4):143-149)"
    ),
    url="https://www.scribd.com/doc/189573731/Shoulder-Pain-and-Disaliblity-Index",
    locator=(
        "'0 = no pain and 10 = the worst pain imaginable'; 'Total pain score /50 x 100'; 'If a "
        "person does not answer all questions divide by the total possible score, eg. if 1 "
        "question missed divide by 40'; 'Total disability score: / 80 x 100' ('divide by 70'); "
        "'Total Spadi score: 130 x 100' ('if 1 question missed divide by 120')"
    ),
    grade="secondary",
)

ROY_2009 = Source(
    source=(
        "Roy JS, MacDermid JC, Woodhouse LJ. Measuring shoulder function: a systematic review "
        "of four questionnaires. Arthritis Rheum (Arthritis Care Res) 2009;61(5):623-632. "
        "doi:10.1002/art.24396"
    ),
    url=(
        "https://scribd.com/document/398022546/"
        "Inestabilidad-de-hombro-una-revisio-n-de-las-opciones-de-manejo-2016"
    ),
    locator=(
        "Abstract, Results: 'the minimal clinically important difference (MCID) is ... and "
        "ranges between 8 and 13 for the SPADI'"
    ),
    grade="secondary",
)

SCORES = (
    ScoreSpec(
        key="total",
        name="SPADI total",
        low=0.0,
        high=100.0,
        direction="lower_is_better",
        mcid=Mcid(
            value=8.0,
            unit="points",
            source=ROY_2009,
            note="Lower end of the 8-13 point range the review reports.",
        ),
    ),
    ScoreSpec(key="pain", name="SPADI pain", low=0.0, high=100.0, direction="lower_is_better"),
    ScoreSpec(
        key="disability",
        name="SPADI disability",
        low=0.0,
        high=100.0,
        direction="lower_is_better",
    ),
)
_SPEC = {spec.key: spec for spec in SCORES}


def _percent(answered: list[float]) -> float:
    return 100.0 * sum(answered) / (HIGH * len(answered))


def spadi_score(answers: Answers) -> ScoreSet:
    """Score the SPADI: each subscale and the total as 100 x sum / (10 x items answered).

    A subscale with more than one item missing is left out; the total needs both
    subscales. When neither is scorable, :class:`~prolo.instruments.base.NotScorable`
    is raised.

    Examples
    --------
    Pain 6,5,7,4,3 = 25 of 50 is 50%; disability 3,4,2,5,3,6,4,2 = 29 of 80 is
    36.25%; the total is 54 of 130 = 41.54%.

    >>> pain = dict(zip(PAIN_ITEMS, [6, 5, 7, 4, 3]))
    >>> disability = dict(zip(DISABILITY_ITEMS, [3, 4, 2, 5, 3, 6, 4, 2]))
    >>> [(s.key, round(s.value, 2)) for s in spadi_score(pain | disability).scores]
    [('total', 41.54), ('pain', 50.0), ('disability', 36.25)]
    """
    values = checked_answers(answers, ITEM_IDS, low=LOW, high=HIGH)
    subscales: dict[str, Score] = {}
    for key, items in (("pain", PAIN_ITEMS), ("disability", DISABILITY_ITEMS)):
        answered = [value for item in items if (value := values[item]) is not None]
        if len(items) - len(answered) > MAX_MISSING_PER_SUBSCALE:
            continue
        subscales[key] = score_from_spec(
            _SPEC[key], _percent(answered), items_answered=len(answered), items_total=len(items)
        )
    if not subscales:
        missing = tuple(item for item, value in values.items() if value is None)
        raise NotScorable("both SPADI subscales have more than one item missing", items=missing)
    scores: list[Score] = []
    if len(subscales) == 2:
        answered = [value for value in values.values() if value is not None]
        scores.append(
            score_from_spec(
                _SPEC["total"],
                _percent(answered),
                items_answered=len(answered),
                items_total=len(ITEM_IDS),
            )
        )
    scores.extend(subscales[key] for key in ("pain", "disability") if key in subscales)
    return ScoreSet(instrument_id=INSTRUMENT_ID, scores=tuple(scores))


INSTRUMENT = Instrument(
    id=INSTRUMENT_ID,
    name="Shoulder Pain and Disability Index",
    short_name="SPADI",
    loinc=None,
    licence="licensed",
    licence_note=(
        "Developed by Roach et al. (1991); licence terms were not confirmed in the sources "
        "read, so the wording is treated as protected. Structure only."
    ),
    item_ids=ITEM_IDS,
    scores=SCORES,
    scoring_source=SPADI_FORM,
    score=spadi_score,
    body_regions=("shoulder",),
)
