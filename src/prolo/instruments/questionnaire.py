"""Read an instrument's FHIR R4 Questionnaire (``data/<id>.json``) into plain values.

Each instrument ships as a FHIR R4 Questionnaire resource so the same file serves
the portal, the FHIR API and the scoring code. The conventions every data file
follows (the conformance test enforces them):

- ``id`` is the instrument id; ``url``, ``identifier``, ``name``, ``title``,
  ``status`` and ``copyright`` (the licence in words) are present;
- ``code`` carries the panel's LOINC code (system ``http://loinc.org``) only where
  one was found on loinc.org;
- answerable items are ``choice`` items whose ``answerOption`` entries hold a
  ``valueCoding`` carrying the item's ordinal in the standard
  ``http://hl7.org/fhir/StructureDefinition/ordinalValue`` extension, or
  ``integer``/``decimal`` items bounded by the standard ``minValue``/``maxValue``
  extensions; ``group`` and ``display`` items are walked through, never scored;
- where the licence does not allow reproducing the wording, ``text`` is a neutral
  label (for example "ODI section 1") with a ``prefix``, and answer displays are
  neutral too (for example "Score 0"); a clinic merges its licensed wording with
  :mod:`prolo.instruments.texts`.

Scoring code needs only the linkIds in order and each item's allowed values, which
:func:`questionnaire_items` returns as :class:`QuestionnaireItem` values.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

ORDINAL_VALUE_URL = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
MIN_VALUE_URL = "http://hl7.org/fhir/StructureDefinition/minValue"
MAX_VALUE_URL = "http://hl7.org/fhir/StructureDefinition/maxValue"
LOINC_SYSTEM = "http://loinc.org"
# meta.tag marking a questionnaire whose wording is (partly) neutral labels, typically
# because the licence forbids reproducing it; pages warn until a clinic loads its text.
STRUCTURE_ONLY_TAG = {"system": "urn:prolo:questionnaire-text", "code": "structure-only"}

# Items a patient answers; "group" and "display" only structure or explain.
ANSWERABLE_TYPES = frozenset({"choice", "integer", "decimal"})
STRUCTURAL_TYPES = frozenset({"group", "display"})


class QuestionnaireError(ValueError):
    """A questionnaire data file breaks the conventions in this module's docstring."""


@dataclass(frozen=True)
class AnswerOption:
    """One answer a ``choice`` item offers: its code, display and ordinal value."""

    code: str
    display: str
    ordinal: float


@dataclass(frozen=True)
class QuestionnaireItem:
    """One answerable item: its linkId, label and the values its answer may take."""

    link_id: str
    type: str  # "choice", "integer" or "decimal"
    text: str
    prefix: str
    required: bool
    low: float
    high: float
    options: tuple[AnswerOption, ...] = ()  # empty for integer/decimal items

    @property
    def allowed_values(self) -> tuple[float, ...] | None:
        """The ordinals a choice item accepts, ascending; None for a numeric range."""
        if not self.options:
            return None
        return tuple(sorted({option.ordinal for option in self.options}))


def data_text(instrument_id: str) -> str:
    """The raw text of ``data/<instrument_id>.json``; FileNotFoundError naming it."""
    path = resources.files("prolo.instruments") / "data" / f"{instrument_id}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no questionnaire data file for {instrument_id!r}")
    return path.read_text(encoding="utf-8")


@cache
def _load(instrument_id: str) -> str:
    # Cache the text, not the dict, so callers can never mutate a shared copy.
    text = data_text(instrument_id)
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("resourceType") != "Questionnaire":
        raise QuestionnaireError(f"{instrument_id}.json is not a FHIR Questionnaire")
    if data.get("id") != instrument_id:
        raise QuestionnaireError(f"{instrument_id}.json has id {data.get('id')!r}")
    return text


def load_questionnaire(instrument_id: str) -> dict[str, Any]:
    """A fresh copy of the instrument's Questionnaire resource as a JSON dict.

    Examples
    --------
    >>> load_questionnaire("pain-nrs")["resourceType"]
    'Questionnaire'
    """
    data: dict[str, Any] = json.loads(_load(instrument_id))
    return data


