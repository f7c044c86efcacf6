"""API for the access log of a patient's record."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel

from prolo.security.access_log import patient_access_log
from prolo.security.principal import Principal
from prolo.web import DbSession, RowId, policy

router = APIRouter(prefix="/api", tags=["audit"])


class AccessEntryOut(BaseModel):
    when: dt.datetime
    who: str
    role: str
    what: str
    record: str
    outcome: str


@router.get("/patients/{patient_id}/access-log", response_model=list[AccessEntryOut])
def access_log(
    session: DbSession,
    principal: Annotated[Principal, policy("admin", "clinician", "patient")],
    patient_id: RowId,
) -> list[AccessEntryOut]:
    """Who accessed the record: clinicians for their clinic's patients, a patient for their own."""
    entries = patient_access_log(session=session, principal=principal, patient_id=patient_id)
    return [AccessEntryOut(**e.__dict__) for e in entries]
