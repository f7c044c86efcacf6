"""Table-driven tests of the screening engine: each rule fires, and stays quiet when off."""

from __future__ import annotations

from typing import Any

import pytest

from prolo.knowledge.safety import PROFILE_TRIGGERS, load_safety_rules
from prolo.knowledge.schema import COMPLAINT_KEYS
from prolo.screening import (
    INFORMATION_ONLY,
    ScreeningInputError,
    ScreeningProfile,
    ScreeningResult,
    screen,
)
from tests.screening.factories import (
    answers,
    fixture_conditions,
    make_condition,
    make_profile,
    no_red_flags,
    with_answer,
)

RULES = load_safety_rules()
CONDITIONS = fixture_conditions()
SPINAL = ("neck", "upper_back", "lower_back", "pelvis_buttock")


def run(profile: ScreeningProfile, **kwargs: Any) -> ScreeningResult:
    kwargs.setdefault("conditions", CONDITIONS)
    return screen(profile, **kwargs)


def ids(result: ScreeningResult) -> list[str]:
    return [r.rule_id for r in result.reasons]


def flags(**yes: bool) -> dict[str, bool]:
    return {**no_red_flags(), **yes}


# A chronic complaint per region, with a matched condition of graded evidence where
# the fixtures have one, so the only reasons are the ones a test switches on.
BASELINE = {
    "knee": {"complaint": "knee", "condition_id": "knee-osteoarthritis"},
    "elbow": {"complaint": "elbow"},
    "pelvis_buttock": {
        "complaint": "pelvis_buttock",
        "condition_id": "sacroiliac-joint-dysfunction",
    },
}


def test_a_clean_chronic_knee_complaint_is_a_candidate_with_a_protocol() -> None:
    result = run(make_profile(condition_id="knee-osteoarthritis"))
    assert result.decision == "candidate"
    assert result.reasons == ()
    assert result.suggested_protocol_condition_id == "knee-osteoarthritis"
    assert result.suggested_protocol is CONDITIONS["knee-osteoarthritis"].protocol
    assert result.instruments == ("pain-nrs", "womac")
    assert result.chronic is True
    (match,) = result.matches
    assert match.evidence_grade == "low" and match.summary_patient
    assert result.information_only == INFORMATION_ONLY
    assert "not a diagnosis" in result.information_only


# --- red flags -------------------------------------------------------------------

RED_FLAG_CASES = [
    pytest.param(flag.id, flag.question, region, id=f"{flag.id}-{region}")
    for flag in RULES.red_flags
    for region in flag.regions
]


@pytest.mark.parametrize(("rule_id", "question", "region"), RED_FLAG_CASES)
def test_each_red_flag_refers_in_each_of_its_regions(
    rule_id: str, question: str, region: str
) -> None:
    result = run(make_profile(complaint=region, red_flags=flags(**{question: True})))
    assert result.decision == "refer"
    assert rule_id in ids(result)
    assert result.reasons[0].kind == "red_flag"
    assert result.suggested_protocol is None


@pytest.mark.parametrize(("rule_id", "question", "region"), RED_FLAG_CASES)
def test_each_red_flag_is_quiet_when_answered_no(rule_id: str, question: str, region: str) -> None:
    result = run(make_profile(complaint=region, red_flags=flags(**{question: False})))
    assert rule_id not in ids(result)
    assert result.decision != "refer"


@pytest.mark.parametrize("flag", RULES.red_flags, ids=lambda f: f.id)
def test_a_red_flag_is_quiet_outside_its_regions(flag: Any) -> None:
    outside = sorted(COMPLAINT_KEYS - set(flag.regions))
    assert outside, flag.id
    for region in outside:
        result = run(make_profile(complaint=region, red_flags=flags(**{flag.question: True})))
        assert flag.id not in ids(result), region
        assert result.decision != "refer"


def test_spinal_red_flags_cover_the_spine() -> None:
    for flag in RULES.red_flags:
        assert set(flag.regions) <= set(SPINAL)


def test_fever_with_knee_pain_is_not_a_referral_but_rules_out_injection_now() -> None:
    result = run(make_profile(red_flags=flags(fever=True)))
    assert "fever-with-spinal-pain" not in ids(result)
    assert "systemic-infection" in ids(result)
    assert result.decision == "not_candidate"


