"""JSON API for the patient chart."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from prolo.patients import service
from prolo.patients.schemas import (
    AllergyIn,
    AllergyOut,
    ChartOut,
    DiagnosisIn,
    DiagnosisOut,
    MedicationIn,
    MedicationOut,
    PatientIn,
    PatientOut,
    PatientPage,
)
from prolo.security.principal import Principal
from prolo.web import MAX_ROW_ID, DbSession, RowId, policy

router = APIRouter(prefix="/api/patients", tags=["patients"])

Staff = Annotated[Principal, policy("admin", "clinician", "front_desk")]
Reader = Annotated[Principal, policy("admin", "clinician", "front_desk", "patient")]
ChartWriter = Annotated[Principal, policy("admin", "clinician")]


@router.get("", response_model=PatientPage)
def list_patients(
    session: DbSession,
    principal: Reader,
    q: Annotated[str, Query(max_length=100, description="name or MRN contains")] = "",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ROW_ID)] = 0,
) -> PatientPage:
    """Patients the caller may see: staff their clinic's, a patient themself."""
    rows, total = service.list_patients(
        session=session, principal=principal, query=q, limit=limit, offset=offset
    )
    return PatientPage(
        items=[PatientOut.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )


@router.post("", response_model=PatientOut, status_code=201)
def register_patient(session: DbSession, principal: Staff, data: PatientIn) -> PatientOut:
    """Register a patient in the caller's clinic."""
    patient = service.register_patient(session=session, principal=principal, data=data)
    return PatientOut.model_validate(patient)


@router.get("/{patient_id}", response_model=ChartOut | PatientOut)
def read_patient(session: DbSession, principal: Reader, patient_id: RowId) -> ChartOut | PatientOut:
    """The chart; front desk gets demographics only."""
    patient = service.access_patient_by_id(
        session=session, principal=principal, patient_id=patient_id
    )
    if principal.role == "front_desk":
        return PatientOut.model_validate(patient)
    return ChartOut.model_validate(patient)


@router.put("/{patient_id}", response_model=PatientOut)
def update_patient(
    session: DbSession, principal: Staff, patient_id: RowId, data: PatientIn
) -> PatientOut:
    """Replace the demographics."""
    patient = service.update_patient(
        session=session, principal=principal, patient_id=patient_id, data=data
    )
    return PatientOut.model_validate(patient)


@router.post("/{patient_id}/diagnoses", response_model=DiagnosisOut, status_code=201)
def add_diagnosis(
    session: DbSession, principal: ChartWriter, patient_id: RowId, data: DiagnosisIn
) -> DiagnosisOut:
    """Add a coded diagnosis (a billable ICD-10-CM code, or a SNOMED CT concept)."""
    return DiagnosisOut.model_validate(
        service.add_diagnosis(
            session=session, principal=principal, patient_id=patient_id, data=data
        )
    )


@router.post("/{patient_id}/allergies", response_model=AllergyOut, status_code=201)
def add_allergy(
    session: DbSession, principal: ChartWriter, patient_id: RowId, data: AllergyIn
) -> AllergyOut:
    """Record an allergy or intolerance."""
    return AllergyOut.model_validate(
        service.add_allergy(session=session, principal=principal, patient_id=patient_id, data=data)
    )


@router.post("/{patient_id}/medications", response_model=MedicationOut, status_code=201)
def add_medication(
    session: DbSession, principal: ChartWriter, patient_id: RowId, data: MedicationIn
) -> MedicationOut:
    """Record a medication."""
    return MedicationOut.model_validate(
        service.add_medication(
            session=session, principal=principal, patient_id=patient_id, data=data
        )
    )


@router.delete("/{patient_id}/{kind}/{entry_id}", status_code=204)
def remove_chart_entry(
    session: DbSession,
    principal: ChartWriter,
    patient_id: RowId,
    kind: Literal["diagnoses", "allergies", "medications"],
    entry_id: RowId,
) -> Response:
    """Remove a diagnosis, allergy or medication entered in error."""
    singular = {"diagnoses": "diagnosis", "allergies": "allergy", "medications": "medication"}
    service.remove_chart_entry(
        session=session,
        principal=principal,
        patient_id=patient_id,
        kind=singular[kind],
        entry_id=entry_id,
    )
    return Response(status_code=204)
