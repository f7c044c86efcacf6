"""Jaw Functional Limitation Scale, 8-item global form (JFLS-8).

Eight items rate jaw limitation over the past month from 0 (no limitation) to 10
(severe limitation). The DC/TMD scoring manual (Ohrbach and Knibbe) scores the
global functional limitation as the mean of the answered items, allows at most two
missing items, and says norms are not yet established. No minimal clinically
important difference was found, so the score carries none.
"""

from __future__ import annotations

from prolo.instruments.base import (
    Answers,
    Instrument,
    NotScorable,
    ScoreSet,
    ScoreSpec,
    Source,
    checked_answers,
    score_from_spec,
)
from prolo.instruments.questionnaire import questionnaire_item_ids, shared_bounds

INSTRUMENT_ID = "jfls-8"
ITEM_IDS = questionnaire_item_ids(INSTRUMENT_ID)
LOW, HIGH = shared_bounds(INSTRUMENT_ID)

# The manual: "For the JFLS-8, no more than 2 items may be missing."
MAX_MISSING = 2

DC_TMD_SCORING_MANUAL = Source(
    source=(
        "Ohrbach R, Knibbe W. Diagnostic Criteria for Temporomandibular Disorders (DC/TMD): "
        "Scoring Manual for Self-Report Instruments. Version 30 March 2021. International "
        "RDC/TMD Consortium Network, www.rdc-tmdinternational.org"
    ),
    url=(
        "https://github.com/movanr/cmdetect/blob/5ae07c698f79ccab7dc204f41b162ce0866e0309/"
        "docs/dc-tmd/self-report-scoring-manual/self-report-scoring-manual.md"
    ),
    locator=(
        'JFLS section. Scoring: \'a single global score of "jaw functional limitation" can be '
        "computed as the mean of the available items'. Missing data: 'For the JFLS-8, no more "
        "than 2 items may be missing. Computation of a score with missing items is adjusted by "
        "dividing by number of items present.' Appendix 1: JFLS-8 range 0-10, interpretation "
        "'Not yet established'; observed global means 0.16 (no lifetime TMD) and 1.74 (chronic "
        "TMD). Read in a Markdown transcription of the manual kept in the movanr/cmdetect "
        "repository; the consortium's PDF was not reachable."
    ),
    grade="primary",
)

OHRBACH_2008 = Source(
    source=(
        "Ohrbach R, Larsson P, List T. 2008. The Jaw Functional Limitation Scale: development, "
        "reliability, and validity of 8-item and 20-item versions. J Orofac Pain 22(3):219-230. "
        "doi:10.11607/jofph.22.3.06"
    ),
    url="https://www.jofph.com/articles/10.11607/jofph.22.3.06",
    locator="Abstract: development of the JFLS-20 and the 8-item global scale",
    grade="primary",
)

SCORES = (
    ScoreSpec(
        key="total",
        name="Jaw functional limitation (global)",
        low=LOW,
        high=HIGH,
        direction="lower_is_better",
        mcid=None,
    ),
)


def jfls_8_score(answers: Answers) -> ScoreSet:
    """Score the JFLS-8: the mean of the answered items, 0 to 10, lower is better.

    At most two of the eight items may be blank; with more, raises
    :class:`~prolo.instruments.base.NotScorable`. Out-of-range or non-integer answers
    raise :class:`~prolo.instruments.base.ItemError`.

    Examples
    --------
    >>> answers = {f"jfls8-{i}": 2 for i in range(1, 9)}
    >>> jfls_8_score(answers)["total"].value
    2.0
    """
    values = checked_answers(answers, ITEM_IDS, low=LOW, high=HIGH)
    answered = [value for value in values.values() if value is not None]
    missing = tuple(item for item, value in values.items() if value is None)
    if len(missing) > MAX_MISSING:
        raise NotScorable(
            f"{len(missing)} of {len(ITEM_IDS)} JFLS-8 items are missing; "
            f"the scoring manual allows at most {MAX_MISSING}",
            items=missing,
        )
    score = score_from_spec(
        SCORES[0],
        sum(answered) / len(answered),
        items_answered=len(answered),
        items_total=len(ITEM_IDS),
    )
    return ScoreSet(instrument_id=INSTRUMENT_ID, scores=(score,))


INSTRUMENT = Instrument(
    id=INSTRUMENT_ID,
    name="Jaw Functional Limitation Scale, 8-item",
    short_name="JFLS-8",
    loinc=None,
    licence="free_with_attribution",
    licence_note=(
        "Copyright Ohrbach R.; distributed with the DC/TMD instruments at "
        "www.rdc-tmdinternational.org. The form footer (read on the consortium's French "
        "translation) says no permission is required to reproduce, translate, display or "
        "distribute. Wording not shipped: labels are neutral until a clinic loads the text."
    ),
    item_ids=ITEM_IDS,
    scores=SCORES,
    scoring_source=DC_TMD_SCORING_MANUAL,
    score=jfls_8_score,
    body_regions=("jaw",),
)