def test_red_flags_are_checked_against_the_condition_region_without_a_complaint() -> None:
    back = make_profile(
        complaint=None, condition_id="low-back-pain", red_flags=flags(night_pain=True)
    )
    assert run(back).decision == "refer"
    knee = make_profile(complaint=None, icd10="M17.11", red_flags=flags(night_pain=True))
    assert run(knee).decision != "refer"


def test_every_red_flag_applies_when_nothing_says_where_the_pain_is() -> None:
    unmatched = make_profile(complaint=None, icd10="J45.909", red_flags=flags(night_pain=True))
    result = run(unmatched)
    assert result.matches == ()
    assert result.decision == "refer"
    nowhere = make_condition(
        "nowhere", body_region="multiple", complaint_keys=(), codes=("M15.0",), prefixes=()
    )
    everywhere = make_profile(
        complaint=None, condition_id="nowhere", red_flags=flags(night_pain=True)
    )
    assert run(everywhere, conditions={"nowhere": nowhere}).decision == "refer"


def test_a_multiple_region_condition_is_scoped_by_its_complaint_keys() -> None:
    # generalised-osteoarthritis: body region "multiple", offered for widespread pain.
    profile = make_profile(
        complaint=None, condition_id="generalised-osteoarthritis", red_flags=flags(night_pain=True)
    )
    assert run(profile).decision != "refer"
    with pytest.raises(ScreeningInputError) as info:
        run(make_profile(complaint="jaw", condition_id="generalised-osteoarthritis"))
    assert info.value.field == "condition_id"


# --- contraindications -------------------------------------------------------------

CONTRAINDICATION_CASES = [
    pytest.param(rule.id, rule.kind, trigger, id=f"{rule.id}-{trigger}")
    for rule in RULES.contraindications
    for trigger in rule.triggers
]
EXPECTED_DECISION = {"absolute": "not_candidate", "relative": "candidate_with_precautions"}


def _switch_on(trigger: str, **overrides: Any) -> ScreeningProfile:
    if trigger.startswith("red_flags."):
        question = trigger.removeprefix("red_flags.")
        return make_profile(red_flags=flags(**{question: True}), **overrides)
    return with_answer(trigger, True, **overrides)


@pytest.mark.parametrize(("rule_id", "kind", "trigger"), CONTRAINDICATION_CASES)
def test_each_contraindication_fires_on_each_trigger(rule_id: str, kind: str, trigger: str) -> None:
    result = run(_switch_on(trigger, condition_id="knee-osteoarthritis"))
    assert rule_id in ids(result)
    assert result.decision == EXPECTED_DECISION[kind]
    (reason,) = [r for r in result.reasons if r.rule_id == rule_id]
    assert reason.kind == kind and reason.sources
    if kind == "absolute":
        assert result.suggested_protocol is None
    else:
        assert result.suggested_protocol_condition_id == "knee-osteoarthritis"


@pytest.mark.parametrize(("rule_id", "kind", "trigger"), CONTRAINDICATION_CASES)
def test_each_contraindication_is_quiet_when_its_triggers_are_off(
    rule_id: str, kind: str, trigger: str
) -> None:
    result = run(make_profile(condition_id="knee-osteoarthritis"))
    assert rule_id not in ids(result)
    assert result.decision == "candidate"


@pytest.mark.parametrize("pregnant", [False, None])
def test_pregnancy_only_fires_on_a_yes(pregnant: bool | None) -> None:
    assert "pregnancy" not in ids(run(make_profile(pregnant=pregnant)))


def test_every_profile_trigger_is_a_yes_no_answer_of_the_profile() -> None:
    profile = make_profile()
    for trigger in sorted(PROFILE_TRIGGERS):
        assert profile.answer(trigger) is False
        assert with_answer(trigger, True).answer(trigger) is True
    assert profile.answer("red_flags.fever") is False
    for bad in ("history.likes_cats", "allergies.other", "nothing", "red_flags.nope"):
        with pytest.raises(KeyError):
            profile.answer(bad)


# --- precedence, notes and evidence ----------------------------------------------


