"""Oswestry Disability Index (ODI): ten sections scored 0-5, reported as a percentage.

The index is the total scored over the total possible for the sections answered,
times 100: 0 is no disability and 100 the most. One section may be missed or not
applicable (section 8 often is); the possible total then drops by 5. A second
missing section makes the index unscorable, the limit the AO Foundation's published
scoring program applies and the only case the scoring instructions work through.
The program rounds to whole percent; prolo keeps full precision and leaves rounding
to display.

Item wording is licensed (Mapi Research Trust), so the data file carries structure
only.
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

INSTRUMENT_ID = "odi"
ITEM_IDS = questionnaire_item_ids(INSTRUMENT_ID)
LOW, HIGH = shared_bounds(INSTRUMENT_ID)
MAX_MISSING = 1

AO_ODI_PROGRAM = Source(
    source=(
        "Blauth J, Daigl M (AO Clinical Investigation and Documentation). odi: Stata program "
        "computing the Oswestry Disability Index v1.0/2.0/2.1a, 2012; cites Fairbank JCT, "
        "Pynsent PB. The Oswestry Disability Index. Spine 2000;25(22):2940-2953"
    ),
    url="http://fmwww.bc.edu/RePEc/bocode/o/odi.html",
    locator=(
        "'Admissible Values: ... 0: First Statement ... 5: Last Statement'; 'computes the mean "
        "score across all sections of the ODI, divides it by 5, and subsequently multiplies it "
        "by 100'; 'Missing data in one section is replaced by the average score for all "
        "sections. There is a limit of 1 missing section. More than 1 missing section will "
        "result in a missing score.'"
    ),
    grade="secondary",
)

OSTELO_2008 = Source(
    source=(
        "Ostelo RW, Deyo RA, Stratford P, Waddell G, Croft P, Von Korff M, Bouter LM, de Vet "
        "HC. Interpreting change scores for pain and functional status in low back pain: "
        "towards international consensus regarding minimal important change. Spine 2008;"
        "33(1):90-94"
    ),
    url=(
        "https://metajournal.com/articles/201999/"
        "interpreting-change-scores-pain-functional-status-low-back-pain-towards"
    ),
    locator=(
        "Abstract, Results: 'Proposed MIC values are: ... 10 for the Oswestry Disability Index'; "
        "'a 30% improvement was considered a useful threshold'"
    ),
    grade="secondary",
)

SCORES = (
    ScoreSpec(
        key="total",
        name="Oswestry Disability Index",
        low=0.0,
        high=100.0,
        direction="lower_is_better",
        mcid=Mcid(
            value=10.0,
            unit="points",
            source=OSTELO_2008,
            note="Consensus MIC for low back pain; Ostelo 2008 also proposes a 30% "
            "improvement from baseline.",
        ),
    ),
)


def odi_score(answers: Answers) -> ScoreSet:
    """Score the ODI: 100 x total scored / (5 x sections answered).

    At most one section may be missing; more raise
    :class:`~prolo.instruments.base.NotScorable`.

    Examples
    --------
    Sixteen points over all ten sections is 16 / 50 x 100 = 32%; the same sixteen
    points with section 8 missing is 16 / 45 x 100 = 35.6%.

    >>> full = {f"odi-{n}": v for n, v in enumerate([2, 2, 2, 2, 2, 2, 2, 2, 0, 0], 1)}
    >>> odi_score(full)["total"].value
    32.0
    >>> round(odi_score(full | {"odi-8": None, "odi-10": 2})["total"].value, 1)
    35.6
    """
    values = checked_answers(answers, ITEM_IDS, low=LOW, high=HIGH)
    missing = tuple(item for item, value in values.items() if value is None)
    if len(missing) > MAX_MISSING:
        raise NotScorable(
            f"{len(missing)} of {len(ITEM_IDS)} ODI sections are missing; "
            f"at most {MAX_MISSING} may be",
            items=missing,
        )
    answered = [value for value in values.values() if value is not None]
    index = 100.0 * sum(answered) / (HIGH * len(answered))
    score = score_from_spec(
        SCORES[0], index, items_answered=len(answered), items_total=len(ITEM_IDS)
    )
    return ScoreSet(instrument_id=INSTRUMENT_ID, scores=(score,))


INSTRUMENT = Instrument(
    id=INSTRUMENT_ID,
    name="Oswestry Disability Index",
    short_name="ODI",
    loinc=None,
    licence="licensed",
    licence_note=(
        "Distributed by Mapi Research Trust (ePROVIDE): free for clinical practice and "
        "non-funded academic use; fees may apply to healthcare organisations, commercial "
        "users and IT companies. Structure only; clinics load licensed wording."
    ),
    item_ids=ITEM_IDS,
    scores=SCORES,
    scoring_source=AO_ODI_PROGRAM,
    score=odi_score,
    body_regions=("lumbar_spine",),
)
