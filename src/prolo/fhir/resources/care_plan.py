"""CarePlan <-> ``treatment_course`` (a planned series of injection sessions).

See: https://hl7.org/fhir/R4/careplan.html

- ``status``: a planned or running course is ``active`` (its activity says
  ``not-started`` or ``in-progress``), a completed one ``completed``, a stopped one
  ``revoked`` with the stop reason as the activity's ``statusReason``
  (``.../CodeSystem/course-stop-reason``); ``intent`` is ``plan`` (a write with another
  intent FHIR allows is a 422: prolo keeps no proposals, orders or options);
- ``category``: the knowledge-base condition (``.../CodeSystem/knowledge-condition``);
- ``addresses``: the diagnosis (Condition); ``author``: the practitioner;
- ``period``: started and ended dates;
- ``activity[0].detail``: ``scheduledTiming.repeat`` holds the number of sessions
  (``count``) and the interval in weeks (``period``..``periodMax``, unit ``wk``);
  ``productCodeableConcept.text`` the injectate.

Writes go through :mod:`prolo.courses.service`: a create plans a course from the
condition's protocol (figures the CarePlan leaves out come from the protocol; those a
protocol does not publish must be given); an update edits the plan and moves the
status on (starting a course needs consent on file; stopping it needs a reason).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import ColumnElement, false, func

from prolo.courses.models import STOP_REASONS, TreatmentCourse
from prolo.fhir import codes
from prolo.fhir.errors import Unprocessable
from prolo.fhir.resources.base import (
    Context,
    Meta,
    Resource,
    TableMapping,
    check_code,
    check_patient_writable,
    check_supported,
    concept_text,
    first_coding,
    identifier_list,
    optional_reference,
    put,
    pydantic_problem,
    ref,
    referenced_id,
)
from prolo.fhir.resources.base import (
    named_fields as _named,
)
from prolo.fhir.search import Param, date_param, reference_param, split_token
from prolo.patients.models import Diagnosis

# CarePlan.status, a required binding in R4 (RequestStatus):
# https://hl7.org/fhir/R4/valueset-request-status.html
PLAN_STATUSES = (
    "draft",
    "active",
    "on-hold",
    "revoked",
    "completed",
    "entered-in-error",
    "unknown",
)
# CarePlan.intent, a required binding in R4:
# https://hl7.org/fhir/R4/valueset-care-plan-intent.html
INTENTS = ("proposal", "plan", "order", "option")
# CarePlan.activity.detail.status, a required binding in R4:
# https://hl7.org/fhir/R4/valueset-care-plan-activity-status.html
ACTIVITY_STATUSES = (
    "not-started",
    "scheduled",
    "in-progress",
    "on-hold",
    "completed",
    "cancelled",
    "stopped",
    "unknown",
    "entered-in-error",
)
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
# The activity statuses a course has a state for (with the plan's status, FROM_FHIR).
COURSE_ACTIVITY_STATUSES = tuple(dict.fromkeys(detail for _plan, detail in FROM_FHIR))


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
        """What the resource says, in prolo's terms (figures left out are None)."""
        from prolo.knowledge.loader import load_conditions

        # FHIR's own rules (codes outside their required value sets: 400) before prolo's
        # (422). prolo reads the first activity only.
        plan_status = resource.get("status")
        check_code(plan_status, PLAN_STATUSES, path="CarePlan.status")
        intent = resource.get("intent")
        check_code(intent, INTENTS, path="CarePlan.intent")
        activities = [
            (index, item)
            for index, item in enumerate(resource.get("activity") or [])
            if isinstance(item, dict)
        ]
        index, activity = activities[0] if activities else (0, {})
        detail = activity.get("detail") or {}
        detail_status = detail.get("status")
        status_path = f"CarePlan.activity[{index}].detail.status"
        check_code(detail_status, ACTIVITY_STATUSES, path=status_path)
        repeat = ((detail.get("scheduledTiming") or {}).get("repeat")) or {}
        unit_path = f"CarePlan.activity[{index}].detail.scheduledTiming.repeat.periodUnit"
        check_code(repeat.get("periodUnit"), codes.UNITS_OF_TIME, path=unit_path)
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
        figures: dict[str, Any] = {}
        for key, name in (
            ("count", "planned_sessions"),
            ("period", "interval_weeks_min"),
            ("periodMax", "interval_weeks_max"),
        ):
            value = repeat.get(key)
            if value is None:
                continue
            if not isinstance(value, int | float) or not float(value).is_integer():
                raise Unprocessable(
                    f"CarePlan.activity.detail.scheduledTiming.repeat.{key} must be whole",
                    expression=["CarePlan.activity.detail.scheduledTiming"],
                )
            figures[name] = int(value)
        check_supported(
            repeat.get("periodUnit"),
            ("wk",),
            path=unit_path,
            why="the session interval is in weeks (periodUnit wk)",
        )
        if "interval_weeks_min" in figures and "interval_weeks_max" not in figures:
            figures["interval_weeks_max"] = figures["interval_weeks_min"]
        check_supported(
            plan_status,
            ("active", "completed", "revoked"),
            path="CarePlan.status",
            why="a course is active (planned or running), completed or revoked (stopped)",
        )
        check_supported(
            intent,
            ("plan",),
            path="CarePlan.intent",
            why="a course is the treating clinic's plan (intent plan), read back as one",
        )
        check_supported(
            detail_status,
            COURSE_ACTIVITY_STATUSES,
            path=status_path,
            why="a course's sessions are not started (or scheduled), in progress, "
            "completed, or stopped (or cancelled); prolo has no pause or unknown state",
        )
        status = FROM_FHIR.get((str(plan_status), str(detail_status or "")))
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
        return {
            "patient_id": patient_id,
            "practitioner_id": practitioner_id,
            "diagnosis_id": diagnosis_id,
            "condition_id": condition_id,
            "status": status,
            "stop_reason": stop_reason,
            "injectate": concept_text(detail.get("productCodeableConcept")),
            **figures,
        }

    def create(self, ctx: Context, resource: Resource) -> Any:
        """Plan a course (through the courses service); figures left out come from the protocol."""
        from prolo.courses import service as courses
        from prolo.courses.schemas import CourseIn

        values = self._values(ctx, resource)
        if values["status"] != "planned":
            raise Unprocessable(
                "a new CarePlan starts planned (status active, activity not-started); it "
                "moves on with consent and sessions, or by an update",
                expression=["CarePlan.status"],
            )
        fields = ("patient_id", "condition_id", "diagnosis_id", "practitioner_id", *PLAN_FIELDS)
        try:
            data = CourseIn(**{k: values.get(k) for k in fields})
        except ValidationError as exc:
            raise pydantic_problem("CarePlan", exc, _FIELDS) from None
        with _named(_FIELDS):
            return courses.plan_course(session=ctx.session, principal=ctx.principal, data=data)

    def update(self, ctx: Context, row: Any, resource: Resource) -> Any:
        """Edit the plan and move the status on, through the courses service."""
        from prolo.courses import service as courses
        from prolo.courses.schemas import CourseStatusIn, CourseUpdate

        values = self._values(ctx, resource)
        for key, element in (
            ("patient_id", "subject"),
            ("condition_id", "category"),
            ("diagnosis_id", "addresses"),
        ):
            if values[key] != getattr(row, key) and not (
                key == "diagnosis_id" and values[key] is None
            ):
                raise Unprocessable(
                    f"CarePlan.{element} cannot change; plan a new course instead",
                    expression=[f"CarePlan.{element}"],
                )
        changes = {
            k: values[k]
            for k in ("practitioner_id", *PLAN_FIELDS)
            if values.get(k) is not None and values[k] != getattr(row, k)
        }
        with _named(_FIELDS):
            if changes:
                try:
                    edit = CourseUpdate(**changes)
                except ValidationError as exc:
                    raise pydantic_problem("CarePlan", exc, _FIELDS) from None
                courses.update_course(
                    session=ctx.session, principal=ctx.principal, course_id=row.id, data=edit
                )
            if values["status"] != row.status:
                try:
                    move = CourseStatusIn(
                        status=values["status"], stop_reason=values["stop_reason"]
                    )
                except ValidationError as exc:
                    raise pydantic_problem("CarePlan", exc, _FIELDS) from None
                courses.change_course_status(
                    session=ctx.session, principal=ctx.principal, course_id=row.id, data=move
                )
        return row


PLAN_FIELDS = ("planned_sessions", "interval_weeks_min", "interval_weeks_max", "injectate")
_FIELDS = {
    "patient_id": "CarePlan.subject",
    "condition_id": "CarePlan.category",
    "diagnosis_id": "CarePlan.addresses",
    "practitioner_id": "CarePlan.author",
    "planned_sessions": "CarePlan.activity.detail.scheduledTiming.repeat.count",
    "interval_weeks_min": "CarePlan.activity.detail.scheduledTiming.repeat.period",
    "interval_weeks_max": "CarePlan.activity.detail.scheduledTiming.repeat.periodMax",
    "injectate": "CarePlan.activity.detail.productCodeableConcept",
    "status": "CarePlan.status",
    "stop_reason": "CarePlan.activity.detail.statusReason",
}


MAPPING = CarePlanMapping()
