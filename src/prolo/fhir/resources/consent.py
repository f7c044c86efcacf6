"""Consent <- ``consent`` (informed consent to a treatment course).

See: https://hl7.org/fhir/R4/consent.html

- ``status`` ``active``, or ``inactive`` once withdrawn; ``scope`` ``treatment``
  (consentscope); ``category`` LOINC 59284-0 (patient consent);
- ``patient``, ``performer`` (the patient, who consents), ``dateTime`` when it was
  signed;
- ``policy`` the prolo consent text version the patient read
  (``.../consent-text/<version>``); each acknowledged statement as an extension
  (``.../StructureDefinition/consent-statement``);
- ``provision``: permit, for the signing-to-withdrawal period, concerning the course
  (``data`` CarePlan).

Read and search only: consent is taken in the clinic, by the clinician present, with
the whole text in front of the patient (``prolo.courses``), not sent in from outside.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, false

from prolo.courses.models import Consent
from prolo.fhir import codes
from prolo.fhir.resources.base import (
    READ,
    SEARCH,
    Meta,
    Resource,
    TableMapping,
    identifier_list,
    instant,
    put,
    ref,
)
from prolo.fhir.search import Param, date_param, reference_param, split_token

TREATMENT = codes.concept(
    "http://terminology.hl7.org/CodeSystem/consentscope", "treatment", "Treatment"
)
PATIENT_CONSENT = codes.concept(codes.LOINC, "59284-0")
STATEMENT_EXT = f"{codes.PROLO}/StructureDefinition/consent-statement"


def _status(value: str, modifier: str | None) -> ColumnElement[bool]:
    _system, code = split_token(value)
    if code == "active":
        clause: ColumnElement[bool] = Consent.withdrawn_at.is_(None)
    elif code == "inactive":
        clause = Consent.withdrawn_at.is_not(None)
    else:
        clause = false()
    return ~clause if modifier == "not" else clause


class ConsentMapping(TableMapping):
    type_name = "Consent"
    model = Consent
    interactions = frozenset({READ, SEARCH})
    documentation = "Informed consent to a treatment course, with the text version read."

    def search_params(self) -> Sequence[Param]:
        return (
            reference_param("patient", Consent.patient_id, "Patient", "Who consented"),
            reference_param("data", Consent.course_id, "CarePlan", "The course consented to"),
            Param("status", "token", _status, "active | inactive (withdrawn)"),
            date_param("date", Consent.signed_at, "When it was signed"),
        )

    def updated_column(self) -> Any:
        return Consent.created_at

    def to_fhir(self, row: Any, meta: Meta) -> Resource:
        resource: Resource = {"resourceType": "Consent", "id": str(row.id), "meta": meta.as_fhir()}
        statements = [{"url": STATEMENT_EXT, "valueCode": str(item)} for item in row.items or []]
        put(resource, "extension", statements)
        put(resource, "identifier", identifier_list(meta))
        resource["status"] = "inactive" if row.withdrawn_at else "active"
        resource["scope"] = TREATMENT
        resource["category"] = [PATIENT_CONSENT]
        resource["patient"] = ref("Patient", row.patient_id)
        resource["dateTime"] = instant(row.signed_at)
        resource["performer"] = [ref("Patient", row.patient_id)]
        resource["policy"] = [{"uri": f"{codes.PROLO}/consent-text/{row.text_version}"}]
        period = {"start": instant(row.signed_at)}
        if row.withdrawn_at:
            period["end"] = instant(row.withdrawn_at)
        resource["provision"] = {
            "type": "permit",
            "period": period,
            "data": [{"meaning": "related", "reference": ref("CarePlan", row.course_id)}],
        }
        return resource


MAPPING = ConsentMapping()
