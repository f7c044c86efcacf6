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

Read and search for admins of the clinic. The log is append-only: update (and delete)
are 405. A **create** lets an outside system (the clinic's EHR, with an admin's token
and the ``write`` scope) report an event into the same hash-chained log through
:func:`prolo.security.audit.record`, mapped from the fields the read side emits
(IHE BALP-shaped, https://profiles.ihe.net/ITI/BALP/):

- ``action`` (required here) and ``outcome`` (default ``0``) as they are (FHIR codes:
  https://hl7.org/fhir/R4/valueset-audit-event-action.html,
  https://hl7.org/fhir/R4/valueset-audit-event-outcome.html);
- the event name is ``external.`` and the first ``subtype`` code (else the ``type``
  code), so an outside event never passes for one of prolo's own;
- ``entity``: a ``what`` Patient of this clinic is the patient (a 422 otherwise); the
  first other ``what`` reference ``Type/id`` is the record acted on;
- who reported it is the token's user (the entry's agent when read back, with the
  request's address); the event's own ``recorded`` time, ``type``, requestor agent and
  ``source`` observer (identifiers or displays, never health information) go into the
  entry's detail. The entry's own time is when prolo appended it.
- Never taken from the client: the entry's id, time, chain hash and lane (the chain
  sets them); ``outcomeDesc`` (free text that could hold health information, which the
  log must not).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, false, func, select

from prolo.fhir import codes
from prolo.fhir.errors import Unprocessable
from prolo.fhir.resources.base import (
    CREATE,
    READ,
    SEARCH,
    Context,
    Ident,
    Meta,
    Resource,
    TableMapping,
    check_code,
    check_patient_writable,
    instant,
    referenced_id,
)
from prolo.fhir.search import Param, code_param, date_param, reference_param, split_token
from prolo.security import audit
from prolo.security.models import AUDIT_ACTIONS, AUDIT_OUTCOMES, AuditEvent

DCM = "http://dicom.nema.org/resources/ontology/DCM"
REST = codes.coding(codes.AUDIT_EVENT_TYPE, "rest", "RESTful Operation")
LOGIN = codes.coding(DCM, "110114", "User Authentication")
PATIENT_RECORD = codes.coding(DCM, "110110", "Patient Record")
APPLICATION = codes.coding(DCM, "110100", "Application Activity")
# AuditEvent.outcome, a required binding in R4:
# https://hl7.org/fhir/R4/valueset-audit-event-outcome.html. The log keeps every one
# (security.models.AUDIT_OUTCOMES, the column's allowed values, is the same list).
OUTCOMES = ("0", "4", "8", "12")
# AuditEvent.action, a required binding in R4:
# https://hl7.org/fhir/R4/valueset-audit-event-action.html. The log keeps every one
# (security.models.AUDIT_ACTIONS, the column's allowed values, is the same list).
ACTIONS = ("C", "R", "U", "D", "E")
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
    interactions = frozenset({READ, SEARCH, CREATE})
    readers = frozenset({"admin"})
    writers = frozenset({"admin"})
    in_patient_compartment = False
    documentation = (
        "An entry of the append-only, hash-chained access log (admins only); a create "
        "appends an event an outside system reports."
    )
    refusal = "the audit log is append-only (POST a new AuditEvent to report an event)"
    conditional_refusal = (
        "an R4 AuditEvent has no identifier to find an earlier report by, and each POST "
        "appends one event to the append-only log"
    )

    @property
    def keeps_identifiers(self) -> bool:
        return False  # R4 AuditEvent has no identifier: searches need not look any up

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

    def create(self, ctx: Context, resource: Resource) -> Any:
        """Append the reported event to the log; the entry written."""
        # FHIR's own rules (codes outside their required value sets: 400) before prolo's (422).
        outcome = resource.get("outcome", "0")
        check_code(outcome, OUTCOMES, path="AuditEvent.outcome")
        action = resource.get("action")
        check_code(action, ACTIONS, path="AuditEvent.action")
        if action is None:  # 0..1 in FHIR; the log records what was done
            raise Unprocessable(
                f"AuditEvent.action is required by prolo ({', '.join(AUDIT_ACTIONS)})",
                expression=["AuditEvent.action"],
            )
        kind = resource.get("type") or {}
        subtypes = [s for s in resource.get("subtype") or [] if isinstance(s, dict)]
        name = str((subtypes[0] if subtypes else kind).get("code") or "event")
        event = f"external.{name}"[:60]
        patient_id, entity_type, entity_id = self._entities(ctx, resource)
        entry = audit.record(
            ctx.session,
            ctx.principal.actor,
            action=action,
            event=event,
            entity_type=entity_type,
            entity_id=entity_id,
            patient_id=patient_id,
            outcome=outcome,
            detail=_reported(resource)[:300],
        )
        # The entry gets its id when the transaction's entries are written, which any
        # statement reading the log does first (a transaction reads its own entries);
        # ids grow within the lane this transaction holds, so the newest match is it.
        newest = ctx.session.scalar(
            select(func.max(AuditEvent.id)).where(
                AuditEvent.clinic_id == ctx.principal.actor.clinic_id,
                AuditEvent.user_id == ctx.principal.actor.user_id,
                AuditEvent.event == event,
            )
        )
        return ctx.session.get(AuditEvent, entry.id or newest)

    def _entities(self, ctx: Context, resource: Resource) -> tuple[int | None, str, str | None]:
        """(patient id, entity type, entity id) from ``entity[].what``."""
        patient_id: int | None = None
        entity_type, entity_id = "External", None
        for index, entity in enumerate(resource.get("entity") or []):
            what = entity.get("what") if isinstance(entity, dict) else None
            text = what.get("reference") if isinstance(what, dict) else None
            if not isinstance(text, str):
                continue
            path = f"AuditEvent.entity[{index}].what"
            target = ctx.resolved.get(text, text).rstrip("/").split("/")[-2:]
            if target[0] == "Patient" and patient_id is None:
                patient_id = referenced_id(ctx, what, "Patient", path=path)
                check_patient_writable(ctx, patient_id, path=path)
            elif entity_id is None and len(target) == 2 and target[0].isalpha():
                entity_type, entity_id = target[0][:40], target[1][:64]
        if entity_id is None and patient_id is not None:
            entity_type, entity_id = "Patient", str(patient_id)
        return patient_id, entity_type, entity_id


def _reported(resource: Resource) -> str:
    """What the entry's detail keeps of the report: its type, time, agent and source."""

    def named(item: Any) -> str | None:
        if not isinstance(item, dict):
            return None
        ident = item.get("identifier")
        if isinstance(ident, dict) and ident.get("value"):
            return f"{ident.get('system', '')}|{ident['value']}"
        for key in ("reference", "display"):
            if isinstance(item.get(key), str):
                return str(item[key])
        return None

    kind = resource.get("type") or {}
    agents = [a for a in resource.get("agent") or [] if isinstance(a, dict)]
    requestor = next((a for a in agents if a.get("requestor")), agents[0] if agents else {})
    parts = [
        f"reported {kind.get('system', '')}|{kind.get('code', '')}",
        f"recorded {resource.get('recorded')}",
        f"agent {named(requestor.get('who')) or '?'}",
        f"source {named((resource.get('source') or {}).get('observer')) or '?'}",
    ]
    return "; ".join(parts)


MAPPING = AuditEventMapping()
