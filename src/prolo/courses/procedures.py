"""Procedure records: document an injection session, sign it, correct it by amendment.

A record starts as a draft that the clinician can save as often as needed. Signing fixes
it: the signer must be the practitioner who performed the session, an informed consent
must be on file, and the pre-procedure re-check must allow injection. A signed record
never changes, which the database enforces too (triggers refuse UPDATE and DELETE of a
signed row on SQLite and PostgreSQL); a correction is an amendment, a new record pointing
at the one it corrects, which stays as it was. Each record is amended at most once, so
the corrections of a session form one chain and the newest signed link is current.

A record documents an injection session that took place, so its appointment must have
been held: a cancelled visit or a no-show is refused (:class:`SessionNotHeld`, 409, naming
the appointment and its status) when the record is created, edited or signed. A visit
still ``booked`` whose start is in the future is refused too, as scheduling refuses to
mark it done or a no-show before it starts: nothing has happened yet to document. A
``booked`` visit whose start has passed is accepted (the front desk may not have checked
the patient in, and the clinician documents during or after the visit), as is an
``arrived`` one at any time (checked in early) and a ``fulfilled`` one. Amendments are
not re-checked: they correct a record signed for a session that was held then, and
refusing them would leave a signed record uncorrectable.

The pre-procedure re-check runs the screening engine (:func:`prolo.screening.rules.screen`)
on the clinician's answers and the patient's chart (allergies to the injectate's own
components are read from the chart and cannot be answered away), and stores the decision
and every reason with the record. Every read and write is audited in the caller's
transaction; services never commit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from prolo.clinic.models import Practitioner
from prolo.courses import service as courses
from prolo.courses.models import Procedure, TreatmentCourse
from prolo.courses.procedure_schemas import (
    AmendmentIn,
    PreCheckOut,
    ProcedureIn,
    ProcedureOut,
)
from prolo.db import utcnow
from prolo.errors import AccessDenied, Conflict, Forbidden, ValidationFailed
from prolo.knowledge.safety import load_safety_rules
from prolo.knowledge.schema import BodyRegion, ComplaintKey
from prolo.patients import service as patients
from prolo.patients.models import Patient
from prolo.scheduling.models import Appointment
from prolo.screening.profile import ScreeningInputError, ScreeningProfile
from prolo.screening.rules import screen
from prolo.security import audit
from prolo.security.principal import CLINICAL, Principal

SITES_FILE = Path(__file__).parent / "data" / "injection_sites.yaml"
RECORD_KEEPERS = CLINICAL  # clinicians and admins; front desk never sees clinical notes
BLOCKING_DECISIONS = ("not_candidate", "refer")
# The complaint region the screening engine checks the record's body region as.
REGION_COMPLAINT: dict[str, ComplaintKey | None] = {
    "neck": "neck",
    "thoracic_spine": "upper_back",
    "lumbar_spine": "lower_back",
    "pelvis": "pelvis_buttock",
    "shoulder": "shoulder",
    "elbow": "elbow",
    "wrist_hand": "wrist_hand",
    "hip": "hip",
    "knee": "knee",
    "ankle_foot": "ankle_foot",
    "jaw": "jaw",
    "widespread": "widespread",
    "multiple": None,
}


# --- the injection site list -------------------------------------------------------------


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteCitation(_Data):
    condition: str = Field(min_length=1)
    study_id: str = Field(min_length=1)
    locator: str = Field(min_length=10)


class InjectionSite(_Data):
    id: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")
    label: str = Field(min_length=3)
    cited_in: tuple[SiteCitation, ...] = ()


class SiteRegion(_Data):
    label: str
    sites: tuple[InjectionSite, ...] = Field(min_length=1)


class SiteCatalog(_Data):
    version: int
    regions: dict[BodyRegion, SiteRegion]

    @model_validator(mode="after")
    def _complete(self) -> SiteCatalog:
        from typing import get_args

        wanted = set(get_args(BodyRegion)) - {"multiple"}
        missing = sorted(wanted - set(self.regions))
        if missing:
            raise ValueError(f"no sites for body region(s) {missing}")
        if "multiple" in self.regions:
            raise ValueError("'multiple' takes every region's sites; do not list it")
        ids = [s.id for r in self.regions.values() for s in r.sites]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"site ids repeat: {repeated}")
        return self

    def sites_for(self, region: str) -> tuple[InjectionSite, ...]:
        """The sites a record for ``region`` may use (every site for ``multiple``)."""
        if region == "multiple":
            return tuple(s for r in self.regions.values() for s in r.sites)
        found = self.regions.get(region)  # type: ignore[call-overload]
        return found.sites if found is not None else ()

    def site(self, site_id: str) -> InjectionSite | None:
        for region in self.regions.values():
            for site in region.sites:
                if site.id == site_id:
                    return site
        return None


@cache
def load_injection_sites(path: Path = SITES_FILE) -> SiteCatalog:
    """The site list, validated (ValueError naming the problem when the file is wrong)."""
    with path.open(encoding="utf-8") as fh:
        return SiteCatalog.model_validate(yaml.safe_load(fh))


# --- aftercare advice, with its source ---------------------------------------------------


@dataclass(frozen=True)
class AftercareAdvice:
    """One item of the aftercare talk, worded as its source words it."""

    id: str
    label: str
    text: str
    source: str
    url: str
    locator: str
    grade: str


_UW_8082 = (
    "UW Health (University of Wisconsin Hospitals and Clinics). "
    "Health Facts for You 8082: What is prolotherapy?"
)
_UW_URL = "https://patient.uwhealth.org/healthfacts/8082"
AFTERCARE: tuple[AftercareAdvice, ...] = (
    AftercareAdvice(
        id="normal_activity",
        label="Everyday activity",
        text=(
            "Keep up regular gentle stretching to prevent stiffness. Do not do anything you "
            "could not do, or that caused pain, before the injection, and do not over-stretch."
        ),
        source=_UW_8082,
        url=_UW_URL,
        locator=(
            "After the Injection: 'You should be doing regular gentle stretching to prevent "
            "stiffness. Do not do anything that you could not do before the injection. Do not "
            "do anything that caused pain before the injection. Do not over stretch.'"
        ),
        grade="secondary",
    ),
    AftercareAdvice(
        id="expected_inflammation",
        label="Expected soreness",
        text=(
            "Some pain at the injection site afterwards is expected. It may last 2 to 4 days "
            "and goes away with time."
        ),
        source=_UW_8082,
        url=_UW_URL,
        locator=(
            "After the Injection: 'You may notice some pain after the injection. The pain may "
            "last 2-4 days. It will go away with time.'"
        ),
        grade="secondary",
    ),
    AftercareAdvice(
        id="pain_advice",
        label="What to take for pain",
        text=(
            "Acetaminophen (Tylenol) may be taken for the pain. UW Health asks patients not to "
            "use aspirin or other anti-inflammatory medicines like ibuprofen or Aleve; ask the "
            "clinic before stopping a medicine taken for another reason."
        ),
        source=_UW_8082,
        url=_UW_URL,
        locator=(
            "After the Injection: 'You may take Tylenol to help with the pain.' What should I "
            "expect?: 'Do not use aspirin or other anti-inflammatory medicines like ibuprofen "
            "or Aleve.'"
        ),
        grade="secondary",
    ),
    AftercareAdvice(
        id="when_to_call",
        label="When to call the clinic",
        text=(
            "Call the clinic with any sign of infection, such as a fever above 100.4 °F "
            "(38 °C) on two readings taken 4 hours apart, or increasing redness."
        ),
        source=_UW_8082,
        url=_UW_URL,
        locator=(
            "When to Call: 'Call with any signs of infection: Fever greater than 100.4° F by "
            "mouth for 2 readings taken 4 hours apart. Increased redness, swell' (the stored "
            "copy is cut off there, so nothing after it is used)"
        ),
        grade="secondary",
    ),
)


# --- access ---------------------------------------------------------------------------------


def _require_keeper(principal: Principal) -> None:
    if principal.role not in RECORD_KEEPERS:
        raise Forbidden("only clinicians and admins read or write procedure records")


def access_procedure_by_id(
    *, session: Session, principal: Principal, procedure_id: int, event: str = "procedure.read"
) -> Procedure:
    """The record if ``principal`` may see it; AccessDenied (404) otherwise. Audited."""
    _require_keeper(principal)
    procedure = session.get(Procedure, procedure_id)
    if procedure is None or procedure.clinic_id != principal.clinic_id:
        raise AccessDenied(
            "no such procedure record", entity_type="Procedure", entity_id=procedure_id
        )
    audit.record(
        session,
        principal.actor,
        action={"procedure.read": "R", "procedure.discard": "D"}.get(event, "U"),
        event=event,
        entity_type="Procedure",
        entity_id=procedure.id,
        patient_id=procedure.patient_id,
    )
    return procedure


def _lock(session: Session, procedure: Procedure) -> Procedure:
    """Re-read the row under a lock (PostgreSQL) so a concurrent signature is seen."""
    if session.get_bind().dialect.name == "postgresql":
        session.refresh(procedure, with_for_update=True)
    return procedure


def amendment_of(*, session: Session, procedure: Procedure) -> Procedure | None:
    """The record that amends ``procedure``, if any."""
    return session.scalars(select(Procedure).where(Procedure.amends_id == procedure.id)).first()


def list_procedures(
    *, session: Session, principal: Principal, patient_id: int
) -> Sequence[Procedure]:
    """A patient's procedure records, newest first (drafts, signed and amendments)."""
    _require_keeper(principal)
    patient = patients.access_patient_by_id(
        session=session, principal=principal, patient_id=patient_id, event="procedure.list"
    )
    return session.scalars(
        select(Procedure)
        .where(Procedure.patient_id == patient.id, Procedure.clinic_id == principal.clinic_id)
        .order_by(Procedure.performed_at.desc(), Procedure.id.desc())
    ).all()


