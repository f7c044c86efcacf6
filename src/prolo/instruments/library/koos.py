"""Knee injury and Osteoarthritis Outcome Score (KOOS): five separately scored subscales.

Items are scored 0 (none) to 4 (extreme). Each subscale's score is 100 minus the
mean of its answered items times 100/4, so 100 means no problems and 0 extreme
problems; there is no total score. The 2012 missing-item rule: a subscale is scored
when at least half its items are answered (Pain 5 of 9, Symptoms 4 of 7, ADL 9 of
17, Sport/Rec 3 of 5, QOL 2 of 4); the other subscales are still reported.
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

INSTRUMENT_ID = "koos"
ITEM_IDS = questionnaire_item_ids(INSTRUMENT_ID)
LOW, HIGH = shared_bounds(INSTRUMENT_ID)

KOOS_SCORING_2012 = Source(
    source="Roos EM et al. KOOS Scoring 2012 (the KOOS development group's scoring instructions)",
    url="https://www.scribd.com/document/404984174/KOOSscoring2012-pdf",
    locator=(
        "'Assign the following scores to the boxes: None Mild Moderate Severe Extreme 0 1 2 3 4'; "
        "'Calculate the mean score of the individual items of each subscale and divide by 4'; "
        "'100 indicates no problems and 0 indicates extreme problems'; 'As long as at least 50% "
        "of the subscale items are answered ... Pain, ... 5 items ...; Symptoms, 4 items; ADL, 9 "
        "items; Sport/Rec, 3 items; and QOL, 2 items'"
    ),
    grade="secondary",  # a copy of the developers' document, not koos.nu itself
)

KOOS_ITEMS = Source(
    source="KOOS item list (S1-S7, P1-P9, A1-A17, SP1-SP5, Q1-Q4) as laid out by a KOOS calculator",
    url=(
        "https://www.thecalculator.co/health/"
        "Knee-Injury-And-Osteoarthritis-Outcome-Score-(KOOS)-Calculator-957.html"
    ),
    locator="The form's item codes per subscale (wording not reproduced here)",
    grade="secondary",
)

# Minimal important change for improvement, knee OA after four weeks of physiotherapy
# (Persian KOOS): indirect for prolotherapy, but the one source read that gives every
# subscale from one cohort.
MOSTAFAEE_2021 = Source(
    source=(
        "Mostafaee N, Nourollahi F, Mostamand J, Negahban H. 2021. Responsiveness and the minimal "
        "important change of Knee injury and Osteoarthritis Outcome Score in Persian patients "
        "with knee osteoarthritis following physiotherapy intervention. Physiother Theory Pract."
    ),
    url="https://biomed.reviewer.ly/app/publication/9643eba9-048f-42ed-b061-08ebfd02b2df",
    locator=(
        "Abstract, Results: 'The MIC values reflecting improvement for Pain, Symptoms, Activities "
        "of Daily Living (ADL), Sports and Recreation (Sport/Rec), and Quality of Life (QoL) "
        "subscales were 15, 12.5, 15.5, 17.5, 12.5 points, respectively.'"
    ),
    grade="primary",
)

_MIC_NOTE = "Persian KOOS, knee osteoarthritis, 4 weeks of physiotherapy (indirect)"

# (key, name, linkId prefix, minimum answered, MIC)
SUBSCALES: tuple[tuple[str, str, str, int, float], ...] = (
    ("symptoms", "Symptoms", "koos-s", 4, 12.5),
    ("pain", "Pain", "koos-p", 5, 15.0),
    ("adl", "Function in daily living", "koos-a", 9, 15.5),
    ("sport_rec", "Function in sport and recreation", "koos-sp", 3, 17.5),
    ("qol", "Knee-related quality of life", "koos-q", 2, 12.5),
)


def _items(prefix: str) -> tuple[str, ...]:
    # "koos-s" must not capture "koos-sp1": the rest of the linkId is the item number.
    return tuple(i for i in ITEM_IDS if i.startswith(prefix) and i[len(prefix) :].isdigit())


SUBSCALE_ITEMS = {key: _items(prefix) for key, _, prefix, _, _ in SUBSCALES}

SCORES = tuple(
    ScoreSpec(
        key=key,
        name=name,
        low=0.0,
        high=100.0,
        direction="higher_is_better",
        mcid=Mcid(value=mic, unit="points", source=MOSTAFAEE_2021, note=_MIC_NOTE),
    )
    for key, name, _, _, mic in SUBSCALES
)


def koos_score(answers: Answers) -> ScoreSet:
    """Score every KOOS subscale with at least half its items answered (0-100, higher is better).

    A subscale below the 2012 rule is left out; when every subscale is left out,
    raises :class:`~prolo.instruments.base.NotScorable`. Answers outside 0-4 raise
    :class:`~prolo.instruments.base.ItemError`.

    Examples
    --------
    >>> answers = {item: 0 for item in ITEM_IDS}
    >>> answers.update({"koos-p1": 2, "koos-p2": 2})  # pain mean 4/9 -> 100 - 4/9*25
    >>> round(koos_score(answers)["pain"].value, 2), koos_score(answers)["qol"].value
    (88.89, 100.0)
    """
    values = checked_answers(answers, ITEM_IDS, low=LOW, high=HIGH)
    scores: list[Score] = []
    short: list[str] = []
    for spec, (key, _, _, minimum, _) in zip(SCORES, SUBSCALES, strict=True):
        items = SUBSCALE_ITEMS[key]
        answered = [v for i in items if (v := values[i]) is not None]
        if len(answered) < minimum:
            short.append(f"{key} {len(answered)} of {len(items)} (needs {minimum})")
            continue
        value = 100.0 - (sum(answered) / len(answered)) * 100.0 / 4.0
        scores.append(
            score_from_spec(spec, value, items_answered=len(answered), items_total=len(items))
        )
    if not scores:
        missing = tuple(i for i in ITEM_IDS if values[i] is None)
        raise NotScorable(
            "no KOOS subscale has half its items answered: " + "; ".join(short), items=missing
        )
    return ScoreSet(instrument_id=INSTRUMENT_ID, scores=tuple(scores))


INSTRUMENT = Instrument(
    id=INSTRUMENT_ID,
    name="Knee injury and Osteoarthritis Outcome Score",
    short_name="KOOS",
    loinc=None,
    licence="licensed",
    licence_note=(
        "Copyright the KOOS development group (Roos EM and colleagues). Free for clinical and "
        "research use with citation, but permission is needed for commercial or electronic "
        "implementations (koos.nu or Mapi Research Trust), as patient-watch.com/forms/koos "
        "states; prolo ships neutral labels until a clinic loads its licensed wording."
    ),
    item_ids=ITEM_IDS,
    scores=SCORES,
    scoring_source=KOOS_SCORING_2012,
    score=koos_score,
    body_regions=("knee",),
)
