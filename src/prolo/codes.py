"""Standard code systems: URIs and offline validation of ICD-10-CM codes."""

from __future__ import annotations

from functools import lru_cache

import simple_icd_10_cm as icd

ICD10CM_SYSTEM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED_SYSTEM = "http://snomed.info/sct"
LOINC_SYSTEM = "http://loinc.org"


def normalize_icd10cm(code: str) -> str:
    """Upper-case with the dot after the third character, as the tabular list writes it."""
    raw = code.strip().upper().replace(".", "")
    return raw if len(raw) <= 3 else f"{raw[:3]}.{raw[3:]}"


@lru_cache(maxsize=4096)
def icd10cm_problem(code: str) -> str | None:
    """Why ``code`` is not a billable ICD-10-CM code, or None when it is one."""
    normal = normalize_icd10cm(code)
    if not icd.is_valid_item(normal):
        return f"{normal} is not an ICD-10-CM code"
    if not icd.is_leaf(normal):
        return f"{normal} is a category, not a billable code: choose a more specific code"
    return None


def icd10cm_display(code: str) -> str:
    """The tabular list's description of a valid code."""
    return str(icd.get_description(normalize_icd10cm(code)))