# --- the pre-procedure re-check -------------------------------------------------------------


def _field_for(engine_field: str) -> str:
    """The input field a screening error names, in the procedure record's terms."""
    if engine_field in ("complaint", "condition_id", "icd10"):
        return "body_region"
    return f"checks.{engine_field}"


def _names_overlap(a: str, b: str) -> bool:
    a, b = a.strip().lower(), b.strip().lower()
    return bool(a) and bool(b) and (a in b or b in a)


def screening_answers(
    *, patient: Patient, course: TreatmentCourse | None, data: ProcedureIn
) -> tuple[dict[str, Any], list[str]]:
    """The screening engine's answers for this record, and the chart allergies it matched.

    An allergy in the chart whose substance names the injectate's solution or anaesthetic
    counts as that allergy whatever the form says.
    """
    checks = data.checks
    chart = [a.substance for a in patient.allergies]
    anaesthetic = data.injectate.anaesthetic or ""
    la_chart = [s for s in chart if anaesthetic and _names_overlap(s, anaesthetic)]
    solution_chart = [s for s in chart if _names_overlap(s, data.injectate.solution)]
    other = [s[:200] for s in chart if s not in la_chart and s not in solution_chart]
    female = patient.sex == "female"
    answers: dict[str, Any] = {
        "complaint": REGION_COMPLAINT[data.body_region],
        "condition_id": course.condition_id if course is not None else None,
        "pain_duration_weeks": checks.pain_duration_weeks,
        "red_flags": dict(checks.red_flags),
        "medications": {
            "anticoagulant": checks.anticoagulant,
            "antiplatelet": checks.antiplatelet,
        },
        "allergies": {
            "local_anaesthetic": checks.allergy_local_anaesthetic or bool(la_chart),
            "dextrose": checks.allergy_dextrose or bool(solution_chart),
            "other": other,
        },
        "history": checks.history.model_dump(),
        "pregnant": checks.pregnant if female else None,
        "sex_at_birth": patient.sex if patient.sex in ("female", "male") else None,
    }
    if answers["complaint"] is None and answers["condition_id"] is None:
        active = [d for d in patient.diagnoses if d.clinical_status == "active"]
        coded = [d for d in active if d.code_system == "icd10cm"]
        if not coded:
            raise ValidationFailed(
                "for a record spanning several regions, link a course or give the patient an "
                "active ICD-10-CM diagnosis, so the re-check knows the condition",
                field="body_region",
            )
        answers["icd10"] = coded[0].code
    return answers, la_chart + solution_chart


