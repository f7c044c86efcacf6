"""Revised Fibromyalgia Impact Questionnaire (FIQR).

Twenty-one items, each 0 to 10, in three domains: function (9 items), overall
impact (2) and symptoms (10). The developers' scoring page divides the function sum
(0-90) by 3, keeps the overall impact sum (0-20), divides the symptom sum (0-100) by
2, and adds the three to a total of 0-100; higher means greater impact.

Missing items: one function item may be missing, and the function sum is then
weighted by 9/x for the x items answered; any further missing function item, or any
missing overall-impact or symptom item, makes the questionnaire invalid. No MCID for
the FIQR was found (the 14% MCID of Bennett et al. 2009 belongs to the original FIQ),
so the scores carry none.
"""

from __future__ import annotations

from collections.abc import Mapping

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

INSTRUMENT_ID = "fiqr"
ITEM_IDS = questionnaire_item_ids(INSTRUMENT_ID)
LOW, HIGH = shared_bounds(INSTRUMENT_ID)

FUNCTION_ITEMS = tuple(item for item in ITEM_IDS if item.startswith("fiqr-function-"))
OVERALL_ITEMS = tuple(item for item in ITEM_IDS if item.startswith("fiqr-overall-"))
SYMPTOM_ITEMS = tuple(item for item in ITEM_IDS if item.startswith("fiqr-symptoms-"))

# Domain sum divisors and the missing items each domain tolerates, from the
# developers' scoring page ("2 or more items are missed from the functional domain or
# any item is missed from the overall domain or the symptom domain" = invalid).
DOMAINS: tuple[tuple[str, tuple[str, ...], float, int], ...] = (
    ("function", FUNCTION_ITEMS, 3.0, 1),
    ("overall", OVERALL_ITEMS, 1.0, 0),
    ("symptoms", SYMPTOM_ITEMS, 2.0, 0),
)

FIQR_SCORING_PAGE = Source(
    source=(
        "Scoring the FIQR and SIQR. fiqr.info, the FIQR information site of the developers "
        "(Bennett RM et al., Oregon Health & Science University)"
    ),
    url="http://www.fiqr.info/Scoring.htm",
    locator=(
        "'Step 2. a. Divide function domain sum (0-90) by 3 (upper limit 30) b. Divide overall "
        "impact domain sum (0-20) by one ... c. Divide symptom domain sum (0-100) by 2 (upper "
        "limit 50)'; 'Step 3. Add the three resulting domain scores ... (range 0-100)'; Missing "
        "answers: 'weigh the summated score of the x questions by 9/x'; 'Consider the "
        "questionnaire invalid if: 2 or more items are missed from the functional domain or any "
        "item is missed from the overall domain or the symptom domain.'"
    ),
    grade="primary",
)

BENNETT_2009 = Source(
    source=(
        "Bennett RM, Friend R, Jones KD, Ward R, Han BK, Ross RL. 2009. The Revised Fibromyalgia "
        "Impact Questionnaire (FIQR): validation and psychometric properties. Arthritis Res Ther "
        "11(4):R120. PMID 19664287. PMCID PMC2745803. doi:10.1186/ar2783"
    ),
    url="https://www.ai-bt.com/si.php?db=pubmed&id=19664287",
    locator=(
        "Abstract: 'The FIQR has the same 3 domains as the FIQ (that is, function, overall impact "
        "and symptoms)'; questionnaire table: nine function items anchored 'No difficulty' to "
        "'Very difficult', two overall items anchored 'Never' to 'Always'"
    ),
    grade="primary",
)

SCORES = (
    ScoreSpec(key="total", name="FIQR total", low=0.0, high=100.0, direction="lower_is_better"),
    ScoreSpec(key="function", name="Function", low=0.0, high=30.0, direction="lower_is_better"),
    ScoreSpec(
        key="overall", name="Overall impact", low=0.0, high=20.0, direction="lower_is_better"
    ),
    ScoreSpec(key="symptoms", name="Symptoms", low=0.0, high=50.0, direction="lower_is_better"),
)


def _domain_score(values: Mapping[str, float | None], items: tuple[str, ...]) -> float:
    """The domain sum, weighted by n/x when x of its n items were answered."""
    answered = [value for item in items if (value := values[item]) is not None]
    # The developers' weighting; with nothing missing it is 1.
    return sum(answered) * len(items) / len(answered)


def _rule_breaches(values: Mapping[str, float | None]) -> tuple[list[str], tuple[str, ...]]:
    """Each domain that breaks the missing-item rule, in words, and all missing items."""
    breaches: list[str] = []
    for key, items, _, max_missing in DOMAINS:
        missing = sum(values[item] is None for item in items)
        if missing > max_missing:
            breaches.append(f"{key} {missing} missing (allowed {max_missing})")
    missing_items = tuple(item for item in ITEM_IDS if values[item] is None)
    return breaches, missing_items


def fiqr_score(answers: Answers) -> ScoreSet:
    """Score the FIQR: three weighted domain sums and their total (0-100, lower is better).

    Raises :class:`~prolo.instruments.base.NotScorable` when two or more function
    items, or any overall-impact or symptom item, are missing, and
    :class:`~prolo.instruments.base.ItemError` for an answer outside 0-10.

    Examples
    --------
    >>> answers = {item: 5 for item in ITEM_IDS}
    >>> scores = fiqr_score(answers)
    >>> scores["function"].value, scores["overall"].value, scores["symptoms"].value
    (15.0, 10.0, 25.0)
    >>> scores["total"].value
    50.0
    """
    values = checked_answers(answers, ITEM_IDS, low=LOW, high=HIGH)
    breaches, missing = _rule_breaches(values)
    if breaches:
        raise NotScorable(
            "the FIQR is invalid under the developers' missing-item rule: " + "; ".join(breaches),
            items=missing,
        )
    results: dict[str, tuple[float, int, int]] = {}
    for key, items, divisor, _ in DOMAINS:
        answered = sum(values[item] is not None for item in items)
        results[key] = (_domain_score(values, items) / divisor, answered, len(items))
    total = sum(value for value, _, _ in results.values())
    answered_all = sum(answered for _, answered, _ in results.values())
    results["total"] = (total, answered_all, len(ITEM_IDS))
    scores = tuple(
        score_from_spec(
            spec,
            results[spec.key][0],
            items_answered=results[spec.key][1],
            items_total=results[spec.key][2],
        )
        for spec in SCORES
    )
    return ScoreSet(instrument_id=INSTRUMENT_ID, scores=scores)


INSTRUMENT = Instrument(
    id=INSTRUMENT_ID,
    name="Revised Fibromyalgia Impact Questionnaire",
    short_name="FIQR",
    loinc=None,
    licence="licensed",
    licence_note=(
        "Developed by Bennett RM et al. at Oregon Health & Science University. fiqr.info has a "
        "'License to use FIQR' page that could not be read; the original FIQ is free for "
        "academic and clinical use but licensed through MAPI Research Trust for commercial use. "
        "Until the clinic confirms its terms, prolo treats the FIQR as licensed and ships the "
        "structure and scoring only, with neutral labels."
    ),
    item_ids=ITEM_IDS,
    scores=SCORES,
    scoring_source=FIQR_SCORING_PAGE,
    score=fiqr_score,
    body_regions=("widespread",),
)
