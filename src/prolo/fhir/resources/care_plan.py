"""CarePlan <-> ``treatment_course`` (a planned series of injection sessions).

See: https://hl7.org/fhir/R4/careplan.html

- ``status``: a planned or running course is ``active`` (its activity says
  ``not-started`` or ``in-progress``), a completed one ``completed``, a stopped one
  ``revoked`` with the stop reason as the activity's ``statusReason``
  (``.../CodeSystem/course-stop-reason``); ``intent`` is ``plan``;
- ``category``: the knowledge-base condition (``.../CodeSystem/knowledge-condition``);
- ``addresses``: the diagnosis (Condition); ``author``: the practitioner;
- ``period``: started and ended dates;
- ``activity[0].detail``: ``scheduledTiming.repeat`` holds the number of sessions
  (``count``) and the interval in weeks (``period``..``periodMax``, unit ``wk``);
  ``productCodeableConcept.text`` the injectate.

No course service exists yet (issue 5 is building it), so writes are made here,
checked against the same rules the table enforces, and audited.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, false, func

from prolo.clinic.models import Practitioner
from prolo.courses.models import STOP_REASONS, TreatmentCourse
from prolo.fhir import codes
from prolo.fhir.errors import Unprocessable
from prolo.fhir.resources.base import (
    Context,
    Meta,
    Resource,
    TableMapping,
    audit_write,
    check_patient_writable,
    concept_text,
    fhir_date,
    first_coding,
    identifier_list,
    optional_reference,
    put,
    ref,
    referenced_id,
)
from prolo.fhir.search import Param, date_param, reference_param, split_token
from prolo.patients.models import Diagnosis

# prolo status -> (CarePlan.status, activity.detail.status)
STATUS = {
    "planned": ("active", "not-started"),
    "active": ("active", "in-progress"),
    "completed": ("completed", "completed"),
    "stopped": ("revoked", "stopped"),
}
FROM_FHIR = {
    ("active", "not-started"): "planned",
    ("active", "scheduled"): "planned",
    ("active", "in-progress"): "active",
    ("completed", "completed"): "completed",
    ("revoked", "stopped"): "stopped",
    ("revoked", "cancelled"): "stopped",
}


def _status(value: str, modifier: str | None) -> ColumnElement[bool]:
    _system, code = split_token(value)
    stored = [k for k, (plan, _detail) in STATUS.items() if plan == code]
    clause = TreatmentCourse.status.in_(stored) if stored else false()
    return ~clause if modifier == "not" else clause


def _category(value: str, modifier: str | None) -> ColumnElement[bool]:
    system, code = split_token(value)
    if system not in (None, codes.PROLO_CONDITION) or not code:
        return false()
    return TreatmentCourse.condition_id == code


def _condition_name(condition_id: str) -> str | None:
    from prolo.knowledge.loader import load_conditions

    found = load_conditions().get(condition_id)
    return found.clinical_name if found else None


class CarePlanMapping(TableMapping):
    type_name = "CarePlan"
    model = TreatmentCourse
    documentation = "A prolotherapy treatment course: sessions, interval and injectate."

    def search_params(self) -> Sequence[Param]:
        return (
            reference_param("patient", TreatmentCourse.patient_id, "Patient", "Whose course"),
            reference_param("subject", TreatmentCourse.patient_id, "Patient", "Whose course"),
            reference_param(
                "condition", TreatmentCourse.diagnosis_id, "Condition", "The diagnosis treated"
            ),
            reference_param(
                "performer", TreatmentCourse.practitioner_id, "Practitioner", "The clinician"
            ),
            Param("status", "token", _status, "active | completed | revoked"),
            Param("category", "token", _category, "Knowledge-base condition id"),
            date_param(
                "date",
                TreatmentCourse.started_on,
                "When the course started (courses not started yet have no date)",
            ),
        )

    def updated_column(self) -> Any:
        return func.coalesce(TreatmentCourse.updated_at, TreatmentCourse.created_at)

    def to_fhir(self, row: Any, meta: Meta) -> Resource:
        plan_status, detail_status = STATUS[row.status]
        resource: Resource = {"resourceType": "CarePlan", "id": str(row.id), "meta": meta.as_fhir()}
        put(resource, "identifier", identifier_list(meta))
        resource["status"] = plan_status
        resource["intent"] = "plan"
        name = _condition_name(row.condition_id)
        resource["category"] = [codes.concept(codes.PROLO_CONDITION, row.condition_id, name)]
        resource["title"] = f"Prolotherapy course: {name or row.condition_id}"
        resource["subject"] = ref("Patient", row.patient_id)
        period: dict[str, str] = {}
        if row.started_on:
            period["start"] = row.started_on.isoformat()
        if row.ended_on:
            period["end"] = row.ended_on.isoformat()
        put(resource, "period", period)
        put(resource, "author", ref("Practitioner", row.practitioner_id))
        if row.diagnosis_id:
            resource["addresses"] = [ref("Condition", row.diagnosis_id)]
        sessions = row.planned_sessions
        low, high = row.interval_weeks_min, row.interval_weeks_max
        every = f"{low}" if low == high else f"{low} to {high}"
        detail: dict[str, Any] = {
            "status": detail_status,
            "description": f"{sessions} injection sessions, every {every} weeks",
            "scheduledTiming": {
                "repeat": {"count": sessions, "period": low, "periodMax": high, "periodUnit": "wk"}
            },
            "productCodeableConcept": {"text": row.injectate},
        }
        if row.stop_reason:
            detail["statusReason"] = codes.concept(codes.PROLO_STOP_REASON, row.stop_reason)
        resource["activity"] = [{"detail": detail}]
        return resource

    def _values(self, ctx: Context, resource: Resource) -> dict[str, Any]:
        from prolo.knowledge.loader import load_conditions

        patient_id = referenced_id(ctx, resource.get("subject"), "Patient", path="CarePlan.subject")
        check_patient_writable(ctx, patient_id, path="CarePlan.subject")
        diagnosis_id = None
        for item in resource.get("addresses") or []:
            diagnosis_id = referenced_id(ctx, item, "Condition", path="CarePlan.addresses")
            break
        diagnosis = ctx.session.get(Diagnosis, diagnosis_id) if diagnosis_id else None
        if diagnosis_id is not None and (diagnosis is None or diagnosis.patient_id != patient_id):
            raise Unprocessable(
                "CarePlan.addresses must be a Condition of the same patient",
                expression=["CarePlan.addresses"],
            )
        condition_id = None
        for concept in resource.get("category") or []:
            found = first_coding(concept, codes.PROLO_CONDITION)
            if found:
                condition_id = str(found["code"])
        condition_id = condition_id or (diagnosis.condition_id if diagnosis else None)
        if condition_id is None or condition_id not in load_conditions():
            raise Unprocessable(
                "CarePlan.category needs a knowledge-base condition "
                f"({codes.PROLO_CONDITION}), or addresses a Condition that matches one",
                expression=["CarePlan.category"],
            )
        practitioner_id = optional_reference(ctx, resource, "author", "Practitioner")
        if practitioner_id is not None:
            practitioner = ctx.session.get(Practitioner, practitioner_id)
            if practitioner is None or practitioner.clinic_id != ctx.clinic_id:
                raise Unprocessable(
                    "CarePlan.author refers to a Practitioner that does not exist here",
                    expression=["CarePlan.author"],
                )
        activities = [a for a in resource.get("activity") or [] if isinstance(a, dict)]
        detail = (activities[0].get("detail") if activities else None) or {}
        repeat = ((detail.get("scheduledTiming") or {}).get("repeat")) or {}
        sessions: Any = repeat.get("count")
        low: Any = repeat.get("period")
        high: Any = repeat.get("periodMax", low)
        if repeat.get("periodUnit") != "wk" or not all(
            isinstance(v, int | float) and float(v).is_integer() for v in (sessions, low, high)
        ):
            raise Unprocessable(
                "CarePlan.activity.detail.scheduledTiming.repeat needs count, period and "
                "periodMax in whole weeks (periodUnit wk)",
                expression=["CarePlan.activity.detail.scheduledTiming"],
            )
        if not 1 <= int(sessions) <= 20 or int(low) < 1 or int(high) < int(low):
            raise Unprocessable(
                "a course has 1 to 20 sessions and an interval of at least one week",
                expression=["CarePlan.activity.detail.scheduledTiming"],
            )
        injectate = concept_text(detail.get("productCodeableConcept"))
        if not injectate:
            raise Unprocessable(
                "CarePlan.activity.detail.productCodeableConcept names the injectate",
                expression=["CarePlan.activity.detail.productCodeableConcept"],
            )
        status = FROM_FHIR.get((str(resource.get("status")), str(detail.get("status"))))
        if status is None:
            raise Unprocessable(
                "CarePlan.status with activity.detail.status has no counterpart in prolo "
                "(active/not-started, active/in-progress, completed/completed, revoked/stopped)",
                expression=["CarePlan.status"],
            )
        stop_reason = None
        found_reason = first_coding(detail.get("statusReason"), codes.PROLO_STOP_REASON)
        if found_reason is not None:
            stop_reason = str(found_reason["code"])
        if (status == "stopped") != (stop_reason is not None) or (
            stop_reason is not None and stop_reason not in STOP_REASONS
        ):
            raise Unprocessable(
                "a revoked CarePlan needs activity.detail.statusReason from "
                f"{codes.PROLO_STOP_REASON} ({', '.join(STOP_REASONS)}), and only it has one",
                expression=["CarePlan.activity.detail.statusReason"],
            )
        period = resource.get("period") or {}
        return {
            "patient_id": patient_id,
            "practitioner_id": practitioner_id,
            "diagnosis_id": diagnosis_id,
            "condition_id": condition_id,
            "status": status,
            "stop_reason": stop_reason,
            "planned_sessions": int(sessions),
            "interval_weeks_min": int(low),
            "interval_weeks_max": int(high),
            "injectate": injectate[:200],
            "started_on": fhir_date(period.get("start"), path="CarePlan.period.start"),
            "ended_on": fhir_date(period.get("end"), path="CarePlan.period.end"),
        }

    def create(self, ctx: Context, resource: Resource) -> Any:
        values = self._values(ctx, resource)
        row = TreatmentCourse(clinic_id=ctx.clinic_id, **values)
        ctx.session.add(row)
        ctx.session.flush()
        audit_write(
            ctx,
            action="C",
            event="course.create",
            entity_type="CarePlan",
            entity_id=row.id,
            patient_id=row.patient_id,
        )
        return row

    def update(self, ctx: Context, row: Any, resource: Resource) -> Any:
        values = self._values(ctx, resource)
        if values["patient_id"] != row.patient_id:
            raise Unprocessable(
                "CarePlan.subject cannot move to another patient", expression=["CarePlan.subject"]
            )
        for key, value in values.items():
            setattr(row, key, value)
        audit_write(
            ctx,
            action="U",
            event="course.update",
            entity_type="CarePlan",
            entity_id=row.id,
            patient_id=row.patient_id,
        )
        return row


MAPPING = CarePlanMapping()