def run_pre_check(
    *,
    session: Session,
    patient: Patient,
    course: TreatmentCourse | None,
    data: ProcedureIn,
    now: dt.datetime,
) -> dict[str, Any]:
    """Consent on file and the screening re-check, as stored with the record."""
    answers, matched = screening_answers(patient=patient, course=course, data=data)
    rules = load_safety_rules()
    try:
        result = screen(ScreeningProfile.from_answers(answers), rules=rules)
    except ScreeningInputError as exc:
        field = _field_for(exc.field)
        raise ValidationFailed(f"{field}: {exc.message}", field=field) from exc
    if course is not None:
        consent = courses.consent_on_file(session=session, course=course)
    else:
        consent = courses.patient_consent_on_file(session=session, patient_id=patient.id)
    return {
        "consent_on_file": consent is not None,
        "consent_id": consent.id if consent is not None else None,
        "decision": result.decision,
        "reasons": [
            {"rule_id": r.rule_id, "kind": r.kind, "clinician_message": r.clinician_message}
            for r in result.reasons
        ],
        "checked_at": now.isoformat(),
        "safety_rules_version": rules.version,
        "chart_allergies_matched": matched,
    }


# --- writes --------------------------------------------------------------------------------


class SessionNotHeld(Conflict):
    """The record's appointment did not take place (cancelled, no-show, or not yet begun)."""

    code = "appointment_status"


