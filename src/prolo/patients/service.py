"""The patient chart's use cases. Each runs inside the caller's transaction."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import cast

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from prolo.codes import icd10cm_display
from prolo.db import utcnow
from prolo.errors import AccessDenied, Conflict, Forbidden
from prolo.patients.models import Allergy, Diagnosis, Medication, Patient
from prolo.patients.schemas import AllergyIn, DiagnosisIn, MedicationIn, PatientIn
from prolo.security import audit
from prolo.security.principal import CLINICAL, STAFF, Principal

CHART_READERS = CLINICAL  # front desk sees demographics, not the clinical chart


def _visible(principal: Principal, patient: Patient) -> bool:
    return principal.may_see(clinic_id=patient.clinic_id, patient_id=patient.id)


def access_patient_by_id(
    *, session: Session, principal: Principal, patient_id: int, event: str = "patient.read"
) -> Patient:
    """The patient if ``principal`` may see them; AccessDenied (404) otherwise. Audited."""
    patient = session.get(Patient, patient_id)
    if patient is None or not _visible(principal, patient):
        raise AccessDenied("no such patient", entity_type="Patient", entity_id=patient_id)
    audit.record(
        session,
        principal.actor,
        action="R",
        event=event,
        entity_type="Patient",
        entity_id=patient.id,
        patient_id=patient.id,
    )
    return patient


def require_chart_reader(principal: Principal) -> None:
    """Clinical parts of the chart are for clinicians, admins and the patient themself."""
    if principal.role not in CHART_READERS and principal.role != "patient":
        raise Forbidden("your role may see demographics only, not the clinical chart")


def list_patients(
    *, session: Session, principal: Principal, query: str = "", limit: int = 50, offset: int = 0
) -> tuple[Sequence[Patient], int]:
    """Patients the principal may see, filtered by name or MRN; returns (page, total)."""
    stmt = select(Patient)
    if principal.role == "patient":
        stmt = stmt.where(Patient.id == principal.patient_id)
    elif principal.role in STAFF:
        stmt = stmt.where(Patient.clinic_id == principal.clinic_id)
    else:
        stmt = stmt.where(Patient.id.is_(None))
    q = query.strip()
    if q:
        like = f"%{q.lower()}%"
        terms = [
            func.lower(Patient.family_name).like(like),
            func.lower(Patient.given_name).like(like),
            func.lower(Patient.mrn).like(like),
            func.lower(Patient.family_name + ", " + Patient.given_name).like(like),
        ]
        stmt = stmt.where(or_(*terms))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(
        stmt.order_by(Patient.family_name, Patient.given_name, Patient.id)
        .limit(limit)
        .offset(offset)
    ).all()
    audit.record(
        session,
        principal.actor,
        action="R",
        event="patient.search",
        entity_type="Patient",
        detail=f"{len(rows)} of {total} shown",
    )
    return rows, total


def _new_mrn(session: Session, clinic_id: int) -> str:
    while True:
        mrn = f"MRN{secrets.randbelow(10**8):08d}"
        taken = session.scalar(
            select(Patient.id).where(Patient.clinic_id == clinic_id, Patient.mrn == mrn)
        )
        if taken is None:
            return mrn


def register_patient(*, session: Session, principal: Principal, data: PatientIn) -> Patient:
    """Register a patient in the principal's clinic; Conflict when the MRN is taken."""
    mrn = data.mrn or _new_mrn(session, principal.clinic_id)
    taken = session.scalar(
        select(Patient.id).where(Patient.clinic_id == principal.clinic_id, Patient.mrn == mrn)
    )
    if taken is not None:
        raise Conflict("this MRN is already used by another patient", field="mrn")
    patient = Patient(clinic_id=principal.clinic_id, **data.model_dump(exclude={"mrn"}), mrn=mrn)
    session.add(patient)
    session.flush()
    audit.record(
        session,
        principal.actor,
        action="C",
        event="patient.create",
        entity_type="Patient",
        entity_id=patient.id,
        patient_id=patient.id,
    )
    return patient


