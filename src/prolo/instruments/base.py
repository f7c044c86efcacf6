"""The shape every outcome instrument shares: scores, MCIDs, item errors.

An instrument is data (a FHIR R4 Questionnaire in ``data/<id>.json``) plus a pure
scoring function. Scoring functions take the answers as ``{linkId: value}`` where a
value is the item's ordinal (an ``int`` or ``float``) or ``None`` when the item was
left blank, and return a :class:`ScoreSet`. They raise :class:`ItemError` when an
answer is of the wrong type or out of range, and :class:`NotScorable` when too many
items are missing for the instrument's published missing-item rule.

Error tree::

    ValueError
     └── InstrumentError
          ├── ItemError        (one item is wrong: names the item)
          └── NotScorable      (the answer set cannot be scored: says why)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Answer = int | float | None
Answers = Mapping[str, Answer]
Direction = Literal["higher_is_better", "lower_is_better"]
Licence = Literal["public_domain", "free_with_attribution", "free_noncommercial", "licensed"]


class InstrumentError(ValueError):
    """Base class for an answer set an instrument cannot score."""


class ItemError(InstrumentError):
    """One item's answer is missing, of the wrong type or out of range."""

    def __init__(self, item: str, message: str) -> None:
        super().__init__(f"{item}: {message}")
        self.item = item
        self.message = message


class NotScorable(InstrumentError):
    """Too many items are missing (or a rule fails) to compute a score."""

    def __init__(self, message: str, *, items: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.items = items


@dataclass(frozen=True)
class Source:
    """Where a clinical figure or rule was read (see CLINICAL-SOURCES.md)."""

    source: str  # first author, year, journal, PMID/DOI where the page showed one
    url: str
    locator: str  # where in the page, or a short quote
    grade: Literal["primary", "secondary"]


@dataclass(frozen=True)
class Mcid:
    """Minimal clinically important difference of one score, with its source."""

    value: float
    unit: Literal["points", "percent"]
    source: Source
    note: str = ""


@dataclass(frozen=True)
class ScoreSpec:
    """One score an instrument reports (the total or a subscale)."""

    key: str  # "total", or a subscale key such as "pain", "adl"
    name: str
    low: float
    high: float
    direction: Direction
    mcid: Mcid | None = None  # None where no MCID was found: say so on pages


@dataclass(frozen=True)
class Score:
    """A computed score."""

    key: str
    value: float
    low: float
    high: float
    direction: Direction
    items_answered: int
    items_total: int


@dataclass(frozen=True)
class ScoreSet:
    """All scores computed from one answer set, keyed by ``ScoreSpec.key``."""

    instrument_id: str
    scores: tuple[Score, ...]

    def __getitem__(self, key: str) -> Score:
        for score in self.scores:
            if score.key == key:
                return score
        raise KeyError(key)


@dataclass(frozen=True)
class Instrument:
    """An outcome instrument: identity, licence, scores and its scoring function."""

    id: str
    name: str
    short_name: str
    loinc: str | None  # the panel's LOINC code where one was found; None otherwise
    licence: Licence
    licence_note: str  # who holds the rights and what is allowed
    item_ids: tuple[str, ...]  # linkIds in questionnaire order
    scores: tuple[ScoreSpec, ...]
    scoring_source: Source
    score: Callable[[Answers], ScoreSet] = field(compare=False, repr=False)
    body_regions: tuple[str, ...] = ()

    def spec(self, key: str) -> ScoreSpec:
        """The :class:`ScoreSpec` named ``key``; KeyError when there is none."""
        for spec in self.scores:
            if spec.key == key:
                return spec
        raise KeyError(key)


def checked_answers(
    answers: Answers,
    item_ids: tuple[str, ...],
    *,
    low: float,
    high: float,
    integer: bool = True,
) -> dict[str, float | None]:
    """Validate an answer set against the items and one shared range.

    Returns ``{item_id: value or None}`` for exactly ``item_ids``; raises
    :class:`ItemError` for an unknown item, a non-numeric value, a non-integer
    where ``integer`` is set, or a value outside ``[low, high]``.

    Examples
    --------
    >>> checked_answers({"q1": 2, "q2": None}, ("q1", "q2"), low=0, high=4)
    {'q1': 2.0, 'q2': None}
    """
    unknown = sorted(set(answers) - set(item_ids))
    if unknown:
        raise ItemError(unknown[0], "is not an item of this instrument")
    out: dict[str, float | None] = {}
    for item in item_ids:
        value = answers.get(item)
        if value is None:
            out[item] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ItemError(item, f"must be a number, got {type(value).__name__}")
        if value != value:  # NaN
            raise ItemError(item, "must be a number, got NaN")
        if integer and float(value) != int(value):
            raise ItemError(item, f"must be a whole number, got {value}")
        if not low <= value <= high:
            raise ItemError(item, f"must be between {low:g} and {high:g}, got {value}")
        out[item] = float(value)
    return out


def score_from_spec(
    spec: ScoreSpec, value: float, *, items_answered: int, items_total: int
) -> Score:
    """A :class:`Score` carrying ``spec``'s key, range and direction.

    Scorers build every result through this, so a score can never disagree with the
    spec it claims to be.

    Examples
    --------
    >>> spec = ScoreSpec("total", "Total", 0, 100, "lower_is_better")
    >>> score_from_spec(spec, 32.0, items_answered=10, items_total=10).value
    32.0
    """
    if not spec.low <= value <= spec.high:
        # Floating-point sums can land a hair outside; anything more is a scorer bug.
        if spec.low - 1e-9 <= value <= spec.high + 1e-9:
            value = min(max(value, spec.low), spec.high)
        else:
            raise ValueError(f"{spec.key} score {value} outside {spec.low:g}-{spec.high:g}")
    return Score(
        key=spec.key,
        value=value,
        low=spec.low,
        high=spec.high,
        direction=spec.direction,
        items_answered=items_answered,
        items_total=items_total,
    )
