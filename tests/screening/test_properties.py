"""Invariants of the screening engine over generated profiles (Hypothesis)."""

from __future__ import annotations

from typing import Any, get_args

from hypothesis import given, settings
from hypothesis import strategies as st

from prolo.knowledge.safety import load_safety_rules
from prolo.knowledge.schema import COMPLAINT_KEYS
from prolo.screening import (
    PriorTreatment,
    ScreeningInputError,
    ScreeningProfile,
    ScreeningResult,
    screen,
)
from tests.screening.factories import fixture_conditions

RULES = load_safety_rules()
CONDITIONS = fixture_conditions()
REVERSED = dict(reversed(list(CONDITIONS.items())))
KNOWN_IDS = {r.id for r in RULES.rules} | {n.id for n in RULES.notes}
ABSOLUTE = [r for r in RULES.contraindications if r.kind == "absolute"]
PROFILE_FIELDS = set(ScreeningProfile.model_fields)
CODES = ["M17.11", "M17.0", "m1711", "M25.561", "M54.50", "M77.11", "M53.3", "M15.0", "J45.909"]
BOUNDED = settings(max_examples=150, deadline=None)

booleans = st.booleans()
complaints = st.sampled_from(sorted(COMPLAINT_KEYS))
treatments = st.sampled_from(get_args(PriorTreatment))


def _rarely(draw: Any) -> bool:
    """True about one time in five: keeps most generated profiles screenable."""
    return bool(draw(st.integers(min_value=0, max_value=4)) == 4)


def _sections(draw: Any) -> dict[str, Any]:
    """Medications, allergies and history; each yes is rare so every decision occurs."""

    def yes() -> bool:
        return _rarely(draw)

    diabetes = yes()
    return {
        "medications": {"anticoagulant": yes(), "antiplatelet": yes()},
        "allergies": {
            "local_anaesthetic": yes(),
            "dextrose": yes(),
            "other": draw(st.lists(st.text(min_size=1, max_size=20), max_size=2)),
        },
        "history": {
            "infection_at_site": yes(),
            "systemic_infection": yes(),
            "bleeding_disorder": yes(),
            "fracture_at_site": yes(),
            "prosthetic_joint_at_site": yes(),
            "immunosuppressed": yes(),
            "malignancy_at_site": yes(),
            "diabetes": diabetes,
            "diabetes_controlled": draw(st.none() | booleans) if diabetes else None,
        },
    }


@st.composite
def clean_profiles(draw: Any) -> ScreeningProfile:
    """Consistent answers: a complaint, every question answered, nothing contradictory."""
    complaint = draw(complaints)
    # Sometimes also a condition that fits the complaint, and that condition's own code.
    fitting = sorted(c.id for c in CONDITIONS.values() if complaint in c.match.complaint_keys)
    condition_id = draw(st.sampled_from(fitting)) if fitting and _rarely(draw) else None
    icd10 = None
    if condition_id is not None and draw(booleans):
        icd10 = CONDITIONS[condition_id].codes.icd10cm[0].code
    pregnant = draw(st.none() | booleans)
    sexes = ["female", "intersex"] if pregnant else ["female", "male", "intersex"]
    prior = draw(st.lists(treatments.filter(lambda t: t != "none"), unique=True, max_size=4))
    return ScreeningProfile.model_validate(
        {
            "complaint": complaint,
            "condition_id": condition_id,
            "icd10": icd10,
            "pain_duration_weeks": draw(st.floats(min_value=0, max_value=2000)),
            "prior_treatments": prior or ["none"],
            "red_flags": {q: _rarely(draw) for q in RULES.questions},
            "pregnant": pregnant,
            "sex_at_birth": draw(st.none() | st.sampled_from(sexes)),
            **_sections(draw),
        }
    )


