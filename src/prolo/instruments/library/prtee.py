"""Patient-Rated Tennis Elbow Evaluation (PRTEE): pain and function, 0-100 in all.

Fifteen items rated 0-10. Pain is the sum of the 5 pain items (0-50); function is
the sum of the 10 function items (6 specific and 4 usual activities) divided by 2
(0-50); the total adds the two (0-100). Higher means more pain and disability.

Missing items: the PRTEE User Manual's guidance could not be read (only its table of
contents was available), so no imputation rule is applied: a subscale needs every
one of its items, and the total needs both subscales. A subscale that is complete is
still reported when the other is not.

Copyright Joy C. MacDermid; the data file carries structure only.
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

INSTRUMENT_ID = "prtee"
ITEM_IDS = questionnaire_item_ids(INSTRUMENT_ID)
LOW, HIGH = shared_bounds(INSTRUMENT_ID)
PAIN_ITEMS = tuple(item for item in ITEM_IDS if item.startswith("prtee-pain-"))
FUNCTION_ITEMS = tuple(item for item in ITEM_IDS if item.startswith("prtee-function-"))

AWELL_PRTEE = Source(
    source=(
        "Awell Health. awell-score: Patient-Rated Tennis Elbow Evaluation README, summarising "
        "the PRTEE User Manual (MacDermid JC, 2007/2010)"
    ),
    url=(
        "https://github.com/awell-health/awell-score/blob/main/src/calculation_suite/"
        "calculations/prtee/README.md"
    ),
    locator=(
        "'Pain subscale - 5 items (0 = no pain, 10 = worst imaginable)'; 'Function subscale "
        "(0 = no difficulty, 10 = unable to do) - Specific activities - 6 items - Usual "
        "activities - 4 items'; table: 'Sum of the 5 pain items (/50)', 'Sum of the 10 function "
        "items, divided by 2 (/50)'; 'a total score can be computed on a scale of 100 (0 = no "
        "disability)'"
    ),
    grade="secondary",
)

PTP_2025 = Source(
    source=(
        "Clinimetric analysis of the numeric pain rating scale, patient-rated tennis elbow "
        "evaluation, and tennis elbow function scale in patients with lateral elbow "
        "tendinopathy. Physiother Theory Pract 2025. doi:10.1080/09593985.2025.2450090. "
        "PMID 39793982"
    ),
    url=(
        "https://proxy.weglot.com/wg_8714b7f1589aa0f6c92979708057c4a57/en/es/"
        "pubmed.ncbi.nlm.nih.gov/39793982"
    ),
    locator=(
        "Abstract, Results: n = 143 with lateral elbow tendinopathy, 3-month follow-up; 'The "
        "MCID and MDC90 were ... 14.8 and 9.7 for the PRTEE'"
    ),
    grade="primary",
)

SCORES = (
    ScoreSpec(
        key="total",
        name="PRTEE total",
        low=0.0,
        high=100.0,
        direction="lower_is_better",
        mcid=Mcid(
            value=14.8,
            unit="points",
            source=PTP_2025,
            note="One cohort of 143 patients; other studies (some in translation) differ.",
        ),
    ),
    ScoreSpec(key="pain", name="PRTEE pain", low=0.0, high=50.0, direction="lower_is_better"),
    ScoreSpec(
        key="function", name="PRTEE function", low=0.0, high=50.0, direction="lower_is_better"
    ),
)
_SPEC = {spec.key: spec for spec in SCORES}


def prtee_score(answers: Answers) -> ScoreSet:
    """Score the PRTEE: pain = sum of 5 items, function = sum of 10 items / 2, total = both.

    A subscale with any item missing is left out; the total needs both. When neither
    subscale is complete, :class:`~prolo.instruments.base.NotScorable` is raised.

    Examples
    --------
    Pain items 5,6,4,7,3 sum to 25; function items 4,5,6,3,2,5,4,3,4,4 sum to 40,
    halved to 20; the total is 25 + 20 = 45.

    >>> pain = dict(zip(PAIN_ITEMS, [5, 6, 4, 7, 3]))
    >>> function = dict(zip(FUNCTION_ITEMS, [4, 5, 6, 3, 2, 5, 4, 3, 4, 4]))
    >>> [(s.key, s.value) for s in prtee_score(pain | function).scores]
    [('total', 45.0), ('pain', 25.0), ('function', 20.0)]
    """
    values = checked_answers(answers, ITEM_IDS, low=LOW, high=HIGH)
    subscales: dict[str, Score] = {}
    for key, items, divisor in (("pain", PAIN_ITEMS, 1.0), ("function", FUNCTION_ITEMS, 2.0)):
        answered = [values[item] for item in items]
        if any(value is None for value in answered):
            continue
        total = sum(value for value in answered if value is not None) / divisor
        subscales[key] = score_from_spec(
            _SPEC[key], total, items_answered=len(items), items_total=len(items)
        )
    if not subscales:
        missing = tuple(item for item, value in values.items() if value is None)
        raise NotScorable(
            "neither PRTEE subscale is complete; every item of a subscale is needed",
            items=missing,
        )
    scores: list[Score] = []
    if len(subscales) == 2:
        scores.append(
            score_from_spec(
                _SPEC["total"],
                subscales["pain"].value + subscales["function"].value,
                items_answered=len(ITEM_IDS),
                items_total=len(ITEM_IDS),
            )
        )
    scores.extend(subscales[key] for key in ("pain", "function") if key in subscales)
    return ScoreSet(instrument_id=INSTRUMENT_ID, scores=tuple(scores))


INSTRUMENT = Instrument(
    id=INSTRUMENT_ID,
    name="Patient-Rated Tennis Elbow Evaluation",
    short_name="PRTEE",
    loinc=None,
    licence="licensed",
    licence_note=(
        "Copyright Joy C. MacDermid (PRTEE User Manual). Terms of use were not read, so the "
        "wording is treated as protected. Structure only; clinics load licensed wording."
    ),
    item_ids=ITEM_IDS,
    scores=SCORES,
    scoring_source=AWELL_PRTEE,
    score=prtee_score,
    body_regions=("elbow",),
)
