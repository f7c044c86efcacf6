"""WOMAC Osteoarthritis Index, Likert version 3.1 (structure and scoring only).

Twenty-four items scored 0 to 4: pain (5 items, sum 0-20), stiffness (2 items, 0-8)
and physical function (17 items, 0-68); the total adds the three subscales (0-96).
Higher means more pain, stiffness and difficulty.

Missing items: the WOMAC User Guide itself is licensed and was not read. The one
missing-item rule found in the literature is for the physical function subscale
(Whitehouse et al. 2004): one to three missing items are replaced by the mean of the
answered items, four or more make the subscale invalid. No rule was found for pain
or stiffness, so those subscales need every item; imputing without a published rule
would be inventing one. Each subscale stands alone; the total needs all three. No
normalised 0-100 score is given because the User Guide that would define it was not
read, and no MCID on the Likert metric was found (Angst et al. 2002 report MCIDs on
the 0-10 numerical rating version only).
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

INSTRUMENT_ID = "womac"
ITEM_IDS = questionnaire_item_ids(INSTRUMENT_ID)
LOW, HIGH = shared_bounds(INSTRUMENT_ID)

PAIN_ITEMS = tuple(item for item in ITEM_IDS if item.startswith("womac-pain-"))
STIFFNESS_ITEMS = tuple(item for item in ITEM_IDS if item.startswith("womac-stiffness-"))
FUNCTION_ITEMS = tuple(item for item in ITEM_IDS if item.startswith("womac-function-"))

# (key, items, missing items tolerated with mean substitution). Only the function
# subscale has a published rule (Whitehouse 2004); pain and stiffness allow none.
SUBSCALES: tuple[tuple[str, tuple[str, ...], int], ...] = (
    ("pain", PAIN_ITEMS, 0),
    ("stiffness", STIFFNESS_ITEMS, 0),
    ("function", FUNCTION_ITEMS, 3),
)

APTA_WOMAC = Source(
    source=(
        "American Physical Therapy Association. Western Ontario and McMaster Universities "
        "Osteoarthritis Index (WOMAC), Tests and Measures summary"
    ),
    url=(
        "https://www.apta.org/patient-care/evidence-based-practice-resources/test-measures/"
        "western-ontario-and-mcmaster-universities-osteoarthritis-index-womac"
    ),
    locator=(
        "'a self-administered instrument containing 24 items measuring 3 subscales: physical "
        "function (17 items), pain (5 items), and stiffness (2 items)'; 'Scores can be "
        "calculated for each subscale and a total score is calculated by adding all 3 subscale "
        "scores. Higher points signify higher levels of functional difficulty.'"
    ),
    grade="secondary",
)

LIKERT_RANGE = Source(
    source=(
        "Textbook chapter on WOMAC measurement properties (page 255 of a book mirrored on "
        "issuhub.com; title not shown on the page)"
    ),
    url="https://issuhub.com/view/index/7537?pageIndex=262",
    locator=(
        "'if their function subscale score has changed by at least 9.1 points (when scored "
        "using the Likert version, score range 0-68)'"
    ),
    grade="secondary",
)

WHITEHOUSE_2004 = Source(
    source=(
        "Whitehouse SL, Learmonth ID, Crawford RW. 2004. Validation and treatment of missing "
        "values for the reduced WOMAC function scale. J Bone Joint Surg Br 86-B(Supp IV):469 "
        "(conference abstract). doi:10.1302/0301-620X.86BSUPP_IV.0860469b"
    ),
    url="http://eprints.qut.edu.au/5615/",
    locator=(
        "Results: 'The standard protocol for the full scale is that if there are 4 or more "
        "missing items, the patients' response is invalid. But when there are 1-3 items "
        "missing, the average value for the sub-scale is substituted in lieu of these missing "
        "values.'"
    ),
    grade="secondary",
)

SCORES = (
    ScoreSpec(key="total", name="WOMAC total", low=0.0, high=96.0, direction="lower_is_better"),
    ScoreSpec(key="pain", name="Pain", low=0.0, high=20.0, direction="lower_is_better"),
    ScoreSpec(key="stiffness", name="Stiffness", low=0.0, high=8.0, direction="lower_is_better"),
    ScoreSpec(
        key="function", name="Physical function", low=0.0, high=68.0, direction="lower_is_better"
    ),
)


def _subscale(
    values: Mapping[str, float | None], items: tuple[str, ...], max_missing: int
) -> tuple[float, int] | None:
    """The subscale sum (missing items replaced by the answered mean), or None if invalid."""
    answered = [value for item in items if (value := values[item]) is not None]
    if len(items) - len(answered) > max_missing:
        return None
    # Substituting the mean for each missing item equals scaling the answered sum.
    return sum(answered) * len(items) / len(answered), len(answered)


def womac_score(answers: Answers) -> ScoreSet:
    """Score WOMAC LK3.1 subscale sums and total (lower is better).

    Pain and stiffness need every item; physical function tolerates up to three
    missing items, replaced by the mean of the answered ones. A subscale that fails
    its rule is left out, and so is the total; when no subscale is valid, raises
    :class:`~prolo.instruments.base.NotScorable`. Answers outside 0-4 raise
    :class:`~prolo.instruments.base.ItemError`.

    Examples
    --------
    >>> answers = {item: 1 for item in ITEM_IDS}
    >>> scores = womac_score(answers)
    >>> scores["pain"].value, scores["stiffness"].value, scores["function"].value
    (5.0, 2.0, 17.0)
    >>> scores["total"].value
    24.0
    """
    values = checked_answers(answers, ITEM_IDS, low=LOW, high=HIGH)
    results: dict[str, tuple[float, int, int]] = {}
    invalid: list[str] = []
    for key, items, max_missing in SUBSCALES:
        result = _subscale(values, items, max_missing)
        if result is None:
            invalid.append(key)
            continue
        results[key] = (result[0], result[1], len(items))
    if not results:
        missing = tuple(item for item in ITEM_IDS if values[item] is None)
        raise NotScorable(
            "no WOMAC subscale can be scored: pain and stiffness need every item, "
            "physical function at least 14 of 17",
            items=missing,
        )
    if not invalid:
        results["total"] = (
            sum(value for value, _, _ in results.values()),
            sum(answered for _, answered, _ in results.values()),
            len(ITEM_IDS),
        )
    scores = tuple(
        score_from_spec(
            spec,
            results[spec.key][0],
            items_answered=results[spec.key][1],
            items_total=results[spec.key][2],
        )
        for spec in SCORES
        if spec.key in results
    )
    return ScoreSet(instrument_id=INSTRUMENT_ID, scores=scores)


INSTRUMENT = Instrument(
    id=INSTRUMENT_ID,
    name="WOMAC Osteoarthritis Index, Likert 3.1",
    short_name="WOMAC",
    loinc=None,
    licence="licensed",
    licence_note=(
        "WOMAC is copyrighted by Nicholas Bellamy; permission and the User Guide come through "
        "www.womac.org, and the Shirley Ryan AbilityLab database lists its cost as not free. "
        "prolo ships structure and scoring only, with neutral labels; a licensed clinic loads "
        "its wording."
    ),
    item_ids=ITEM_IDS,
    scores=SCORES,
    scoring_source=APTA_WOMAC,
    score=womac_score,
    body_regions=("hip", "knee"),
)
