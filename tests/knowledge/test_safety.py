"""The shipped safety file loads, cites every rule, and a malformed file fails loudly."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from prolo.knowledge.safety import (
    PROFILE_TRIGGERS,
    REQUIRED_NOTES,
    SAFETY_FILE,
    ContraindicationRule,
    RedFlagRule,
    SafetyDataError,
    SafetyRules,
    load_safety_file,
    load_safety_rules,
    parse_safety_rules,
)
from prolo.knowledge.schema import COMPLAINT_KEYS

RAW: dict[str, Any] = yaml.safe_load(SAFETY_FILE.read_text(encoding="utf-8"))
RULES = load_safety_rules()
KEBAB = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


def raw() -> dict[str, Any]:
    return copy.deepcopy(RAW)


def test_shipped_file_loads_once_and_is_shared() -> None:
    assert load_safety_rules() is RULES
    assert isinstance(RULES, SafetyRules)
    assert RULES.red_flags and RULES.contraindications


@pytest.mark.parametrize("kind", ["absolute", "relative", "red_flag"])
def test_each_kind_has_rules(kind: str) -> None:
    assert any(rule.kind == kind for rule in RULES.rules)


def _everything_cited() -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = [(r.id, r) for r in RULES.rules]
    items += [(n.id, n) for n in RULES.notes]
    items += [(s.id, s) for s in RULES.post_injection_warning_signs]
    items.append(("chronic_pain", RULES.chronic_pain))
    return items


@pytest.mark.parametrize(("item_id", "item"), _everything_cited(), ids=lambda v: str(v)[:40])
def test_every_rule_note_and_sign_cites_a_source(item_id: str, item: Any) -> None:
    assert item.sources, item_id
    for src in item.sources:
        assert src.source.strip() and src.locator.strip()
        assert re.match(r"^https?://\S+$", src.url)
        assert src.grade in ("primary", "secondary")


def test_ids_are_kebab_case_and_messages_are_written() -> None:
    for rule in [*RULES.rules, *RULES.notes]:
        assert KEBAB.match(rule.id)
        assert len(rule.patient_message) > 30 and len(rule.clinician_message) > 30


def test_red_flags_ask_a_question_and_name_their_regions() -> None:
    for flag in RULES.red_flags:
        assert flag.question_text.endswith("?")
        assert set(flag.regions) <= COMPLAINT_KEYS
    assert len(set(RULES.questions)) == len(RULES.questions)


def test_cauda_equina_signs_apply_only_with_back_or_buttock_pain() -> None:
    (flag,) = [r for r in RULES.red_flags if r.id == "cauda-equina-signs"]
    assert set(flag.regions) == {"lower_back", "pelvis_buttock"}


def test_triggers_come_from_the_profile_vocabulary() -> None:
    for rule in RULES.contraindications:
        for trigger in rule.triggers:
            assert trigger in PROFILE_TRIGGERS or trigger.removeprefix("red_flags.") in (
                RULES.questions
            )


def test_every_reference_is_cited() -> None:
    text = SAFETY_FILE.read_text(encoding="utf-8")
    for ref_id in RAW["references"]:
        assert text.count(f"ref: {ref_id}\n") >= 1, ref_id


def test_required_notes_exist() -> None:
    for note_id in REQUIRED_NOTES:
        assert RULES.note(note_id).sources
    with pytest.raises(KeyError, match="no-such-note"):
        RULES.note("no-such-note")


def test_chronic_threshold_is_three_months_in_weeks() -> None:
    # 3 months x (365.25 / 12 / 7) weeks per month = 3 x 4.348... = 13.04 weeks.
    assert RULES.chronic_pain.threshold_months == 3
    assert RULES.chronic_pain.threshold_weeks == pytest.approx(13.04, abs=0.01)


def test_warning_signs_include_pain_after_72_hours() -> None:
    signs = {s.id: s for s in RULES.post_injection_warning_signs}
    assert signs["pain-worsening-after-72-hours"].onset_after_hours == 72
    assert {"fever-after-injection", "hot-red-swelling"} <= set(signs)


def test_citations_resolve_to_full_sources() -> None:
    (rule,) = [r for r in RULES.contraindications if r.id == "bleeding-risk"]
    assert isinstance(rule, ContraindicationRule)
    (eular,) = [s for s in rule.sources if "EULAR" in s.source]
    assert "EULAR" in eular.source and "recommendation 8" in eular.locator
    assert eular.applicability is not None
    (flag,) = [r for r in RULES.red_flags if r.id == "history-of-cancer"]
    assert isinstance(flag, RedFlagRule)
    assert "10.1136/bmj.f7095" in flag.sources[0].source


def _rule(data: dict[str, Any], rule_id: str) -> tuple[int, dict[str, Any]]:
    for n, rule in enumerate(data["rules"]):
        if rule["id"] == rule_id:
            return n, rule
    raise AssertionError(rule_id)


def _break_unknown_key(d: dict[str, Any]) -> str:
    n, rule = _rule(d, "pregnancy")
    rule["colour"] = "red"
    return f"rules[{n}].colour"


def _break_unknown_ref(d: dict[str, Any]) -> str:
    n, rule = _rule(d, "pregnancy")
    rule["sources"][0]["ref"] = "nobody-2099"
    return f"rules[{n}].sources[0].ref"


def _break_missing_locator(d: dict[str, Any]) -> str:
    n, rule = _rule(d, "pregnancy")
    del rule["sources"][0]["locator"]
    return f"rules[{n}].sources[0].locator"


def _break_no_sources(d: dict[str, Any]) -> str:
    n, rule = _rule(d, "pregnancy")
    rule["sources"] = []
    return f"rules[{n}].sources"


def _break_kind(d: dict[str, Any]) -> str:
    n, rule = _rule(d, "pregnancy")
    rule["kind"] = "maybe"
    return f"rules[{n}]"


def _break_trigger(d: dict[str, Any]) -> str:
    n, rule = _rule(d, "pregnancy")
    rule["triggers"] = ["history.likes_cats"]
    return f"rules[{n}]"


def _break_red_flag_trigger(d: dict[str, Any]) -> str:
    _, rule = _rule(d, "systemic-infection")
    rule["triggers"] = ["red_flags.no_such_question"]
    return ""


def _break_region(d: dict[str, Any]) -> str:
    n, rule = _rule(d, "cauda-equina-signs")
    rule["regions"] = ["tail"]
    return f"rules[{n}].regions[0]"


def _break_duplicate_id(d: dict[str, Any]) -> str:
    d["rules"].append(copy.deepcopy(_rule(d, "pregnancy")[1]))
    return ""


def _break_missing_note(d: dict[str, Any]) -> str:
    d["notes"] = [n for n in d["notes"] if n["id"] != "insufficient-evidence"]
    return ""


def _break_reference_grade(d: dict[str, Any]) -> str:
    d["references"]["uson-2021"]["grade"] = "tertiary"
    return "references.uson-2021.grade"


def _break_reference_url(d: dict[str, Any]) -> str:
    d["references"]["uson-2021"]["url"] = "not a url"
    return "references.uson-2021.url"


def _break_threshold(d: dict[str, Any]) -> str:
    d["chronic_pain"]["threshold_months"] = 0
    return "chronic_pain.threshold_months"


def _break_sign(d: dict[str, Any]) -> str:
    d["post_injection_warning_signs"][0]["sources"][0]["page"] = 3
    return "post_injection_warning_signs[0].sources[0].page"


BREAKS = [
    _break_unknown_key,
    _break_unknown_ref,
    _break_missing_locator,
    _break_no_sources,
    _break_kind,
    _break_trigger,
    _break_red_flag_trigger,
    _break_region,
    _break_duplicate_id,
    _break_missing_note,
    _break_reference_grade,
    _break_reference_url,
    _break_threshold,
    _break_sign,
]


@pytest.mark.parametrize("breaker", BREAKS, ids=lambda f: f.__name__.removeprefix("_break_"))
def test_a_malformed_file_fails_naming_the_field(breaker: Any) -> None:
    data = raw()
    field = breaker(data)
    with pytest.raises(SafetyDataError) as info:
        parse_safety_rules(data)
    assert info.value.field == field
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(field) if field else str(info.value)


def test_not_a_mapping_and_bad_yaml_fail_loudly(tmp_path: Path) -> None:
    with pytest.raises(SafetyDataError, match="mapping"):
        parse_safety_rules(["a", "list"])
    bad = tmp_path / "safety.yaml"
    bad.write_text("rules: [unclosed", encoding="utf-8")
    with pytest.raises(SafetyDataError, match="not valid YAML"):
        load_safety_file(bad)
    bad.write_text(yaml.safe_dump({**raw(), "references": ["a"]}), encoding="utf-8")
    with pytest.raises(SafetyDataError, match="references"):
        load_safety_file(bad)


def test_a_round_trip_through_yaml_gives_the_same_rules(tmp_path: Path) -> None:
    copy_file = tmp_path / "safety.yaml"
    copy_file.write_text(yaml.safe_dump(raw(), sort_keys=False), encoding="utf-8")
    assert load_safety_file(copy_file) == RULES
