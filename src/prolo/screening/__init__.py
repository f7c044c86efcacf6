"""Screening: who may be a candidate for prolotherapy, and why (a pure engine).

Use :func:`screen` with a :class:`ScreeningProfile`; it returns a
:class:`ScreeningResult` or raises :class:`ScreeningInputError` naming the field.
"""

from prolo.screening.profile import (
    Allergies,
    History,
    Medications,
    PriorTreatment,
    ScreeningInputError,
    ScreeningProfile,
    SexAtBirth,
)
from prolo.screening.rules import (
    INFORMATION_ONLY,
    ConditionMatch,
    Decision,
    Reason,
    ScreeningResult,
    check_profile,
    fits_complaint,
    match_conditions,
    screen,
)

__all__ = [
    "INFORMATION_ONLY",
    "Allergies",
    "ConditionMatch",
    "Decision",
    "History",
    "Medications",
    "PriorTreatment",
    "Reason",
    "ScreeningInputError",
    "ScreeningProfile",
    "ScreeningResult",
    "SexAtBirth",
    "check_profile",
    "fits_complaint",
    "match_conditions",
    "screen",
]