def iter_items(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every item in questionnaire order, depth first, groups before their children."""
    for item in items:
        yield item
        yield from iter_items(item.get("item", []))


def _extension_value(element: Mapping[str, Any], url: str) -> float | None:
    for extension in element.get("extension", []):
        if extension.get("url") == url:
            for key in ("valueDecimal", "valueInteger"):
                if key in extension:
                    value = extension[key]
                    if isinstance(value, bool) or not isinstance(value, int | float):
                        raise QuestionnaireError(f"{url} must be numeric, got {value!r}")
                    return float(value)
            raise QuestionnaireError(f"{url} needs valueDecimal or valueInteger")
    return None


def _option(link_id: str, option: Mapping[str, Any]) -> AnswerOption:
    coding = option.get("valueCoding")
    if not isinstance(coding, dict) or "code" not in coding:
        raise QuestionnaireError(f"{link_id}: every answerOption needs a valueCoding with a code")
    # R4 allows the ordinal on the Coding or on the answerOption itself; accept both.
    ordinal = _extension_value(coding, ORDINAL_VALUE_URL)
    if ordinal is None:
        ordinal = _extension_value(option, ORDINAL_VALUE_URL)
    if ordinal is None:
        raise QuestionnaireError(f"{link_id}: option {coding['code']!r} has no ordinalValue")
    return AnswerOption(
        code=str(coding["code"]), display=str(coding.get("display", "")), ordinal=ordinal
    )


def parse_item(item: Mapping[str, Any]) -> QuestionnaireItem:
    """One answerable item dict as a :class:`QuestionnaireItem`; QuestionnaireError if malformed."""
    link_id = str(item.get("linkId", ""))
    if not link_id:
        raise QuestionnaireError("an item has no linkId")
    item_type = item.get("type")
    if item_type not in ANSWERABLE_TYPES:
        raise QuestionnaireError(f"{link_id}: type {item_type!r} is not answerable")
    text = str(item.get("text", ""))
    prefix = str(item.get("prefix", ""))
    required = bool(item.get("required", False))
    if item_type == "choice":
        options = tuple(_option(link_id, option) for option in item.get("answerOption", []))
        if not options:
            raise QuestionnaireError(f"{link_id}: a choice item needs answerOption entries")
        codes = [option.code for option in options]
        if len(set(codes)) != len(codes):
            raise QuestionnaireError(f"{link_id}: answer codes repeat")
        ordinals = [option.ordinal for option in options]
        low, high = min(ordinals), max(ordinals)
    else:
        options = ()
        low_value = _extension_value(item, MIN_VALUE_URL)
        high_value = _extension_value(item, MAX_VALUE_URL)
        if low_value is None or high_value is None or low_value > high_value:
            raise QuestionnaireError(f"{link_id}: a numeric item needs minValue <= maxValue")
        low, high = low_value, high_value
    return QuestionnaireItem(
        link_id=link_id,
        type=str(item_type),
        text=text,
        prefix=prefix,
        required=required,
        low=low,
        high=high,
        options=options,
    )


def questionnaire_items(instrument_id: str) -> tuple[QuestionnaireItem, ...]:
    """The instrument's answerable items in questionnaire order.

    Examples
    --------
    >>> [(item.link_id, item.low, item.high) for item in questionnaire_items("pain-nrs")]
    [('pain-nrs', 0.0, 10.0)]
    """
    return _items(instrument_id)


@cache
def _items(instrument_id: str) -> tuple[QuestionnaireItem, ...]:
    data = load_questionnaire(instrument_id)
    parsed: list[QuestionnaireItem] = []
    seen: set[str] = set()
    for item in iter_items(data.get("item", [])):
        link_id = item.get("linkId")
        if link_id in seen:
            raise QuestionnaireError(f"{instrument_id}: linkId {link_id!r} repeats")
        seen.add(str(link_id))
        if item.get("type") in STRUCTURAL_TYPES:
            continue
        parsed.append(parse_item(item))
    return tuple(parsed)


def questionnaire_item_ids(instrument_id: str) -> tuple[str, ...]:
    """The linkIds of the answerable items, in order: use as ``Instrument.item_ids``.

    Examples
    --------
    >>> questionnaire_item_ids("pain-nrs")
    ('pain-nrs',)
    """
    return tuple(item.link_id for item in questionnaire_items(instrument_id))


def item_bounds(instrument_id: str) -> dict[str, tuple[float, float]]:
    """``{linkId: (lowest, highest)}`` answer values of every answerable item."""
    return {item.link_id: (item.low, item.high) for item in questionnaire_items(instrument_id)}


def shared_bounds(instrument_id: str) -> tuple[float, float]:
    """The one answer range every item shares; QuestionnaireError when items differ.

    Scorers whose items share one scale pass this to ``checked_answers``, so the
    range lives once, in the data file.
    """
    bounds = set(item_bounds(instrument_id).values())
    if len(bounds) != 1:
        raise QuestionnaireError(f"{instrument_id}: items do not share one answer range")
    (low, high) = bounds.pop()
    return low, high


def loinc_code(instrument_id: str) -> str | None:
    """The questionnaire's LOINC code (``code`` with system http://loinc.org), or None."""
    codes = [
        coding.get("code")
        for coding in load_questionnaire(instrument_id).get("code", [])
        if coding.get("system") == LOINC_SYSTEM
    ]
    return str(codes[0]) if codes else None


def is_structure_only(questionnaire: Mapping[str, Any]) -> bool:
    """Whether the questionnaire shows neutral labels where its wording belongs.

    Examples
    --------
    >>> is_structure_only(load_questionnaire("pain-nrs"))
    False
    """
    tags = questionnaire.get("meta", {}).get("tag", [])
    return any(
        tag.get("system") == STRUCTURE_ONLY_TAG["system"]
        and tag.get("code") == STRUCTURE_ONLY_TAG["code"]
        for tag in tags
    )


def fhir_questionnaire(instrument_id: str) -> Any:
    """The data file parsed and validated by ``fhir.resources`` (R4B models).

    R4B's Questionnaire is the R4 one with errata; fhir.resources has no plain R4
    package, and the data files use nothing R4B added.
    """
    from fhir.resources.R4B.questionnaire import Questionnaire

    return Questionnaire.model_validate(load_questionnaire(instrument_id))