# Appointment statuses of a visit that did not and will not take place.
NOT_HELD_STATUSES = ("cancelled", "noshow")
_STATUS_WORDS = {"cancelled": "was cancelled", "noshow": "was a no-show"}


def require_session_held(appointment: Appointment, now: dt.datetime) -> None:
    """SessionNotHeld unless the visit took place or is under way (see the module's rule)."""
    if appointment.status in NOT_HELD_STATUSES:
        why = _STATUS_WORDS[appointment.status]
    elif appointment.status == "booked" and appointment.starts_at > now:
        why = "is booked and has not started yet"
    else:
        return
    raise SessionNotHeld(
        f"appointment {appointment.id} {why} (status {appointment.status}): a procedure "
        "record documents an injection session that took place",
        field="appointment_id",
        extra={"appointment_id": appointment.id, "current_status": appointment.status},
    )


def _links(
    session: Session,
    principal: Principal,
    patient: Patient,
    data: ProcedureIn,
    *,
    amendment: bool = False,
) -> tuple[Appointment | None, TreatmentCourse | None, int]:
    """Check the appointment, course and practitioner belong together; return them.

    The appointment must have been held (:func:`require_session_held`), except for an
    amendment, which documents the same session as the signed record it corrects.
    """
    appointment: Appointment | None = None
    course_id = data.course_id
    if data.appointment_id is not None:
        # Locked (PostgreSQL) until this transaction ends, as scheduling locks it before
        # cancelling: a record and a cancellation of the same visit cannot both commit.
        appointment = session.get(Appointment, data.appointment_id, with_for_update=not amendment)
        if appointment is None or appointment.patient_id != patient.id:
            raise ValidationFailed("no such appointment for this patient", field="appointment_id")
        if appointment.kind != "injection":
            raise ValidationFailed(
                f"a procedure record belongs to an injection session, not a {appointment.kind}",
                field="appointment_id",
            )
        if not amendment:
            require_session_held(appointment, utcnow())
        if course_id is None:
            course_id = appointment.course_id
        elif appointment.course_id not in (None, course_id):
            raise ValidationFailed("the appointment belongs to another course", field="course_id")
    course: TreatmentCourse | None = None
    if course_id is not None:
        course = session.get(TreatmentCourse, course_id)
        if course is None or course.patient_id != patient.id:
            raise ValidationFailed("no such course for this patient", field="course_id")
    practitioner_id = data.practitioner_id or principal.practitioner_id
    if practitioner_id is None:
        raise ValidationFailed(
            "say who performed the procedure (your login is not linked to a practitioner)",
            field="practitioner_id",
        )
    practitioner = session.get(Practitioner, practitioner_id)
    if practitioner is None or practitioner.clinic_id != patient.clinic_id:
        raise ValidationFailed("no such practitioner in this clinic", field="practitioner_id")
    return appointment, course, practitioner_id


