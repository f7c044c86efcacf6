"""Appointment <-> ``appointment`` (the clinic calendar).

See: https://hl7.org/fhir/R4/appointment.html

``status`` is prolo's status (``booked | arrived | fulfilled | cancelled | noshow``
are FHIR values); ``serviceType`` the kind of visit (``.../CodeSystem/appointment-kind``:
consultation, injection, follow_up); ``start``/``end``; ``participant`` the patient,
the practitioner and the room (Location), each ``accepted``;
``supportingInformation`` the treatment course (CarePlan).

Read and search only: booking must go through the scheduling service, which keeps a
practitioner, a room and a patient from being double-booked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, false, func

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
from prolo.fhir.search import (
    Param,
    code_param,
    date_param,
    reference_id,
    reference_param,
    split_token,
)
from prolo.scheduling.models import APPOINTMENT_STATUSES, Appointment

KINDS = {
    "consultation": "Consultation",
    "injection": "Injection session",
    "follow_up": "Follow-up",
}


def _actor(value: str, modifier: str | None) -> ColumnElement[bool]:
    text = value.strip().rstrip("/")
    parts = text.split("/")
    if len(parts) < 2:
        return false()
    column = {
        "Patient": Appointment.patient_id,
        "Practitioner": Appointment.practitioner_id,
        "Location": Appointment.room_id,
    }.get(parts[-2])
    if column is None:
        return false()
    return column == reference_id(text, parts[-2], name="actor")


def _service_type(value: str, modifier: str | None) -> ColumnElement[bool]:
    system, code = split_token(value)
    if system not in (None, codes.PROLO_APPOINTMENT_KIND) or code not in KINDS:
        return false()
    return Appointment.kind == code


class AppointmentMapping(TableMapping):
    type_name = "Appointment"
    model = Appointment
    interactions = frozenset({READ, SEARCH})
    readers = frozenset({"admin", "clinician", "front_desk", "patient"})
    writers = frozenset({"admin", "clinician", "front_desk"})
    documentation = "A visit: patient, practitioner and room for a time span."

    def search_params(self) -> Sequence[Param]:
        return (
            reference_param("patient", Appointment.patient_id, "Patient", "The patient"),
            reference_param(
                "practitioner", Appointment.practitioner_id, "Practitioner", "The practitioner"
            ),
            reference_param("location", Appointment.room_id, "Location", "The room"),
            reference_param(
                "supporting-info", Appointment.course_id, "CarePlan", "The treatment course"
            ),
            Param(
                "actor", "reference", _actor, "Any participant (Patient, Practitioner, Location)"
            ),
            date_param("date", Appointment.starts_at, "When the appointment starts"),
            code_param(
                "status",
                Appointment.status,
                " | ".join(APPOINTMENT_STATUSES),
                system="http://hl7.org/fhir/appointmentstatus",
            ),
            Param("service-type", "token", _service_type, "consultation | injection | follow_up"),
        )

    def updated_column(self) -> Any:
        return func.coalesce(Appointment.updated_at, Appointment.created_at)

    def to_fhir(self, row: Any, meta: Meta) -> Resource:
        resource: Resource = {
            "resourceType": "Appointment",
            "id": str(row.id),
            "meta": meta.as_fhir(),
        }
        put(resource, "identifier", identifier_list(meta))
        resource["status"] = row.status
        resource["serviceType"] = [
            codes.concept(codes.PROLO_APPOINTMENT_KIND, row.kind, KINDS.get(row.kind))
        ]
        resource["start"] = instant(row.starts_at)
        resource["end"] = instant(row.ends_at)
        resource["minutesDuration"] = int((row.ends_at - row.starts_at).total_seconds() // 60)
        resource["created"] = instant(row.created_at)
        if row.course_id:
            resource["supportingInformation"] = [ref("CarePlan", row.course_id)]
        participants = [
            {"actor": ref("Patient", row.patient_id), "status": "accepted"},
            {"actor": ref("Practitioner", row.practitioner_id), "status": "accepted"},
        ]
        if row.room_id:
            participants.append({"actor": ref("Location", row.room_id), "status": "accepted"})
        resource["participant"] = participants
        return resource


MAPPING = AppointmentMapping()
