"""Patient Global Impression of Change (PGIC): one 7-point rating of change.

1 is "very much improved" and 7 "very much worse" (NINDS Common Data Elements), so
lower is better. The score is the rating itself. PGIC has no MCID of its own: it is
the anchor other instruments' MCIDs are measured against. Farrar et al. (2001) took
"much improved" or better (1-2) as a clinically important improvement; IMMPACT
(Dworkin et al. 2008) called "minimally improved" (3) minimally important. Those are
responder categories, so ``mcid`` stays None and docs/instruments.md explains them.

Labels: 1 "very much improved" and 7 "very much worse" (NINDS), 2 "much improved"
(Farrar 2001) and 3 "minimally improved" (IMMPACT) were read in sources; 4-6 and the
question stem were not, and PGIC versions differ, so those stay neutral until the
clinic loads the wording of its version (the file is tagged structure-only).
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

INSTRUMENT_ID = "pgic"
ITEM_IDS = questionnaire_item_ids(INSTRUMENT_ID)
LOW, HIGH = shared_bounds(INSTRUMENT_ID)

NINDS_PGIC = Source(
    source=(
        "NINDS Common Data Elements. Notice of Copyright: Patient Global Impression of Change "
        "Scale (CRF F2677)"
    ),
    url=(
        "https://www.commondataelements.ninds.nih.gov/ReportViewer.aspx?/nindscdereports/rptNOC"
        "&rs:Command=Render&rc:Parameters=false&crfID=F2677"
    ),
    locator=(
        "'Available in the public domain'; 'a single-item measure of global improvement with "
        'treatment on which participants use a seven-point scale ("1=very much improved" to '
        '"7=very much worse")\''
    ),
    grade="primary",
)

SCORES = (
    ScoreSpec(
        key="total",
        name="Global impression of change",
        low=LOW,
        high=HIGH,
        direction="lower_is_better",
        mcid=None,
    ),
)


def pgic_score(answers: Answers) -> ScoreSet:
    """Score a PGIC rating: the score is the rating, 1 (very much improved) to 7.

    Raises :class:`~prolo.instruments.base.NotScorable` when the rating is missing.

    Examples
    --------
    >>> pgic_score({"pgic": 2})["total"].value
    2.0
    """
    values = checked_answers(answers, ITEM_IDS, low=LOW, high=HIGH)
    rating = values[ITEM_IDS[0]]
    if rating is None:
        raise NotScorable("the PGIC rating is missing", items=ITEM_IDS)
    score = score_from_spec(SCORES[0], rating, items_answered=1, items_total=1)
    return ScoreSet(instrument_id=INSTRUMENT_ID, scores=(score,))


INSTRUMENT = Instrument(
    id=INSTRUMENT_ID,
    name="Patient Global Impression of Change",
    short_name="PGIC",
    loinc=None,
    licence="public_domain",
    licence_note="Public domain per the NINDS Common Data Elements notice of copyright.",
    item_ids=ITEM_IDS,
    scores=SCORES,
    scoring_source=NINDS_PGIC,
    score=pgic_score,
)