def _check_sites(data: ProcedureIn) -> None:
    catalog = load_injection_sites()
    allowed = {s.id for s in catalog.sites_for(data.body_region)}
    for index, site in enumerate(data.sites):
        if site.site_id not in allowed:
            known = catalog.site(site.site_id)
            why = "is not on the site list" if known is None else "is not in this body region"
            raise ValidationFailed(f"site {site.site_id!r} {why}", field=f"sites.{index}.site_id")


def _details(data: ProcedureIn, pre_check: dict[str, Any]) -> dict[str, Any]:
    doc = data.model_dump(
        mode="json",
        include={
            "injectate",
            "sites",
            "guidance",
            "needle",
            "checks",
            "adverse_events",
            "aftercare",
        },
    )
    doc["pre_check"] = pre_check
    doc["schema"] = 1
    return doc


def _apply(
    procedure: Procedure,
    data: ProcedureIn,
    *,
    appointment: Appointment | None,
    course: TreatmentCourse | None,
    practitioner_id: int,
    pre_check: dict[str, Any],
    now: dt.datetime,
) -> None:
    procedure.appointment_id = appointment.id if appointment is not None else None
    procedure.course_id = course.id if course is not None else None
    procedure.practitioner_id = practitioner_id
    procedure.performed_at = data.performed_at
    procedure.body_region = data.body_region
    procedure.details = _details(data, pre_check)
    procedure.screening_decision = pre_check["decision"]
    procedure.note = data.note
    procedure.updated_at = now


def _one_original_per_appointment(
    session: Session, appointment: Appointment | None, exclude: int | None
) -> None:
    if appointment is None:
        return
    stmt = select(Procedure.id).where(
        Procedure.appointment_id == appointment.id, Procedure.amends_id.is_(None)
    )
    if exclude is not None:
        stmt = stmt.where(Procedure.id != exclude)
    existing = session.scalar(stmt)
    if existing is not None:
        raise Conflict(
            f"this session already has procedure record {existing}; amend that one",
            field="appointment_id",
            extra={"procedure_id": existing},
        )


def create_procedure(
    *, session: Session, principal: Principal, patient_id: int, data: ProcedureIn
) -> Procedure:
    """Start a draft record for a patient's session, with its pre-procedure re-check."""
    _require_keeper(principal)
    patient = patients.access_patient_by_id(
        session=session, principal=principal, patient_id=patient_id, event="procedure.create"
    )
    _check_sites(data)
    appointment, course, practitioner_id = _links(session, principal, patient, data)
    _one_original_per_appointment(session, appointment, None)
    now = utcnow()
    pre_check = run_pre_check(session=session, patient=patient, course=course, data=data, now=now)
    procedure = Procedure(clinic_id=patient.clinic_id, patient_id=patient.id, status="draft")
    _apply(
        procedure,
        data,
        appointment=appointment,
        course=course,
        practitioner_id=practitioner_id,
        pre_check=pre_check,
        now=now,
    )
    procedure.created_at = now
    session.add(procedure)
    session.flush()
    audit.record(
        session,
        principal.actor,
        action="C",
        event="procedure.create",
        entity_type="Procedure",
        entity_id=procedure.id,
        patient_id=patient.id,
    )
    return procedure


class SignedRecord(Conflict):
    """A signed record was to be changed; the message says to amend it instead."""

    code = "procedure_signed"


def _refuse_signed(procedure: Procedure, doing: str) -> None:
    if procedure.status == "signed":
        raise SignedRecord(
            f"procedure record {procedure.id} is signed and cannot be {doing}; "
            "record an amendment instead",
            extra={"procedure_id": procedure.id},
        )


