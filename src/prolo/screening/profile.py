"""What the self-check (or a clinician) tells the screening engine about a person.

:class:`ScreeningProfile` checks shapes and types only: every safety answer is a
strict ``true``/``false`` so that "yes" or ``1`` never slips through as an answer.
Whether the answers make sense together (a negative duration, pregnant with male sex
at birth, a condition from another body region, a missing red-flag answer) is checked
by :func:`prolo.screening.rules.screen`, which raises :class:`ScreeningInputError`
naming the field. :meth:`ScreeningProfile.from_answers` turns raw answers into a
profile and reports shape errors the same way.

Error tree::

    ValueError
     └── ScreeningInputError   (one answer is missing, malformed or contradicts another)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictBool, ValidationError

from prolo.knowledge.safety import RED_FLAG_TRIGGER_PREFIX
from prolo.knowledge.schema import ComplaintKey

PriorTreatment = Literal[
    "none",
    "physiotherapy_exercise",
    "nsaids",
    "paracetamol",
    "corticosteroid_injection",
    "other_injection",
    "opioids",
    "surgery",
    "other",
]
# Sex assigned at birth, not gender: it is what makes a pregnancy answer impossible.
SexAtBirth = Literal["female", "male", "intersex"]


class ScreeningInputError(ValueError):
    """An answer is missing, malformed or contradicts another; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Medications(_Model):
    """Medicines that change the bleeding risk of an injection."""

    anticoagulant: StrictBool  # e.g. warfarin, heparin, apixaban
    antiplatelet: StrictBool  # e.g. clopidogrel, aspirin


class Allergies(_Model):
    """Known allergies: flags for injectate components, free text for the rest."""

    local_anaesthetic: StrictBool  # lidocaine or another local anaesthetic
    dextrose: StrictBool
    other: Annotated[
        tuple[Annotated[str, Field(min_length=1, max_length=200)], ...], Strict(False)
    ] = ()


class History(_Model):
    """Current or past conditions that bear on injection safety."""

    infection_at_site: StrictBool  # infection, broken or infected skin at or near the site
    systemic_infection: StrictBool  # an infection elsewhere or fever now
    bleeding_disorder: StrictBool
    fracture_at_site: StrictBool  # recent fracture at the site
    prosthetic_joint_at_site: StrictBool  # a replaced joint where the pain is
    immunosuppressed: StrictBool  # immune-suppressing medicine or illness
    malignancy_at_site: StrictBool  # recorded for the clinician; no sourced rule yet
    diabetes: StrictBool  # recorded for the clinician; no sourced rule yet
    diabetes_controlled: StrictBool | None = None  # only meaningful when diabetes is true


class ScreeningProfile(_Model):
    """One person's answers. Give a complaint region, a condition id, an ICD-10 code, or several."""

    complaint: ComplaintKey | None = None
    condition_id: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    icd10: Annotated[str, Field(min_length=1, max_length=10)] | None = None
    pain_duration_weeks: Annotated[float, Field(allow_inf_nan=False)]
    prior_treatments: Annotated[tuple[PriorTreatment, ...], Strict(False)] = ()
    red_flags: dict[str, StrictBool]
    medications: Medications
    allergies: Allergies
    history: History
    pregnant: StrictBool | None = None  # None: not asked, not known, or not applicable
    sex_at_birth: SexAtBirth | None = None

    @classmethod
    def from_answers(cls, data: Mapping[str, Any]) -> ScreeningProfile:
        """Build a profile from raw answers; ScreeningInputError naming the first bad field."""
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            raise ScreeningInputError(_field_path(tuple(first["loc"])), first["msg"]) from exc

    def answer(self, path: str) -> bool:
        """The boolean answer at a trigger path (``history.bleeding_disorder``, ``pregnant``).

        ``red_flags.<question>`` reads a red-flag answer. KeyError naming the path when
        the profile has no such answer.
        """
        if path.startswith(RED_FLAG_TRIGGER_PREFIX):
            question = path.removeprefix(RED_FLAG_TRIGGER_PREFIX)
            if question not in self.red_flags:
                raise KeyError(f"no red-flag answer {question!r}")
            return self.red_flags[question]
        if path == "pregnant":
            return self.pregnant is True
        group, _, name = path.partition(".")
        sections: dict[str, BaseModel] = {
            "history": self.history,
            "medications": self.medications,
            "allergies": self.allergies,
        }
        section = sections.get(group)
        known = section is not None and name in type(section).model_fields
        value = getattr(section, name) if known else None
        if not isinstance(value, bool):
            raise KeyError(f"no yes/no profile answer {path!r}")
        return value


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path or "profile"
