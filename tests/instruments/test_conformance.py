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

from prolo.instruments import base, library, questionnaire, texts
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


def assert_in_range(instrument: Instrument, result: ScoreSet, *, complete: bool = True) -> None:
    """Scores are in range and in spec order; a complete answer set reports every score.

    With items missing an instrument may report only the subscales its missing-item
    rule still allows (``complete=False``), but never an empty set.
    """
    assert result.instrument_id == instrument.id
    keys = [score.key for score in result.scores]
    spec_keys = [spec.key for spec in instrument.scores]
    if complete:
        assert keys == spec_keys
    else:
        assert keys, "an empty ScoreSet must be NotScorable instead"
        assert keys == [key for key in spec_keys if key in keys], "scores follow spec order"
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


def test_score_from_spec_refuses_out_of_range_values() -> None:
    spec = base.ScoreSpec("total", "Total", 0, 100, "lower_is_better")
    # A rounding hair outside the range is clamped; a real excursion is a scorer bug.
    assert base.score_from_spec(spec, 100 + 1e-12, items_answered=1, items_total=1).value == 100
    with pytest.raises(ValueError, match="outside"):
        base.score_from_spec(spec, 100.5, items_answered=1, items_total=1)


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
    assert_in_range(instrument, result, complete=None not in answers.values())
    assert instrument.score(answers) == result, "scoring is deterministic"


def library_modules() -> list[str]:
    return sorted(
        f"{library.__name__}.{info.name}" for info in pkgutil.iter_modules(library.__path__)
    )


@pytest.mark.parametrize(
    "module_name",
    [base.__name__, questionnaire.__name__, texts.__name__, *library_modules()],
)
def test_docstring_examples(module_name: str) -> None:
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def full_licensed_text(instrument_id: str) -> dict[str, Any]:
    """A made-up licensed-text file covering every item and answer option."""
    items: dict[str, Any] = {}
    for raw in iter_items(load_questionnaire(instrument_id)["item"]):
        codes = [option["valueCoding"]["code"] for option in raw.get("answerOption", [])]
        entry: dict[str, Any] = {"text": f"Licensed wording of {raw['linkId']}"}
        if codes:
            entry["answers"] = {code: f"Licensed answer {code}" for code in codes}
        items[raw["linkId"]] = entry
    return {"instrument": instrument_id, "items": items}


@pytest.mark.parametrize("instrument_id", IDS)
def test_licensed_text_merges_without_touching_scoring(instrument_id: str) -> None:
    original = load_questionnaire(instrument_id)
    licensed = texts.parse_licensed_text(instrument_id, full_licensed_text(instrument_id))
    merged = texts.merge_licensed_text(original, licensed)
    assert load_questionnaire(instrument_id) == original, "the input is untouched"
    assert not questionnaire.is_structure_only(merged)
    pairs = zip(iter_items(merged["item"]), iter_items(original["item"]), strict=True)
    for merged_item, original_item in pairs:
        assert merged_item["linkId"] == original_item["linkId"]
        assert merged_item["text"] == f"Licensed wording of {merged_item['linkId']}"
        merged_options = merged_item.get("answerOption", [])
        original_options = original_item.get("answerOption", [])
        for merged_option, original_option in zip(merged_options, original_options, strict=True):
            merged_coding = merged_option["valueCoding"]
            original_coding = original_option["valueCoding"]
            assert merged_coding["code"] == original_coding["code"]
            assert merged_coding.get("extension") == original_coding.get("extension")
            assert merged_coding["display"] == f"Licensed answer {merged_coding['code']}"
    from fhir.resources.R4B.questionnaire import Questionnaire

    Questionnaire.model_validate(merged)


@pytest.mark.parametrize("instrument_id", IDS)
def test_licensed_text_rejects_unknown_link_ids_and_codes(instrument_id: str) -> None:
    data = full_licensed_text(instrument_id)
    data["items"]["no-such-item"] = "text"
    first = next(iter(data["items"]))
    data["items"][first] = {"text": "t", "answers": {"no-such-code": "x"}}
    with pytest.raises(texts.LicensedTextError) as raised:
        texts.parse_licensed_text(instrument_id, data)
    problems = " ".join(raised.value.problems)
    assert "unknown linkId 'no-such-item'" in problems
    item = next(iter_items(load_questionnaire(instrument_id)["item"]))
    if item.get("answerOption"):
        assert "unknown answer code 'no-such-code'" in problems
    else:
        assert "has no answer options" in problems


def test_licensed_text_file_formats(tmp_path: Any) -> None:
    yaml_file = tmp_path / "nrs.yaml"
    yaml_file.write_text("instrument: pain-nrs\nitems:\n  pain-nrs: Rate your pain\n")
    json_file = tmp_path / "nrs.json"
    json_file.write_text('{"pain-nrs": {"text": "Rate your pain"}}')
    for path in (yaml_file, json_file):
        merged = texts.questionnaire_with_licensed_text("pain-nrs", path)
        assert merged["item"][0]["text"] == "Rate your pain"
    wrong = tmp_path / "nrs.txt"
    wrong.write_text("pain-nrs: x")
    with pytest.raises(texts.LicensedTextError, match="must end in"):
        texts.load_licensed_text("pain-nrs", wrong)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(texts.LicensedTextError, match="cannot be parsed"):
        texts.load_licensed_text("pain-nrs", broken)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (["pain-nrs"], "mapping of linkId"),
        ({"instrument": "odi", "items": {}}, "not 'pain-nrs'"),
        ({"items": ["pain-nrs"]}, "'items' must be a mapping"),
        ({"pain-nrs": ""}, "non-empty string"),
        ({"pain-nrs": 3}, "must be a text or a mapping"),
        ({"pain-nrs": {"text": "t", "label": "x"}}, "unknown keys ['label']"),
        ({"pain-nrs": {"text": "t", "answers": ["x"]}}, "answers must map"),
    ],
)
def test_licensed_text_errors_say_what_is_wrong(data: Any, problem: str) -> None:
    with pytest.raises(texts.LicensedTextError) as raised:
        texts.parse_licensed_text("pain-nrs", data)
    assert problem in str(raised.value)


def test_partial_licensed_text_keeps_structure_only_tag() -> None:
    tagged = load_questionnaire("pain-nrs") | {"meta": {"tag": [questionnaire.STRUCTURE_ONLY_TAG]}}
    empty = texts.LicensedText(instrument_id="pain-nrs", items={})
    assert questionnaire.is_structure_only(texts.merge_licensed_text(tagged, empty))
    with pytest.raises(texts.LicensedTextError):
        texts.merge_licensed_text(load_questionnaire("pain-nrs") | {"id": "odi"}, empty)