def update_procedure(
    *, session: Session, principal: Principal, procedure_id: int, data: ProcedureIn
) -> Procedure:
    """Replace a draft's content; SignedRecord (409) for a signed record, nothing changed.

    For a draft amendment, an :class:`AmendmentIn` also replaces the reason.
    """
    procedure = _lock(
        session,
        access_procedure_by_id(
            session=session,
            principal=principal,
            procedure_id=procedure_id,
            event="procedure.update",
        ),
    )
    _refuse_signed(procedure, "changed")
    patient = session.get_one(Patient, procedure.patient_id)
    _check_sites(data)
    appointment, course, practitioner_id = _links(
        session, principal, patient, data, amendment=procedure.amends_id is not None
    )
    if procedure.amends_id is None:
        _one_original_per_appointment(session, appointment, procedure.id)
    else:
        original = session.get_one(Procedure, procedure.amends_id)
        if data.appointment_id != original.appointment_id:
            raise ValidationFailed(
                "an amendment documents the same session as the record it corrects",
                field="appointment_id",
            )
    now = utcnow()
    pre_check = run_pre_check(session=session, patient=patient, course=course, data=data, now=now)
    _apply(
        procedure,
        data,
        appointment=appointment,
        course=course,
        practitioner_id=practitioner_id,
        pre_check=pre_check,
        now=now,
    )
    reason = getattr(data, "reason", None)
    if reason is not None:
        if procedure.amends_id is None:
            raise ValidationFailed("only an amendment has a reason", field="reason")
        procedure.amendment_reason = reason
    session.flush()
    return procedure


def stored_input(procedure: Procedure) -> ProcedureIn:
    """The record's content as the input that produced it (for re-checks and forms)."""
    details = procedure.details
    doc: dict[str, Any] = {
        "performed_at": procedure.performed_at,
        "appointment_id": procedure.appointment_id,
        "course_id": procedure.course_id,
        "practitioner_id": procedure.practitioner_id,
        "body_region": procedure.body_region,
        "note": procedure.note,
    }
    for key in (
        "injectate",
        "sites",
        "guidance",
        "needle",
        "checks",
        "adverse_events",
        "aftercare",
    ):
        doc[key] = details[key]
    return ProcedureIn.model_validate(doc)


def sign_procedure(*, session: Session, principal: Principal, procedure_id: int) -> Procedure:
    """Sign a draft: consent on file and a re-check allowing injection; then it is fixed.

    Only the practitioner who performed the session signs (their login must be linked to
    that practitioner). The re-check is run again on the chart as it is now, and the
    appointment of an original record must have been held (SessionNotHeld, 409).
    """
    procedure = _lock(
        session,
        access_procedure_by_id(
            session=session, principal=principal, procedure_id=procedure_id, event="procedure.sign"
        ),
    )
    _refuse_signed(procedure, "signed again")
    if principal.practitioner_id != procedure.practitioner_id:
        raise Forbidden("only the practitioner who performed the procedure signs its record")
    patient = session.get_one(Patient, procedure.patient_id)
    course = session.get(TreatmentCourse, procedure.course_id) if procedure.course_id else None
    now = utcnow()
    if procedure.appointment_id is not None and procedure.amends_id is None:
        visit = session.get_one(Appointment, procedure.appointment_id, with_for_update=True)
        require_session_held(visit, now)
    data = stored_input(procedure)
    pre_check = run_pre_check(session=session, patient=patient, course=course, data=data, now=now)
    if not pre_check["consent_on_file"]:
        raise courses.ConsentMissing(
            "no informed consent is on file for this course; record the consent first",
            field="consent",
        )
    if pre_check["decision"] in BLOCKING_DECISIONS:
        blocking = [
            r["rule_id"] for r in pre_check["reasons"] if r["kind"] in ("red_flag", "absolute")
        ]
        raise Conflict(
            f"the pre-procedure check says {pre_check['decision'].replace('_', ' ')} "
            f"({', '.join(blocking)}); the record cannot be signed",
            field="checks",
            extra={"decision": pre_check["decision"], "rules": blocking},
        )
    procedure.details = {**procedure.details, "pre_check": pre_check}
    procedure.screening_decision = pre_check["decision"]
    procedure.updated_at = now
    procedure.status = "signed"
    procedure.signed_at = now
    procedure.signed_by_user_id = principal.user_id
    procedure.signed_by_name = principal.display_name
    session.flush()
    if course is not None:
        courses.note_session_done(session=session, course=course)
    return procedure


