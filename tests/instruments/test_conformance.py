"""Every instrument in the catalog passes the same checks.

The catalog discovers instruments, so a new module is covered here the moment it
defines ``INSTRUMENT``: its data file, its sources, its ranges and its errors.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prolo.instruments import library, questionnaire, texts
from prolo.instruments.base import (
    Instrument,
    ItemError,
    NotScorable,
    ScoreSet,
    Source,
)
from prolo.instruments.catalog import instruments
from prolo.instruments.questionnaire import (
    LOINC_SYSTEM,
    ORDINAL_VALUE_URL,
    QuestionnaireItem,
    fhir_questionnaire,
    iter_items,
    load_questionnaire,
    loinc_code,
    questionnaire_items,
)

INSTRUMENTS = instruments()
IDS = sorted(INSTRUMENTS)
LOINC_PATTERN = re.compile(r"^\d{1,7}-\d$")


def all_at(instrument: Instrument, end: str) -> dict[str, float]:
    """Every item answered at its lowest (end="low") or highest (end="high") value."""
    return {
        item.link_id: (item.low if end == "low" else item.high)
        for item in questionnaire_items(instrument.id)
    }


def assert_in_range(instrument: Instrument, result: ScoreSet) -> None:
    assert result.instrument_id == instrument.id
    assert [score.key for score in result.scores] == [spec.key for spec in instrument.scores]
    for score in result.scores:
        spec = instrument.spec(score.key)
        assert (score.low, score.high, score.direction) == (spec.low, spec.high, spec.direction)
        assert spec.low <= score.value <= spec.high, (score.key, score.value)
        assert 0 < score.items_answered <= score.items_total


def assert_source(source: Source) -> None:
    assert source.source.strip()
    assert source.url.startswith(("https://", "http://")), source.url
    assert source.locator.strip()
    assert source.grade in ("primary", "secondary")


def test_catalog_is_not_empty() -> None:
    assert IDS


@pytest.mark.parametrize("instrument_id", IDS)
def test_questionnaire_parses_with_fhir_resources(instrument_id: str) -> None:
    parsed = fhir_questionnaire(instrument_id)
    assert parsed.id == instrument_id
    assert parsed.status in ("draft", "active")


@pytest.mark.parametrize("instrument_id", IDS)
def test_questionnaire_metadata(instrument_id: str) -> None:
    data = load_questionnaire(instrument_id)
    assert data["url"].endswith(f"/Questionnaire/{instrument_id}")
    assert any(identifier.get("value") == instrument_id for identifier in data["identifier"])
    assert re.fullmatch(r"[A-Z][A-Za-z0-9_]{0,254}", data["name"]), "FHIR name is machine-friendly"
    assert data["title"].strip()
    assert data["copyright"].strip(), "the licence is stated in the resource"


@pytest.mark.parametrize("instrument_id", IDS)
def test_link_ids_equal_item_ids(instrument_id: str) -> None:
    instrument = INSTRUMENTS[instrument_id]
    linked = tuple(item.link_id for item in questionnaire_items(instrument_id))
    assert linked == instrument.item_ids
    all_link_ids = [
        item["linkId"] for item in iter_items(load_questionnaire(instrument_id)["item"])
    ]
    assert len(all_link_ids) == len(set(all_link_ids)), "linkIds are unique"


@pytest.mark.parametrize("instrument_id", IDS)
def test_items_are_well_formed(instrument_id: str) -> None:
    for raw in iter_items(load_questionnaire(instrument_id)["item"]):
        assert raw.get("text", "").strip(), f"{raw['linkId']} has a label"
        for option in raw.get("answerOption", []):
            coding = option["valueCoding"]
            assert coding.get("display", "").strip(), f"{raw['linkId']} option has a display"
            on_coding = [e for e in coding.get("extension", []) if e["url"] == ORDINAL_VALUE_URL]
            on_option = [e for e in option.get("extension", []) if e["url"] == ORDINAL_VALUE_URL]
            assert len(on_coding) + len(on_option) == 1, "exactly one ordinalValue per option"


@pytest.mark.parametrize("instrument_id", IDS)
def test_loinc_code(instrument_id: str) -> None:
    instrument = INSTRUMENTS[instrument_id]
    codes = load_questionnaire(instrument_id).get("code", [])
    for coding in codes:
        if coding.get("system") == LOINC_SYSTEM:
            assert LOINC_PATTERN.match(coding["code"]), coding
    assert loinc_code(instrument_id) == instrument.loinc
    if instrument.loinc is not None:
        assert LOINC_PATTERN.match(instrument.loinc)
        assert {"system": LOINC_SYSTEM, "code": instrument.loinc} in [
            {"system": c.get("system"), "code": c.get("code")} for c in codes
        ]


@pytest.mark.parametrize("instrument_id", IDS)
def test_sources_are_recorded(instrument_id: str) -> None:
    instrument = INSTRUMENTS[instrument_id]
    assert_source(instrument.scoring_source)
    assert instrument.licence_note.strip()
    keys = [spec.key for spec in instrument.scores]
    assert keys and len(keys) == len(set(keys))
    for spec in instrument.scores:
        assert spec.low < spec.high
        if spec.mcid is not None:
            assert spec.mcid.value > 0
            assert_source(spec.mcid.source)


@pytest.mark.parametrize("instrument_id", IDS)
def test_all_minimum_and_all_maximum_reach_the_ends(instrument_id: str) -> None:
    instrument = INSTRUMENTS[instrument_id]
    lowest = instrument.score(all_at(instrument, "low"))
    highest = instrument.score(all_at(instrument, "high"))
    assert_in_range(instrument, lowest)
    assert_in_range(instrument, highest)
    for spec in instrument.scores:
        # Some instruments reverse their items, so either answer extreme may give
        # either score end; together they must reach both.
        ends = sorted([lowest[spec.key].value, highest[spec.key].value])
        assert ends == pytest.approx([spec.low, spec.high]), spec.key
        assert lowest[spec.key].items_answered == lowest[spec.key].items_total


@pytest.mark.parametrize("instrument_id", IDS)
def test_out_of_range_answer_names_the_item(instrument_id: str) -> None:
    instrument = INSTRUMENTS[instrument_id]
    for item in questionnaire_items(instrument_id):
        for bad in (item.low - 1, item.high + 1):
            answers = all_at(instrument, "low") | {item.link_id: bad}
            with pytest.raises(ItemError) as raised:
                instrument.score(answers)
            assert raised.value.item == item.link_id


@pytest.mark.parametrize("instrument_id", IDS)
def test_wrong_type_answer_names_the_item(instrument_id: str) -> None:
    instrument = INSTRUMENTS[instrument_id]
    item = questionnaire_items(instrument_id)[0]
    for bad in ("3", True, float("nan")):
        answers: dict[str, Any] = all_at(instrument, "low") | {item.link_id: bad}
        with pytest.raises(ItemError) as raised:
            instrument.score(answers)
        assert raised.value.item == item.link_id


@pytest.mark.parametrize("instrument_id", IDS)
def test_between_options_answer_names_the_item(instrument_id: str) -> None:
    instrument = INSTRUMENTS[instrument_id]
    for item in questionnaire_items(instrument_id):
        if item.type == "decimal":
            continue
        answers = all_at(instrument, "low") | {item.link_id: item.low + 0.5}
        with pytest.raises(ItemError) as raised:
            instrument.score(answers)
        assert raised.value.item == item.link_id


@pytest.mark.parametrize("instrument_id", IDS)
def test_unknown_item_raises(instrument_id: str) -> None:
    instrument = INSTRUMENTS[instrument_id]
    answers = all_at(instrument, "low") | {"no-such-item": 1}
    with pytest.raises(ItemError) as raised:
        instrument.score(answers)
    assert raised.value.item == "no-such-item"


@pytest.mark.parametrize("instrument_id", IDS)
def test_all_missing_is_not_scorable(instrument_id: str) -> None:
    instrument = INSTRUMENTS[instrument_id]
    with pytest.raises(NotScorable):
        instrument.score(dict.fromkeys(instrument.item_ids))
    with pytest.raises(NotScorable):
        instrument.score({})


def answer_value(item: QuestionnaireItem) -> st.SearchStrategy[float | None]:
    allowed = item.allowed_values
    if allowed is not None:
        values: st.SearchStrategy[float] = st.sampled_from(allowed)
    elif item.type == "integer":
        values = st.integers(int(item.low), int(item.high)).map(float)
    else:
        values = st.floats(item.low, item.high, allow_nan=False)
    # Mostly answered, sometimes blank, so the missing-item rules are exercised too.
    return st.one_of(values, values, values, st.none())


@st.composite
def instrument_and_answers(draw: st.DrawFn) -> tuple[Instrument, dict[str, float | None]]:
    instrument = INSTRUMENTS[draw(st.sampled_from(IDS))]
    answers = {
        item.link_id: draw(answer_value(item)) for item in questionnaire_items(instrument.id)
    }
    return instrument, answers


@settings(max_examples=200, deadline=None)
@given(instrument_and_answers())
def test_scores_stay_in_range(case: tuple[Instrument, dict[str, float | None]]) -> None:
    instrument, answers = case
    try:
        result = instrument.score(answers)
    except NotScorable:
        return
    assert_in_range(instrument, result)
    assert instrument.score(answers) == result, "scoring is deterministic"


def library_modules() -> list[str]:
    return sorted(
        f"{library.__name__}.{info.name}" for info in pkgutil.iter_modules(library.__path__)
    )


@pytest.mark.parametrize(
    "module_name",
    [questionnaire.__name__, texts.__name__, *library_modules()],
)
def test_docstring_examples(module_name: str) -> None:
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