@st.composite
def any_profiles(draw: Any) -> ScreeningProfile:
    """Well-typed answers that may contradict each other or leave questions out."""
    questions = list(RULES.questions)
    if _rarely(draw):
        questions = draw(st.lists(st.sampled_from(RULES.questions), unique=True))
    extra = ["headache"] if _rarely(draw) else []
    weeks = st.floats(min_value=-1e3, max_value=1e6) if _rarely(draw) else st.floats(0, 2000)
    prior = draw(st.lists(treatments.filter(lambda t: t != "none"), max_size=3, unique=True))
    if _rarely(draw):  # 'none' beside other treatments, or a treatment listed twice
        prior.append(draw(st.sampled_from(["none", *prior])))
    sections = _sections(draw)
    if _rarely(draw):  # a diabetes-control answer even when diabetes is answered no
        sections["history"]["diabetes_controlled"] = draw(st.none() | booleans)
    return ScreeningProfile.model_validate(
        {
            "complaint": None if _rarely(draw) else draw(complaints),
            "condition_id": draw(st.none() | st.sampled_from([*CONDITIONS, "no-such-thing"])),
            "icd10": draw(st.none() | st.sampled_from([*CODES, "XYZ", " "])),
            "pain_duration_weeks": draw(weeks),
            "prior_treatments": prior,
            "red_flags": {q: _rarely(draw) for q in [*questions, *extra]},
            "pregnant": draw(st.none() | booleans),
            "sex_at_birth": draw(st.none() | st.sampled_from(["female", "male", "intersex"])),
            **sections,
        }
    )


def _check_reasons(result: ScreeningResult) -> None:
    for reason in result.reasons:
        assert reason.rule_id in KNOWN_IDS
        assert reason.sources
        assert all(s.url.startswith("http") and s.locator for s in reason.sources)
    kinds = {r.kind for r in result.reasons}
    expected = (
        "refer"
        if "red_flag" in kinds
        else "not_candidate"
        if "absolute" in kinds
        else "candidate_with_precautions"
        if kinds
        else "candidate"
    )
    assert result.decision == expected
    if result.decision in ("refer", "not_candidate"):
        assert result.suggested_protocol is None
    assert "not a diagnosis" in result.information_only


@BOUNDED
@given(any_profiles())
def test_no_input_crashes_the_engine(profile: ScreeningProfile) -> None:
    try:
        result = screen(profile, conditions=CONDITIONS)
    except ScreeningInputError as exc:
        root = exc.field.split(".")[0].split("[")[0]
        assert root in PROFILE_FIELDS
        assert exc.message
        return
    _check_reasons(result)


@BOUNDED
@given(clean_profiles())
def test_consistent_input_always_gives_a_result(profile: ScreeningProfile) -> None:
    result = screen(profile, conditions=CONDITIONS)
    _check_reasons(result)


@BOUNDED
@given(clean_profiles())
def test_a_red_flag_for_the_complaint_always_refers(profile: ScreeningProfile) -> None:
    result = screen(profile, conditions=CONDITIONS)
    flagged = any(
        profile.red_flags[flag.question] and profile.complaint in flag.regions
        for flag in RULES.red_flags
    )
    assert (result.decision == "refer") is flagged


@BOUNDED
@given(clean_profiles())
def test_an_absolute_contraindication_never_yields_a_candidate(profile: ScreeningProfile) -> None:
    result = screen(profile, conditions=CONDITIONS)
    absolute = any(profile.answer(t) for rule in ABSOLUTE for t in rule.triggers)
    if absolute:
        assert result.decision in ("refer", "not_candidate")
    if result.decision == "not_candidate":
        assert absolute


@BOUNDED
@given(any_profiles())
def test_the_result_is_deterministic(profile: ScreeningProfile) -> None:
    def outcome(p: ScreeningProfile, kb: Any) -> object:
        try:
            return screen(p, conditions=kb)
        except ScreeningInputError as exc:
            return ("error", exc.field, exc.message)

    first = outcome(profile, CONDITIONS)
    again = ScreeningProfile.model_validate(profile.model_dump())
    assert outcome(profile, CONDITIONS) == first
    assert outcome(again, CONDITIONS) == first
    assert outcome(profile, REVERSED) == first
