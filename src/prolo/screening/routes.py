"""JSON API for screening: the anonymous self-check, and screenings on a patient's record.

Missing or contradictory answers are a 422 problem+json whose ``errors`` name the field
(``red_flags.fever``, ``pregnant``, ``condition_id``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from prolo.screening import service
from prolo.screening.profile import ScreeningProfile
from prolo.screening.schemas import ScreeningOut, StoredScreeningOut
from prolo.security.principal import Principal
from prolo.web import DbSession, RowId, policy

router = APIRouter(prefix="/api", tags=["screening"])
Screener = Annotated[Principal, policy("admin", "clinician")]


@router.post("/screening", response_model=ScreeningOut, dependencies=[policy("public")])
def self_check(profile: ScreeningProfile) -> ScreeningOut:
    """Screen anonymous answers: a decision and every reason with its rule id and sources.

    Nothing is stored. The answer is information, not a diagnosis (``information_only``).
    """
    return ScreeningOut.from_result(service.run_screening(profile))


@router.post(
    "/patients/{patient_id}/screenings", response_model=StoredScreeningOut, status_code=201
)
def screen_patient(
    session: DbSession, principal: Screener, patient_id: RowId, profile: ScreeningProfile
) -> StoredScreeningOut:
    """Screen a patient and store the result on their record (audited)."""
    screening = service.screen_patient(
        session=session, principal=principal, patient_id=patient_id, profile=profile
    )
    return StoredScreeningOut.model_validate(screening)


@router.get("/patients/{patient_id}/screenings", response_model=list[StoredScreeningOut])
def list_screenings(
    session: DbSession, principal: Screener, patient_id: RowId
) -> list[StoredScreeningOut]:
    """The patient's stored screenings, newest first."""
    rows = service.list_screenings(session=session, principal=principal, patient_id=patient_id)
    return [StoredScreeningOut.model_validate(r) for r in rows]


@router.get("/patients/{patient_id}/screenings/{screening_id}", response_model=StoredScreeningOut)
def read_screening(
    session: DbSession, principal: Screener, patient_id: RowId, screening_id: RowId
) -> StoredScreeningOut:
    """One stored screening with every reason, rule id and source."""
    screening = service.access_screening_by_id(
        session=session, principal=principal, patient_id=patient_id, screening_id=screening_id
    )
    return StoredScreeningOut.model_validate(screening)