def test_a_red_flag_outranks_an_absolute_contraindication() -> None:
    profile = with_answer(
        "history.infection_at_site", True, complaint="lower_back", red_flags=flags(fever=True)
    )
    result = run(profile)
    assert result.decision == "refer"
    kinds = [r.kind for r in result.reasons]
    assert kinds == sorted(
        kinds, key=["red_flag", "absolute", "relative", "duration", "evidence"].index
    )
    assert {"fever-with-spinal-pain", "infection-at-site", "systemic-infection"} <= set(ids(result))


def test_an_absolute_contraindication_outranks_a_relative_one() -> None:
    data = answers(condition_id="knee-osteoarthritis", pregnant=True)
    data["history"] = {**data["history"], "fracture_at_site": True}
    result = run(ScreeningProfile.model_validate(data))
    assert result.decision == "not_candidate"
    assert ids(result) == ["fracture-at-site", "pregnancy"]


@pytest.mark.parametrize(
    ("weeks", "chronic"), [(0.0, False), (4.0, False), (13.0, False), (13.1, True), (104.0, True)]
)
def test_pain_shorter_than_three_months_adds_the_chronic_pain_note(
    weeks: float, chronic: bool
) -> None:
    # Threshold: 3 months = 13.04 weeks; 13.0 is under it, 13.1 over it.
    result = run(make_profile(condition_id="knee-osteoarthritis", pain_duration_weeks=weeks))
    assert result.chronic is chronic
    assert ("chronic-pain-threshold" in ids(result)) is not chronic
    assert result.decision == ("candidate" if chronic else "candidate_with_precautions")


def test_no_matching_condition_is_said_plainly() -> None:
    result = run(make_profile(complaint="jaw"))
    assert result.matches == ()
    assert ids(result) == ["no-matching-condition"]
    assert result.decision == "candidate_with_precautions"
    assert result.suggested_protocol is None and result.instruments == ()


def test_insufficient_evidence_is_a_reason_naming_the_condition() -> None:
    result = run(make_profile(complaint="lower_back"))
    assert [m.condition_id for m in result.matches] == ["low-back-pain"]
    (reason,) = result.reasons
    assert reason.rule_id == "insufficient-evidence" and reason.condition_id == "low-back-pain"
    assert "Fixture grade reason." in reason.clinician_message
    assert result.decision == "candidate_with_precautions"
    assert result.suggested_protocol is None  # its protocol is insufficient_evidence


def test_graded_evidence_for_one_fitting_condition_is_enough() -> None:
    # pelvis_buttock fits the insufficient low-back-pain and the low-graded SI joint entry.
    result = run(make_profile(complaint="pelvis_buttock"))
    assert [m.condition_id for m in result.matches] == [
        "low-back-pain",
        "sacroiliac-joint-dysfunction",
    ]
    assert "insufficient-evidence" not in ids(result)
    assert result.decision == "candidate"
    assert result.suggested_protocol is None  # two fit: no single protocol to suggest


def test_matching_by_icd10_prefers_the_listed_code() -> None:
    result = run(make_profile(complaint=None, icd10="M25.561"))
    assert [m.condition_id for m in result.matches] == ["knee-pain"]
    result = run(make_profile(complaint="knee", icd10="M17.0"))
    assert [m.condition_id for m in result.matches] == ["knee-osteoarthritis"]
    result = run(make_profile(complaint="knee", icd10="m1711"))
    assert [m.condition_id for m in result.matches] == ["knee-osteoarthritis"]


def test_a_condition_id_and_its_own_code_agree() -> None:
    result = run(make_profile(condition_id="knee-osteoarthritis", icd10="M17.11"))
    assert result.decision == "candidate"


def test_instruments_are_the_union_of_the_matches_in_order() -> None:
    result = run(make_profile(complaint="knee"))
    assert result.instruments == ("pain-nrs", "womac", "koos-jr")


def test_the_conditions_order_does_not_change_the_result() -> None:
    reversed_kb = dict(reversed(list(CONDITIONS.items())))
    for complaint in sorted(COMPLAINT_KEYS):
        profile = make_profile(complaint=complaint)
        assert run(profile) == run(profile, conditions=reversed_kb)


# --- contradictory or missing answers ---------------------------------------------

