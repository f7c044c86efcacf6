"""Answer sets before they are stored: checking drafts and completed forms, reading forms.

Pure: takes values, returns values. A draft (in-progress response) may leave items
blank but every answer it has must be valid; a completed response must answer every
required item and be scorable by the instrument's published rules. Both raise the
instrument library's :class:`~prolo.instruments.base.ItemError` naming the item.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prolo.instruments.base import Answer, Instrument, ItemError, NotScorable, ScoreSet
from prolo.instruments.questionnaire import (
    ANSWERABLE_TYPES,
    QuestionnaireItem,
    iter_items,
    parse_item,
    questionnaire_items,
)

MAX_ANSWER_KEY = 60


def check_answer(item: QuestionnaireItem, value: object) -> Answer:
    """One answer checked against its item; ItemError naming the item when wrong.

    Examples
    --------
    >>> item = questionnaire_items("pain-nrs")[0]
    >>> check_answer(item, 7)
    7
    >>> check_answer(item, 11)
    Traceback (most recent call last):
    ...
    prolo.instruments.base.ItemError: pain-nrs: must be between 0 and 10, got 11
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ItemError(item.link_id, f"must be a number, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ItemError(item.link_id, "must be a finite number")
    if item.type != "decimal" and value != int(value):
        raise ItemError(item.link_id, f"must be a whole number, got {value}")
    if not item.low <= value <= item.high:
        raise ItemError(
            item.link_id, f"must be between {item.low:g} and {item.high:g}, got {value}"
        )
    allowed = item.allowed_values
    if allowed is not None and float(value) not in allowed:
        choices = ", ".join(f"{v:g}" for v in allowed)
        raise ItemError(item.link_id, f"must be one of {choices}, got {value}")
    return int(value) if item.type != "decimal" else float(value)


def check_draft(instrument: Instrument, answers: Mapping[str, object]) -> dict[str, Answer]:
    """A draft's answers checked item by item; blanks allowed, unknown items refused."""
    items = {item.link_id: item for item in questionnaire_items(instrument.id)}
    unknown = sorted(key for key in answers if key not in items)
    if unknown:
        raise ItemError(unknown[0][:MAX_ANSWER_KEY], "is not an item of this instrument")
    return {
        link_id: check_answer(items[link_id], answers[link_id])
        for link_id in instrument.item_ids
        if answers.get(link_id) is not None
    }


def score_complete(instrument: Instrument, answers: Mapping[str, object]) -> ScoreSet:
    """Score a completed answer set: every required item answered, then the scorer's rules.

    Raises ItemError naming the first wrong or missing required item, or NotScorable
    when the instrument's missing-item rule cannot be met.
    """
    checked = check_draft(instrument, answers)
    for item in questionnaire_items(instrument.id):
        if item.required and checked.get(item.link_id) is None:
            raise ItemError(item.link_id, "is required")
    if not checked:
        raise NotScorable("no item was answered", items=instrument.item_ids)
    return instrument.score(checked)


@dataclass(frozen=True)
class FormItem:
    """An answerable item as a form shows it, with the heading of its group."""

    item: QuestionnaireItem
    group: str  # the enclosing group's text, "" at the top level

    @property
    def name(self) -> str:
        """The form field name."""
        return f"a-{self.item.link_id}"

    @property
    def scale(self) -> tuple[int, ...]:
        """The values an integer item offers as buttons (an 11-point rating at most)."""
        if self.item.options or self.item.type != "integer":
            return ()
        low, high = int(self.item.low), int(self.item.high)
        return tuple(range(low, high + 1)) if high - low <= 10 else ()


def form_items(questionnaire: Mapping[str, Any]) -> list[FormItem]:
    """The answerable items of a (possibly clinic-worded) questionnaire, in order."""
    found: list[FormItem] = []

    def walk(items: list[dict[str, Any]], group: str) -> None:
        for raw in items:
            if raw.get("type") == "group":
                walk(raw.get("item", []), str(raw.get("text", "")))
            elif raw.get("type") in ANSWERABLE_TYPES:
                found.append(FormItem(parse_item(raw), group))
                walk(raw.get("item", []), group)

    walk(list(questionnaire.get("item", [])), "")
    return found


def display_texts(questionnaire: Mapping[str, Any]) -> list[str]:
    """The questionnaire's ``display`` items (instructions), in order."""
    return [
        str(raw.get("text", ""))
        for raw in iter_items(list(questionnaire.get("item", [])))
        if raw.get("type") == "display" and raw.get("text")
    ]


def answers_from_form(
    items: list[FormItem], form: Mapping[str, str]
) -> tuple[dict[str, Answer], dict[str, str]]:
    """Read posted answers: ``({linkId: value}, {linkId: message})`` for what failed."""
    answers: dict[str, Answer] = {}
    errors: dict[str, str] = {}
    for form_item in items:
        raw = form.get(form_item.name, "").strip()
        if not raw:
            continue
        try:
            number = float(raw)
        except ValueError:
            errors[form_item.item.link_id] = "Enter a number."
            continue
        try:
            answers[form_item.item.link_id] = check_answer(form_item.item, number)
        except ItemError as error:
            errors[form_item.item.link_id] = plain_message(error, form_item.item)
    return answers, errors


def plain_message(error: ItemError, item: QuestionnaireItem | None = None) -> str:
    """An item error in words for the person filling in the form."""
    message = error.message
    if message == "is required":
        return "Please answer this question."
    if item is not None and message.startswith(("must be between", "must be one of")):
        if item.options or (item.type == "integer" and item.high - item.low <= 10):
            return "Choose one of the answers shown."  # the form shows buttons
        return f"Enter a whole number from {item.low:g} to {item.high:g}."
    if message.startswith("must be a whole number"):
        return "Enter a whole number."
    return message[:1].upper() + message[1:] + "."


def not_scorable_items(error: NotScorable, instrument: Instrument) -> tuple[str, ...]:
    """The items a NotScorable error points at (all items when it names none)."""
    return error.items or instrument.item_ids
