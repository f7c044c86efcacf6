"""Appointment <-> ``appointment`` (the clinic calendar).

See: https://hl7.org/fhir/R4/appointment.html

``status`` is prolo's status (``booked | arrived | fulfilled | cancelled | noshow``
are FHIR values); ``serviceType`` the kind of visit (``.../CodeSystem/appointment-kind``:
consultation, injection, follow_up); ``start``/``end``; ``participant`` the patient,
the practitioner and the room (Location), each ``accepted``;
``supportingInformation`` the treatment course (CarePlan).

Writes go through :mod:`prolo.scheduling.service`, which keeps a practitioner, a room
and a patient from ever being double-booked (a clash is a 409 naming the other
appointment). A create books (status ``booked``; the patient, practitioner and room
are the participants, ``serviceType`` the kind, ``end`` optional). An update moves a
booked appointment (new ``start``/``end``, practitioner or room) or changes its status:
``cancelled`` (``cancelationReason`` from ``.../CodeSystem/appointment-cancel-reason``,
else "patient_request"), ``noshow``, ``arrived``, ``fulfilled``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import ColumnElement, false, func

from prolo.fhir import codes
from prolo.fhir.errors import Unprocessable
from prolo.fhir.resources.base import (
    Context,
    Meta,
    Resource,
    TableMapping,
    check_code,
    check_supported,
    fhir_datetime,
    first_coding,
    identifier_list,
    instant,
    named_fields,
    put,
    pydantic_problem,
    ref,
    referenced_id,
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

# Appointment.status, a required binding in R4:
# https://hl7.org/fhir/R4/valueset-appointmentstatus.html
FHIR_STATUSES = (
    "proposed",
    "pending",
    "booked",
    "arrived",
    "fulfilled",
    "cancelled",
    "noshow",
    "entered-in-error",
    "checked-in",
    "waitlist",
)
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
        if row.cancel_reason:
            resource["cancelationReason"] = codes.concept(CANCEL_SYSTEM, row.cancel_reason)
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

    def _values(self, ctx: Context, resource: Resource) -> dict[str, Any]:
        # FHIR's own rules (a code outside its required value set, a malformed
        # instant: 400) before prolo's (422).
        status = resource.get("status")
        check_code(status, FHIR_STATUSES, path="Appointment.status")
        starts_at = fhir_datetime(resource.get("start"), path="Appointment.start")
        ends_at = fhir_datetime(resource.get("end"), path="Appointment.end")
        check_supported(
            status,
            APPOINTMENT_STATUSES,
            path="Appointment.status",
            why=f"a prolo appointment is {' | '.join(APPOINTMENT_STATUSES)}",
        )
        actors: dict[str, int] = {}
        for index, participant in enumerate(resource.get("participant") or []):
            actor = (participant or {}).get("actor")
            text = (actor or {}).get("reference", "") if isinstance(actor, dict) else ""
            kind = ctx.resolved.get(text, text).split("/")[-2:-1]
            if kind and kind[0] in ("Patient", "Practitioner", "Location"):
                path = f"Appointment.participant[{index}].actor"
                actors[kind[0]] = referenced_id(ctx, actor, kind[0], path=path)
        for needed in ("Patient", "Practitioner", "Location"):
            if needed not in actors:
                raise Unprocessable(
                    f"Appointment.participant needs a {needed} (the room is a Location)",
                    expression=["Appointment.participant"],
                )
        kinds = [
            c.get("code")
            for concept in resource.get("serviceType") or []
            for c in (concept or {}).get("coding") or []
            if isinstance(c, dict) and c.get("system") == codes.PROLO_APPOINTMENT_KIND
        ]
        if not kinds or kinds[0] not in KINDS:
            raise Unprocessable(
                f"Appointment.serviceType needs a kind from {codes.PROLO_APPOINTMENT_KIND} "
                f"({', '.join(KINDS)})",
                expression=["Appointment.serviceType"],
            )
        course_id = None
        for item in resource.get("supportingInformation") or []:
            target = ctx.resolved.get(
                (item or {}).get("reference", ""), (item or {}).get("reference", "")
            )
            if isinstance(target, str) and "CarePlan/" in target:
                course_id = referenced_id(
                    ctx, item, "CarePlan", path="Appointment.supportingInformation"
                )
        reason = first_coding(resource.get("cancelationReason"), CANCEL_SYSTEM)
        return {
            "patient_id": actors["Patient"],
            "practitioner_id": actors["Practitioner"],
            "room_id": actors["Location"],
            "kind": kinds[0],
            "starts_at": starts_at,
            "ends_at": ends_at,
            "course_id": course_id,
            "status": status,
            "cancel_reason": str(reason["code"]) if reason else None,
        }

    def create(self, ctx: Context, resource: Resource) -> Any:
        """Book through the scheduling service.

        On SQLite the FHIR request began with the write lock already (``routes``), which
        is what the scheduling service's check-then-write needs.
        """
        from prolo.scheduling import service as scheduling
        from prolo.scheduling.schemas import AppointmentIn

        values = self._values(ctx, resource)
        if values["status"] != "booked":
            raise Unprocessable(
                "a new Appointment is booked (status booked)", expression=["Appointment.status"]
            )
        if values["starts_at"] is None:
            raise Unprocessable("Appointment.start is required", expression=["Appointment.start"])
        fields = (
            "patient_id",
            "practitioner_id",
            "room_id",
            "kind",
            "starts_at",
            "ends_at",
            "course_id",
        )
        try:
            data = AppointmentIn(**{k: values[k] for k in fields})
        except ValidationError as exc:
            raise pydantic_problem("Appointment", exc, _FIELDS) from None
        with named_fields(_FIELDS):
            return scheduling.book_appointment(
                session=ctx.session, principal=ctx.principal, data=data
            )

    def update(self, ctx: Context, row: Any, resource: Resource) -> Any:
        """Move, cancel or mark the visit through the scheduling service."""
        from prolo.scheduling import service as scheduling
        from prolo.scheduling.schemas import RescheduleIn

        values = self._values(ctx, resource)
        if values["patient_id"] != row.patient_id or values["kind"] != row.kind:
            raise Unprocessable(
                "an Appointment keeps its patient and kind; book a new one instead",
                expression=["Appointment.participant"],
            )
        status = values["status"]
        common = {"session": ctx.session, "principal": ctx.principal, "appointment_id": row.id}
        with named_fields(_FIELDS):
            moved = (
                values["starts_at"] != row.starts_at
                or (values["ends_at"] is not None and values["ends_at"] != row.ends_at)
                or values["practitioner_id"] != row.practitioner_id
                or values["room_id"] != row.room_id
            )
            if moved:
                if status != "booked" or row.status != "booked":
                    raise Unprocessable(
                        "only a booked Appointment can move", expression=["Appointment.start"]
                    )
                try:
                    data = RescheduleIn(
                        starts_at=values["starts_at"],
                        ends_at=values["ends_at"],
                        practitioner_id=values["practitioner_id"],
                        room_id=values["room_id"],
                    )
                except ValidationError as exc:
                    raise pydantic_problem("Appointment", exc, _FIELDS) from None
                scheduling.reschedule_appointment(data=data, **common)
            if status == row.status:
                return row
            if status == "cancelled":
                reason = values["cancel_reason"] or "patient_request"
                scheduling.cancel_appointment(reason=reason, **common)
            elif status == "noshow":
                scheduling.mark_no_show(**common)
            elif status == "arrived":
                scheduling.mark_arrived(**common)
            elif status == "fulfilled":
                scheduling.mark_fulfilled(**common)
            else:
                raise Unprocessable(
                    f"an Appointment cannot go from {row.status} to {status}",
                    expression=["Appointment.status"],
                )
        return row


CANCEL_SYSTEM = f"{codes.PROLO}/CodeSystem/appointment-cancel-reason"
_FIELDS = {
    "patient_id": "Appointment.participant",
    "practitioner_id": "Appointment.participant",
    "room_id": "Appointment.participant",
    "kind": "Appointment.serviceType",
    "starts_at": "Appointment.start",
    "ends_at": "Appointment.end",
    "course_id": "Appointment.supportingInformation",
    "session_number": "Appointment.supportingInformation",
    "to": "Appointment.end",
}

MAPPING = AppointmentMapping()
