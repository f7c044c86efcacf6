"""QuickDASH: eleven items scored 1-5, reported 0 (no disability) to 100.

The score is ((sum of n responses / n) - 1) x 25, where n is the number answered,
and needs at least 10 of the 11 items. The optional work and sports/performing arts
modules are separate scales and are not part of this instrument.

Copyright the Institute for Work & Health; commercial software needs an IWH licence,
so the data file carries structure only.
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

INSTRUMENT_ID = "quickdash"
ITEM_IDS = questionnaire_item_ids(INSTRUMENT_ID)
LOW, HIGH = shared_bounds(INSTRUMENT_ID)
MIN_ANSWERED = 10

PHYSIOPEDIA_DASH = Source(
    source=(
        "Physiopedia. DASH Outcome Measure (revision 172697), citing the Institute for Work & "
        "Health; QuickDASH developed by Beaton DE, Wright JG, Katz JN, J Bone Joint Surg Am "
        "2005;87(5):1038-1046, PMID 15866967"
    ),
    url="http://www.physio-pedia.com/index.php?title=DASH_Outcome_Measure&oldid=172697",
    locator=(
        "Scoring: 'DASH and QuickDASH Scoring Formula = ([(sum of n responses)/n] -1)(25) where "
        "n represents the number of completed items'; 'QuickDASH cannot be computed if greater "
        "than 1 item is missing'; 'score on both test ranges from 0 (no disability) to 100 "
        "(most severe disability)'"
    ),
    grade="secondary",
)

FRANCHIGNONI_2014 = Source(
    source=(
        "Franchignoni F, Vercelli S, Giordano A, Sartorio F, Bravini E, Ferriero G. Minimal "
        "clinically important difference of the disabilities of the arm, shoulder and hand "
        "outcome measure (DASH) and its shortened version (QuickDASH)"
    ),
    url=(
        "https://moh-it.pure.elsevier.com/en/publications/"
        "minimal-clinically-important-difference-of-the-disabilities-of-th"
    ),
    locator=(
        "Abstract, Results: 255 patients with upper-limb musculoskeletal disorders, 7-point "
        "global rating of change anchor; '15.91 points for the QuickDASH (sensitivity, 79%; "
        "specificity, 75%)'"
    ),
    grade="primary",
)

SCORES = (
    ScoreSpec(
        key="total",
        name="QuickDASH disability/symptom score",
        low=0.0,
        high=100.0,
        direction="lower_is_better",
        mcid=Mcid(
            value=15.91,
            unit="points",
            source=FRANCHIGNONI_2014,
            note="The authors call it the lower boundary of a range of MCIDs; in lateral "
            "epicondylitis a retrospective cohort (J Hand Ther 2016) found 15.8.",
        ),
    ),
)


def quickdash_score(answers: Answers) -> ScoreSet:
    """Score the QuickDASH: ((sum / n) - 1) x 25 over the n items answered.

    Fewer than 10 answered items raise :class:`~prolo.instruments.base.NotScorable`.

    Examples
    --------
    Eleven answers summing to 22 give (22 / 11 - 1) x 25 = 25.0; dropping one item
    scored 2 leaves 20 over 10 items, (20 / 10 - 1) x 25 = 25.0 again.

    >>> answers = {f"quickdash-{n}": v for n, v in enumerate([1, 2, 3, 2, 2, 2, 3, 1, 2, 2, 2], 1)}
    >>> quickdash_score(answers)["total"].value
    25.0
    >>> quickdash_score(answers | {"quickdash-11": None})["total"].value
    25.0
    """
    values = checked_answers(answers, ITEM_IDS, low=LOW, high=HIGH)
    answered = [value for value in values.values() if value is not None]
    if len(answered) < MIN_ANSWERED:
        missing = tuple(item for item, value in values.items() if value is None)
        raise NotScorable(
            f"QuickDASH needs at least {MIN_ANSWERED} of {len(ITEM_IDS)} items; "
            f"{len(answered)} answered",
            items=missing,
        )
    value = (sum(answered) / len(answered) - 1.0) * 25.0
    score = score_from_spec(
        SCORES[0], value, items_answered=len(answered), items_total=len(ITEM_IDS)
    )
    return ScoreSet(instrument_id=INSTRUMENT_ID, scores=(score,))


INSTRUMENT = Instrument(
    id=INSTRUMENT_ID,
    name="QuickDASH (Disabilities of the Arm, Shoulder and Hand)",
    short_name="QuickDASH",
    loinc=None,
    licence="licensed",
    licence_note=(
        "Copyright Institute for Work & Health. Free use is granted for most clinical and "
        "research use; commercial and web-based software for repeated use needs an IWH "
        "commercial licence (https://dash.iwh.on.ca/licences). Structure only."
    ),
    item_ids=ITEM_IDS,
    scores=SCORES,
    scoring_source=PHYSIOPEDIA_DASH,
    score=quickdash_score,
    body_regions=("shoulder", "elbow", "wrist_hand"),
)
