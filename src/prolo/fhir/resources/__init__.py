"""One mapping module per resource type; :data:`REGISTRY` lists the ones served.

Each module defines ``MAPPING``; the order here is the order of the
CapabilityStatement and of applying a transaction (a resource is written after the
ones it may refer to).
"""

from __future__ import annotations

from prolo.fhir.resources import (
    allergy_intolerance,
    appointment,
    audit_event,
    care_plan,
    condition,
    consent,
    location,
    medication_statement,
    observation,
    patient,
    practitioner,
    procedure,
    questionnaire,
    questionnaire_response,
    schedule,
    slot,
)
from prolo.fhir.resources.base import DataMapping, TableMapping

Mapping = TableMapping | DataMapping

REGISTRY: dict[str, Mapping] = {
    m.MAPPING.type_name: m.MAPPING
    for m in (
        patient,
        practitioner,
        location,
        condition,
        allergy_intolerance,
        medication_statement,
        care_plan,
        consent,
        schedule,
        slot,
        appointment,
        procedure,
        questionnaire,
        questionnaire_response,
        observation,
        audit_event,
    )
}
WRITE_ORDER: tuple[str, ...] = tuple(REGISTRY)
