"""What crosses the screening API and the self-check form.

The request body of ``POST /api/screening`` is the engine's own
:class:`~prolo.screening.profile.ScreeningProfile`; the answer is
:class:`ScreeningOut` (the engine's result plus its decision in plain words). The
self-check and the clinician's form post flat HTML fields; :func:`answers_from_form`
turns them into the same raw answers and reports every missing or malformed answer
under its form field's name, so the page can put each message next to its field.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from prolo.knowledge.safety import WEEKS_PER_MONTH, SafetyRules
from prolo.knowledge.schema import COMPLAINT_KEYS
from prolo.screening.profile import ScreeningProfile
from prolo.screening.rules import Decision, ScreeningResult

DECISION_TEXT: Mapping[str, str] = {
    "candidate": "Prolotherapy may be an option worth discussing with a clinician.",
    "candidate_with_precautions": (
        "Prolotherapy might be an option, but there are things a clinician needs to check "
        "with you first."
    ),
    "not_candidate": "Prolotherapy injections are not advised for you at the moment.",
    "refer": "Please see a doctor about this pain before considering any injection.",
}
DECISION_LABELS: Mapping[str, str] = {
    "candidate": "Candidate",
    "candidate_with_precautions": "Candidate with precautions",
    "not_candidate": "Not a candidate now",
    "refer": "Refer for medical assessment",
}
KIND_LABELS: Mapping[str, str] = {
    "red_flag": "Red flag",
    "absolute": "Absolute contraindication",
    "relative": "Precaution",
    "duration": "Duration",
    "evidence": "Evidence",
}


class ScreeningOut(ScreeningResult):
    """The engine's result, with its decision in plain words (``decision_text``)."""

    decision_text: str

    @classmethod
    def from_result(cls, result: ScreeningResult) -> ScreeningOut:
        return cls(**dict(result), decision_text=DECISION_TEXT[result.decision])


class StoredReasonOut(BaseModel):
    """A reason as stored on the patient's record."""

    model_config = ConfigDict(from_attributes=True)

    position: int
    rule_id: str
    kind: str
    condition_id: str | None
    patient_message: str
    clinician_message: str
    sources: list[dict[str, Any]]