def amend_procedure(
    *, session: Session, principal: Principal, procedure_id: int, data: AmendmentIn
) -> Procedure:
    """Start an amendment (a draft) of a signed record; the original is kept unchanged."""
    original = _lock(
        session,
        access_procedure_by_id(
            session=session, principal=principal, procedure_id=procedure_id, event="procedure.amend"
        ),
    )
    if original.status != "signed":
        raise Conflict(
            f"procedure record {original.id} is a draft: edit it instead of amending",
            extra={"procedure_id": original.id},
        )
    later = amendment_of(session=session, procedure=original)
    if later is not None:
        raise Conflict(
            f"procedure record {original.id} was already amended by record {later.id}; "
            f"amend record {later.id}",
            extra={"procedure_id": later.id},
        )
    if data.appointment_id != original.appointment_id:
        raise ValidationFailed(
            "an amendment documents the same session as the record it corrects",
            field="appointment_id",
        )
    patient = session.get_one(Patient, original.patient_id)
    _check_sites(data)
    appointment, course, practitioner_id = _links(session, principal, patient, data, amendment=True)
    now = utcnow()
    pre_check = run_pre_check(session=session, patient=patient, course=course, data=data, now=now)
    amendment = Procedure(
        clinic_id=original.clinic_id,
        patient_id=original.patient_id,
        status="draft",
        amends_id=original.id,
        amendment_reason=data.reason,
        created_at=now,
    )
    _apply(
        amendment,
        data,
        appointment=appointment,
        course=course,
        practitioner_id=practitioner_id,
        pre_check=pre_check,
        now=now,
    )
    session.add(amendment)
    session.flush()
    audit.record(
        session,
        principal.actor,
        action="C",
        event="procedure.amend",
        entity_type="Procedure",
        entity_id=amendment.id,
        patient_id=amendment.patient_id,
        detail=f"amends {original.id}",
    )
    return amendment


def discard_draft(*, session: Session, principal: Principal, procedure_id: int) -> None:
    """Delete a draft; SignedRecord (409) for a signed record."""
    procedure = _lock(
        session,
        access_procedure_by_id(
            session=session,
            principal=principal,
            procedure_id=procedure_id,
            event="procedure.discard",
        ),
    )
    _refuse_signed(procedure, "deleted")
    session.delete(procedure)
    session.flush()


def to_out(*, session: Session, procedure: Procedure) -> ProcedureOut:
    """The API view of a record (with the id of the record amending it, if any)."""
    later = amendment_of(session=session, procedure=procedure)
    details = procedure.details
    return ProcedureOut(
        id=procedure.id,
        status=procedure.status,
        patient_id=procedure.patient_id,
        course_id=procedure.course_id,
        appointment_id=procedure.appointment_id,
        practitioner_id=procedure.practitioner_id,
        performed_at=procedure.performed_at,
        body_region=procedure.body_region,
        injectate=details["injectate"],
        sites=details["sites"],
        guidance=details["guidance"],
        needle=details["needle"],
        checks=details["checks"],
        pre_check=PreCheckOut.model_validate(details["pre_check"]),
        adverse_events=details["adverse_events"],
        aftercare=details["aftercare"],
        note=procedure.note,
        signed_at=procedure.signed_at,
        signed_by_name=procedure.signed_by_name,
        amends_id=procedure.amends_id,
        amended_by_id=later.id if later is not None else None,
        amendment_reason=procedure.amendment_reason,
        created_at=procedure.created_at,
        updated_at=procedure.updated_at,
    )
