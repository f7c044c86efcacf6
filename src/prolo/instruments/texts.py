"""Merge a clinic's licensed item wording into a structure-only questionnaire.

Licensed instruments (ODI, NDI, QuickDASH, ...) ship with neutral labels such as
"ODI section 1", because prolo may not reproduce their wording. A clinic that holds
a licence keeps the wording in its own JSON or YAML file and loads it at run time::

    # odi-texts.yaml: linkId -> text, or linkId -> {text, answers: {code: display}}
    instrument: odi            # optional; when present it must match
    items:
      odi-1:
        text: "<section 1 wording from your licensed copy>"
        answers:
          "0": "<statement scored 0>"
          "1": "<statement scored 1>"
      odi-instructions: "<instructions from your licensed copy>"

The file is checked against the questionnaire before anything is merged: an unknown
linkId or answer code, an empty text, or answers on an item that has no answer
options fails with a :class:`LicensedTextError` that names every problem, so a typo
never silently leaves a neutral label on a patient's screen. Merging never changes
linkIds, codes or ordinal values, so scoring is unaffected.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from prolo.instruments.questionnaire import (
    ANSWERABLE_TYPES,
    STRUCTURE_ONLY_TAG,
    iter_items,
    load_questionnaire,
)


class LicensedTextError(ValueError):
    """A licensed-text file does not fit its questionnaire; ``problems`` lists why."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.problems = tuple(problems)


@dataclass(frozen=True)
class ItemText:
    """The licensed wording of one item and, for choice items, of its answers."""

    text: str
    answers: Mapping[str, str] = field(default_factory=dict)  # answer code -> display


@dataclass(frozen=True)
class LicensedText:
    """A clinic's validated wording for one instrument, keyed by linkId."""

    instrument_id: str
    items: Mapping[str, ItemText]


def _items_mapping(data: object, where: str) -> Mapping[object, object]:
    if not isinstance(data, Mapping):
        raise LicensedTextError(where, ["the file must hold a mapping of linkId to text"])
    items = data.get("items", data)
    if not isinstance(items, Mapping):
        raise LicensedTextError(where, ["'items' must be a mapping of linkId to text"])
    return items


def parse_licensed_text(
    instrument_id: str, data: object, *, where: str = "licensed text"
) -> LicensedText:
    """Validate ``data`` (the parsed file) against the instrument's questionnaire.

    ``where`` names the origin in error messages.

    Examples
    --------
    >>> texts = parse_licensed_text("pain-nrs", {"pain-nrs": "How bad is your pain?"})
    >>> texts.items["pain-nrs"].text
    'How bad is your pain?'
    >>> parse_licensed_text("pain-nrs", {"pain-nrs-9": "?"})
    Traceback (most recent call last):
    ...
    prolo.instruments.texts.LicensedTextError: licensed text: unknown linkId 'pain-nrs-9'
    """
    if isinstance(data, Mapping) and "instrument" in data and data["instrument"] != instrument_id:
        raise LicensedTextError(
            where, [f"is for instrument {data['instrument']!r}, not {instrument_id!r}"]
        )
    raw_items = _items_mapping(data, where)
    questionnaire = load_questionnaire(instrument_id)
    known = {str(item["linkId"]): item for item in iter_items(questionnaire.get("item", []))}
    problems: list[str] = []
    parsed: dict[str, ItemText] = {}
    for raw_link_id, raw in raw_items.items():
        link_id = str(raw_link_id)
        item = known.get(link_id)
        if item is None:
            problems.append(f"unknown linkId {link_id!r}")
            continue
        entry = {"text": raw} if isinstance(raw, str) else raw
        if not isinstance(entry, Mapping):
            problems.append(f"{link_id}: must be a text or a mapping with 'text'")
            continue
        extra = sorted(str(key) for key in entry if key not in ("text", "answers"))
        if extra:
            problems.append(f"{link_id}: unknown keys {extra}")
        text = entry.get("text")
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{link_id}: text must be a non-empty string")
            continue
        answers = _answers(link_id, item, entry.get("answers", {}), problems)
        parsed[link_id] = ItemText(text=text, answers=answers)
    if problems:
        raise LicensedTextError(where, problems)
    return LicensedText(instrument_id=instrument_id, items=parsed)


def _answers(
    link_id: str, item: Mapping[str, Any], raw: object, problems: list[str]
) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        problems.append(f"{link_id}: answers must map answer code to display")
        return {}
    codes = {
        str(option["valueCoding"]["code"])
        for option in item.get("answerOption", [])
        if "valueCoding" in option
    }
    if raw and not codes:
        problems.append(f"{link_id}: has no answer options to label")
        return {}
    answers: dict[str, str] = {}
    for raw_code, display in raw.items():
        code = str(raw_code)
        if code not in codes:
            problems.append(f"{link_id}: unknown answer code {code!r}")
        elif not isinstance(display, str) or not display.strip():
            problems.append(f"{link_id}: answer {code!r} must be a non-empty string")
        else:
            answers[code] = display
    return answers


def load_licensed_text(instrument_id: str, path: str | Path) -> LicensedText:
    """Read and validate a ``.json``, ``.yaml`` or ``.yml`` licensed-text file."""
    path = Path(path)
    raw = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            data: object = json.loads(raw)
        elif suffix in (".yaml", ".yml"):
            data = yaml.safe_load(raw)
        else:
            raise LicensedTextError(str(path), ["must end in .json, .yaml or .yml"])
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise LicensedTextError(str(path), [f"cannot be parsed: {error}"]) from error
    return parse_licensed_text(instrument_id, data, where=str(path))


def merge_licensed_text(questionnaire: Mapping[str, Any], texts: LicensedText) -> dict[str, Any]:
    """A copy of ``questionnaire`` showing the licensed wording; the input is untouched.

    The structure-only tag is dropped once every answerable item has its wording, so
    pages can tell a complete licensed copy from a partial one.

    Examples
    --------
    >>> q = load_questionnaire("pain-nrs")
    >>> texts = parse_licensed_text("pain-nrs", {"pain-nrs": "Rate your pain"})
    >>> merge_licensed_text(q, texts)["item"][0]["text"]
    'Rate your pain'
    """
    if questionnaire.get("id") != texts.instrument_id:
        raise LicensedTextError(
            "licensed text",
            [f"is for {texts.instrument_id!r}, not {questionnaire.get('id')!r}"],
        )
    merged: dict[str, Any] = copy.deepcopy(dict(questionnaire))
    complete = True
    for item in iter_items(merged.get("item", [])):
        item_text = texts.items.get(str(item["linkId"]))
        if item_text is None:
            complete = complete and item.get("type") not in ANSWERABLE_TYPES
            continue
        item["text"] = item_text.text
        for option in item.get("answerOption", []):
            coding = option.get("valueCoding", {})
            display = item_text.answers.get(str(coding.get("code")))
            if display is not None:
                coding["display"] = display
    if complete and "meta" in merged:
        merged["meta"]["tag"] = [
            tag
            for tag in merged["meta"].get("tag", [])
            if not (
                tag.get("system") == STRUCTURE_ONLY_TAG["system"]
                and tag.get("code") == STRUCTURE_ONLY_TAG["code"]
            )
        ]
    return merged


def questionnaire_with_licensed_text(instrument_id: str, path: str | Path) -> dict[str, Any]:
    """The instrument's questionnaire with the clinic's licensed file merged in."""
    return merge_licensed_text(
        load_questionnaire(instrument_id), load_licensed_text(instrument_id, path)
    )