CONTRADICTIONS = [
    ("condition_id", {"complaint": "shoulder", "condition_id": "knee-osteoarthritis"}),
    ("condition_id", {"condition_id": "no-such-condition"}),
    ("icd10", {"complaint": "shoulder", "icd10": "M17.11"}),
    ("icd10", {"condition_id": "knee-osteoarthritis", "icd10": "M77.11"}),
    ("icd10", {"icd10": "XYZ"}),
    ("pain_duration_weeks", {"pain_duration_weeks": -1.0}),
    ("pain_duration_weeks", {"pain_duration_weeks": 1e9}),
    ("prior_treatments", {"prior_treatments": ["none", "surgery"]}),
    ("prior_treatments", {"prior_treatments": ["nsaids", "nsaids"]}),
    ("pregnant", {"pregnant": True, "sex_at_birth": "male"}),
    ("complaint", {"complaint": None}),
    ("red_flags.fever", {"red_flags": {k: v for k, v in no_red_flags().items() if k != "fever"}}),
    ("red_flags.headache", {"red_flags": {**no_red_flags(), "headache": True}}),
]


@pytest.mark.parametrize(("field", "overrides"), CONTRADICTIONS, ids=[c[0] for c in CONTRADICTIONS])
def test_contradictory_or_missing_answers_name_the_field(
    field: str, overrides: dict[str, Any]
) -> None:
    with pytest.raises(ScreeningInputError) as info:
        run(make_profile(**overrides))
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert isinstance(info.value, ValueError)


def test_diabetes_control_without_diabetes_is_contradictory() -> None:
    data = answers()
    data["history"] = {**data["history"], "diabetes_controlled": True}
    with pytest.raises(ScreeningInputError) as info:
        run(ScreeningProfile.model_validate(data))
    assert info.value.field == "history.diabetes_controlled"
    data["history"]["diabetes"] = True
    assert run(ScreeningProfile.model_validate(data)).decision == "candidate"


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("medications.anticoagulant", lambda d: d["medications"].update(anticoagulant="yes")),
        ("history", lambda d: d.pop("history")),
        ("red_flags.fever", lambda d: d["red_flags"].update(fever=1)),
        ("complaint", lambda d: d.update(complaint="tail")),
        ("pain_duration_weeks", lambda d: d.update(pain_duration_weeks=float("nan"))),
        ("favourite_colour", lambda d: d.update(favourite_colour="blue")),
        ("prior_treatments[0]", lambda d: d.update(prior_treatments=["magic"])),
    ],
)
def test_from_answers_reports_shape_errors_as_screening_input_errors(
    field: str, change: Any
) -> None:
    data = answers()
    change(data)
    with pytest.raises(ScreeningInputError) as info:
        ScreeningProfile.from_answers(data)
    assert info.value.field == field


def test_from_answers_accepts_good_answers() -> None:
    profile = ScreeningProfile.from_answers(answers(prior_treatments=["none"]))
    assert profile.prior_treatments == ("none",)
    assert run(profile).decision == "candidate"


# --- defaults: the shipped knowledge base and rules --------------------------------


def test_defaults_use_the_shipped_rules_and_knowledge_base() -> None:
    from prolo.knowledge import load_conditions

    shipped = load_conditions()
    profile = make_profile(red_flags=flags(history_of_cancer=True), complaint="lower_back")
    result = screen(profile)
    assert result.decision == "refer"
    assert result == screen(profile, conditions=shipped, rules=RULES)


def test_custom_rules_change_the_questions_asked() -> None:
    trimmed = RULES.model_copy(
        update={"rules": tuple(r for r in RULES.rules if r.id != "night-pain")}
    )
    answers_without = {k: v for k, v in no_red_flags().items() if k != "night_pain"}
    assert run(make_profile(red_flags=answers_without), rules=trimmed).decision == "candidate"
    with pytest.raises(ScreeningInputError, match="red_flags.night_pain"):
        run(make_profile(), rules=trimmed)


def test_a_condition_filed_under_multiple_regions_fits_any_complaint() -> None:
    multi = make_condition(
        "multi", body_region="multiple", complaint_keys=(), codes=("M15.0",), prefixes=()
    )
    result = screen(
        make_profile(complaint="jaw", condition_id="multi"), conditions={"multi": multi}
    )
    assert result.decision == "candidate"
