"""AuditEvent <- ``audit_event`` (the hash-chained access log).

See: https://hl7.org/fhir/R4/auditevent.html

- ``type``: ``rest`` (audit-event-type) for FHIR interactions, else a DICOM event
  (``110114`` User Authentication for logins, ``110110`` Patient Record when a patient
  is involved, ``110100`` Application Activity otherwise); ``subtype`` prolo's own
  event name (``.../CodeSystem/audit-event``, e.g. ``patient.read``);
- ``action``, ``recorded``, ``outcome`` as stored (they are FHIR codes already);
  ``outcomeDesc`` the entry's detail (never health information);
- ``agent``: the user (``.../sid/user``) with their role, requestor, and the network
  address; ``source``: prolo as an application server;
- ``entity``: the patient (Patient reference) and the record acted on.

Read and search only, for admins of the clinic: the log is append-only and written by
the server alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, false

from prolo.fhir import codes
from prolo.fhir.resources.base import (
    READ,
    SEARCH,
    Ident,
    Meta,
    Resource,
    TableMapping,
    instant,
)
from prolo.fhir.search import Param, code_param, date_param, reference_param, split_token
from prolo.security.models import AUDIT_ACTIONS, AUDIT_OUTCOMES, AuditEvent

DCM = "http://dicom.nema.org/resources/ontology/DCM"
REST = codes.coding(codes.AUDIT_EVENT_TYPE, "rest", "RESTful Operation")
LOGIN = codes.coding(DCM, "110114", "User Authentication")
PATIENT_RECORD = codes.coding(DCM, "110110", "Patient Record")
APPLICATION = codes.coding(DCM, "110100", "Application Activity")
SERVER = codes.coding(codes.AUDIT_SOURCE_TYPE, "4", "Application Server")
PERSON = codes.coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "1", "Person")
SYSTEM_OBJECT = codes.coding(
    "http://terminology.hl7.org/CodeSystem/audit-entity-type", "2", "System Object"
)
PATIENT_ROLE = codes.coding("http://terminology.hl7.org/CodeSystem/object-role", "1", "Patient")
# Entity types that are resource types this server serves under the same name.
FHIR_ENTITIES = frozenset(
    {
        "Patient",
        "Practitioner",
        "Location",
        "Condition",
        "AllergyIntolerance",
        "MedicationStatement",
        "CarePlan",
        "Appointment",
        "Procedure",
        "QuestionnaireResponse",
        "Observation",
        "Consent",
    }
)


def event_type(event: str, patient_id: int | None) -> dict[str, str]:
    if event.startswith("fhir."):
        return REST
    if event == "login":
        return LOGIN
    if patient_id is not None:
        return PATIENT_RECORD
    return APPLICATION


def _subtype(value: str, modifier: str | None) -> ColumnElement[bool]:
    system, code = split_token(value)
    if system not in (None, codes.PROLO_AUDIT_EVENT) or not code:
        return false()
    return AuditEvent.event == code


class AuditEventMapping(TableMapping):
    type_name = "AuditEvent"
    model = AuditEvent
    interactions = frozenset({READ, SEARCH})
    readers = frozenset({"admin"})
    writers = frozenset[str]()
    in_patient_compartment = False
    documentation = "An entry of the append-only, hash-chained access log (admins only)."

    def search_params(self) -> Sequence[Param]:
        return (
            date_param("date", AuditEvent.recorded_at, "When the event was recorded"),
            reference_param("patient", AuditEvent.patient_id, "Patient", "The patient involved"),
            code_param(
                "action",
                AuditEvent.action,
                " | ".join(AUDIT_ACTIONS),
                system="http://hl7.org/fhir/audit-event-action",
            ),
            code_param(
                "outcome",
                AuditEvent.outcome,
                " | ".join(AUDIT_OUTCOMES),
                system="http://hl7.org/fhir/audit-event-outcome",
            ),
            Param("subtype", "token", _subtype, "prolo's event name, e.g. patient.read"),
        )

    def updated_column(self) -> Any:
        return AuditEvent.recorded_at

    def clinic_clause(self, clinic_id: Ident) -> ColumnElement[bool]:
        return AuditEvent.clinic_id == clinic_id

    def patient_of(self, row: Any) -> int | None:
        return None  # reading the log is not a read of the patient's record

    def to_fhir(self, row: Any, meta: Meta) -> Resource:
        who: dict[str, Any] = (
            {"identifier": {"system": codes.PROLO_USER, "value": str(row.user_id)}}
            if row.user_id is not None
            else {"display": "anonymous"}
        )
        if row.user_role and row.user_id is not None:
            who["display"] = row.user_role
        agent: dict[str, Any] = {"who": who, "requestor": True}
        if row.source_ip:
            agent["network"] = {"address": row.source_ip, "type": "2"}
        resource: Resource = {
            "resourceType": "AuditEvent",
            "id": str(row.id),
            "meta": meta.as_fhir(),
            "type": event_type(row.event, row.patient_id),
            "subtype": [codes.coding(codes.PROLO_AUDIT_EVENT, row.event)],
            "action": row.action,
            "recorded": instant(row.recorded_at),
            "outcome": row.outcome,
            "agent": [agent],
            "source": {"observer": {"display": "prolo"}, "type": [SERVER]},
        }
        if row.detail:
            resource["outcomeDesc"] = row.detail
        entities: list[dict[str, Any]] = []
        if row.patient_id is not None:
            entities.append(
                {
                    "what": {"reference": f"Patient/{row.patient_id}"},
                    "type": PERSON,
                    "role": PATIENT_ROLE,
                }
            )
        same_as_patient = row.entity_type == "Patient" and row.entity_id == str(row.patient_id)
        if row.entity_id and not same_as_patient:
            entity: dict[str, Any] = {"type": SYSTEM_OBJECT}
            if row.entity_type in FHIR_ENTITIES and row.entity_id.isdigit():
                entity["what"] = {"reference": f"{row.entity_type}/{row.entity_id}"}
            else:
                entity["name"] = f"{row.entity_type}/{row.entity_id}"
            entities.append(entity)
        elif row.entity_type and not row.entity_id:
            entities.append({"type": SYSTEM_OBJECT, "name": row.entity_type})
        if entities:
            resource["entity"] = entities
        return resource


MAPPING = AuditEventMapping()