def update_patient(
    *, session: Session, principal: Principal, patient_id: int, data: PatientIn
) -> Patient:
    """Replace a patient's demographics; Conflict when the new MRN is taken."""
    patient = access_patient_by_id(
        session=session, principal=principal, patient_id=patient_id, event="patient.update"
    )
    if data.mrn and data.mrn != patient.mrn:
        taken = session.scalar(
            select(Patient.id).where(
                Patient.clinic_id == patient.clinic_id, Patient.mrn == data.mrn
            )
        )
        if taken is not None:
            raise Conflict("this MRN is already used by another patient", field="mrn")
        patient.mrn = data.mrn
    for key, value in data.model_dump(exclude={"mrn"}).items():
        setattr(patient, key, value)
    patient.updated_at = utcnow()
    audit.record(
        session,
        principal.actor,
        action="U",
        event="patient.update",
        entity_type="Patient",
        entity_id=patient.id,
        patient_id=patient.id,
    )
    return patient


def _chart_writer(session: Session, principal: Principal, patient_id: int) -> Patient:
    if principal.role not in CLINICAL:
        raise Forbidden("only clinicians and admins may change the clinical chart")
    return access_patient_by_id(
        session=session, principal=principal, patient_id=patient_id, event="chart.update"
    )


def add_diagnosis(
    *, session: Session, principal: Principal, patient_id: int, data: DiagnosisIn
) -> Diagnosis:
    """Add a coded diagnosis; the display defaults to the code table's description."""
    from prolo.knowledge.loader import conditions_for_icd10

    patient = _chart_writer(session, principal, patient_id)
    display = data.display or (icd10cm_display(data.code) if data.code_system == "icd10cm" else "")
    if not display:
        raise Conflict("a SNOMED CT diagnosis needs its display text", field="display")
    matches = conditions_for_icd10(data.code) if data.code_system == "icd10cm" else []
    diagnosis = Diagnosis(
        patient_id=patient.id,
        code_system=data.code_system,
        code=data.code,
        display=display,
        body_site=data.body_site,
        onset_date=data.onset_date,
        clinical_status=data.clinical_status,
        condition_id=matches[0].id if matches else None,
    )
    session.add(diagnosis)
    session.flush()
    audit.record(
        session,
        principal.actor,
        action="C",
        event="diagnosis.create",
        entity_type="Diagnosis",
        entity_id=diagnosis.id,
        patient_id=patient.id,
    )
    return diagnosis


def add_allergy(
    *, session: Session, principal: Principal, patient_id: int, data: AllergyIn
) -> Allergy:
    """Record an allergy or intolerance."""
    patient = _chart_writer(session, principal, patient_id)
    allergy = Allergy(patient_id=patient.id, **data.model_dump())
    session.add(allergy)
    session.flush()
    audit.record(
        session,
        principal.actor,
        action="C",
        event="allergy.create",
        entity_type="AllergyIntolerance",
        entity_id=allergy.id,
        patient_id=patient.id,
    )
    return allergy


def add_medication(
    *, session: Session, principal: Principal, patient_id: int, data: MedicationIn
) -> Medication:
    """Record a medication the patient takes."""
    patient = _chart_writer(session, principal, patient_id)
    medication = Medication(patient_id=patient.id, **data.model_dump())
    session.add(medication)
    session.flush()
    audit.record(
        session,
        principal.actor,
        action="C",
        event="medication.create",
        entity_type="MedicationStatement",
        entity_id=medication.id,
        patient_id=patient.id,
    )
    return medication


_CHART_ENTRY: dict[str, type[Diagnosis] | type[Allergy] | type[Medication]] = {
    "diagnosis": Diagnosis,
    "allergy": Allergy,
    "medication": Medication,
}


def remove_chart_entry(
    *, session: Session, principal: Principal, patient_id: int, kind: str, entry_id: int
) -> None:
    """Delete a diagnosis, allergy or medication entered in error."""
    patient = _chart_writer(session, principal, patient_id)
    model = _CHART_ENTRY[kind]
    entry = cast(Diagnosis | Allergy | Medication | None, session.get(model, entry_id))
    if entry is None or entry.patient_id != patient.id:
        raise AccessDenied(f"no such {kind}", entity_type=kind, entity_id=entry_id)
    session.delete(entry)
    audit.record(
        session,
        principal.actor,
        action="D",
        event=f"{kind}.delete",
        entity_type=kind,
        entity_id=entry_id,
        patient_id=patient.id,
    )