class StoredScreeningOut(BaseModel):
    """A screening stored on the patient's record: answers, decision, every reason."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    patient_id: int
    screened_at: dt.datetime
    screened_by_user_id: int | None
    decision: Decision
    safety_rules_version: int
    answers: dict[str, Any]
    reasons: list[StoredReasonOut]
    result: dict[str, Any]


# --- The HTML form ---------------------------------------------------------------------

PRIOR_TREATMENT_LABELS: Mapping[str, str] = {
    "none": "Nothing yet",
    "physiotherapy_exercise": "Physiotherapy or an exercise programme",
    "nsaids": "Anti-inflammatory tablets or gels (such as ibuprofen)",
    "paracetamol": "Paracetamol (acetaminophen)",
    "corticosteroid_injection": "A steroid (cortisone) injection",
    "other_injection": "Another kind of injection",
    "opioids": "Opioid pain medicines (such as codeine, tramadol or oxycodone)",
    "surgery": "An operation",
    "other": "Something else",
}
DURATION_UNITS: Mapping[str, float] = {
    "weeks": 1.0,
    "months": WEEKS_PER_MONTH,
    "years": 365.25 / 7,
}
SEX_AT_BIRTH_LABELS: Mapping[str, str] = {
    "": "Prefer not to say",
    "female": "Female",
    "male": "Male",
    "intersex": "Intersex",
}
PREGNANT_CHOICES: Mapping[str, str] = {
    "yes": "Yes, or I might be",
    "no": "No",
    "not_applicable": "Does not apply to me",
}

YesNoGroup = Literal["medications", "allergies", "history"]
# (group, field, question) in the order the form asks them.
YES_NO_QUESTIONS: tuple[tuple[YesNoGroup, str, str], ...] = (
    (
        "medications",
        "anticoagulant",
        "Do you take a blood thinner (such as warfarin, heparin, apixaban or rivaroxaban)?",
    ),
    (
        "medications",
        "antiplatelet",
        "Do you take a medicine that stops blood clotting, such as clopidogrel or daily aspirin?",
    ),
    (
        "allergies",
        "local_anaesthetic",
        "Are you allergic to lidocaine or another local anaesthetic (numbing medicine)?",
    ),
    ("allergies", "dextrose", "Are you allergic to dextrose (glucose, a sugar)?"),
    (
        "history",
        "infection_at_site",
        "Is there an infection, or broken or infected skin, at or near where it hurts?",
    ),
    (
        "history",
        "systemic_infection",
        "Do you have a fever or an infection anywhere else right now?",
    ),
    ("history", "bleeding_disorder", "Do you have a bleeding disorder (such as haemophilia)?"),
    (
        "history",
        "fracture_at_site",
        "Have you broken a bone where it hurts in the last few months?",
    ),
    (
        "history",
        "prosthetic_joint_at_site",
        "Do you have an artificial (replaced) joint where it hurts?",
    ),
    (
        "history",
        "immunosuppressed",
        "Do you take medicines that weaken the immune system, or have an illness that does?",
    ),
    (
        "history",
        "malignancy_at_site",
        "Have you been told you have a cancer or tumour where it hurts?",
    ),
    ("history", "diabetes", "Do you have diabetes?"),
)
# Engine field paths that are asked under a different form field.
FORM_FIELD_FOR: Mapping[str, str] = {"pain_duration_weeks": "duration_value"}
_YES_NO = {"yes": True, "no": False}


def form_field(engine_field: str) -> str:
    """The form field that asks the answer the engine names (``pain_duration_weeks``...)."""
    return FORM_FIELD_FOR.get(engine_field, engine_field)


def answers_from_form(
    form: Mapping[str, Sequence[str]], rules: SafetyRules
) -> tuple[dict[str, Any], dict[str, str]]:
    """Raw screening answers from the posted form, and {form field: message} for the gaps.

    Every required answer is checked here so the page can show all missing answers at
    once; whether answers contradict each other is left to the engine.
    """
    errors: dict[str, str] = {}

    def one(name: str) -> str:
        values = form.get(name) or [""]
        return values[-1].strip()

    def yes_no(name: str, *, required: bool = True) -> bool | None:
        value = one(name)
        if value in _YES_NO:
            return _YES_NO[value]
        if value or required:
            errors[name] = "Answer yes or no."
        return None

    complaint = one("complaint")
    if complaint not in COMPLAINT_KEYS:
        errors["complaint"] = "Choose where the pain is."
    condition_id = one("condition_id") or None

    weeks: float | None = None
    raw_duration = one("duration_value").replace(",", ".")
    unit = one("duration_unit") or "months"
    if unit not in DURATION_UNITS:
        errors["duration_unit"] = "Choose weeks, months or years."
    if not raw_duration:
        errors["duration_value"] = "Say how long you have had this pain."
    else:
        try:
            number = float(raw_duration)
        except ValueError:
            errors["duration_value"] = "Enter a number, such as 6."
        else:
            if not math.isfinite(number):
                errors["duration_value"] = "Enter a number, such as 6."
            elif unit in DURATION_UNITS:
                weeks = number * DURATION_UNITS[unit]

    treatments = [t for t in form.get("prior_treatments", []) if t]
    unknown = [t for t in treatments if t not in PRIOR_TREATMENT_LABELS]
    if unknown:
        errors["prior_treatments"] = "Choose from the list."

    red_flags = {q: yes_no(f"red_flags.{q}") for q in rules.questions}
    groups: dict[str, dict[str, Any]] = {"medications": {}, "allergies": {}, "history": {}}
    for group, name, _ in YES_NO_QUESTIONS:
        groups[group][name] = yes_no(f"{group}.{name}")
    controlled = yes_no("history.diabetes_controlled", required=False)
    if controlled is not None:
        groups["history"]["diabetes_controlled"] = controlled
    other_allergy = one("allergies.other")
    if len(other_allergy) > 200:
        errors["allergies.other"] = "Keep this under 200 characters."
    groups["allergies"]["other"] = [other_allergy] if other_allergy else []

    sex = one("sex_at_birth")
    if sex not in SEX_AT_BIRTH_LABELS:
        errors["sex_at_birth"] = "Choose from the list."
    pregnant_answer = one("pregnant")
    if pregnant_answer not in PREGNANT_CHOICES:
        errors["pregnant"] = "Choose one answer."

    answers: dict[str, Any] = {
        "complaint": complaint or None,
        "condition_id": condition_id,
        "pain_duration_weeks": weeks,
        "prior_treatments": treatments,
        "red_flags": red_flags,
        **groups,
        "pregnant": {"yes": True, "no": False}.get(pregnant_answer),
        "sex_at_birth": sex or None,
    }
    return answers, errors


def form_values(answers: Mapping[str, Any]) -> dict[str, Any]:
    """Stored raw answers as form values, to show what was answered (the reverse mapping)."""
    values: dict[str, Any] = {
        "complaint": answers.get("complaint") or "",
        "condition_id": answers.get("condition_id") or "",
        "prior_treatments": list(answers.get("prior_treatments") or ()),
        "sex_at_birth": answers.get("sex_at_birth") or "",
    }
    weeks = answers.get("pain_duration_weeks")
    if isinstance(weeks, int | float):
        values["duration_value"] = f"{round(weeks, 1):g}"
        values["duration_unit"] = "weeks"
    for question, value in (answers.get("red_flags") or {}).items():
        values[f"red_flags.{question}"] = "yes" if value else "no"
    for group in ("medications", "allergies", "history"):
        for name, value in (answers.get(group) or {}).items():
            if isinstance(value, bool):
                values[f"{group}.{name}"] = "yes" if value else "no"
    other = (answers.get("allergies") or {}).get("other") or []
    values["allergies.other"] = ", ".join(other)
    pregnant = answers.get("pregnant")
    values["pregnant"] = (
        "yes" if pregnant is True else "no" if pregnant is False else "not_applicable"
    )
    return values


def profile_answers(profile: ScreeningProfile) -> dict[str, Any]:
    """A profile as JSON-ready raw answers (what is stored with a screening)."""
    return profile.model_dump(mode="json")


__all__ = [
    "DECISION_LABELS",
    "DECISION_TEXT",
    "KIND_LABELS",
    "ScreeningOut",
    "StoredReasonOut",
    "StoredScreeningOut",
    "answers_from_form",
    "form_field",
    "form_values",
    "profile_answers",
]
