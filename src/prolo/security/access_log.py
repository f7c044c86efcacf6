"""Who accessed a patient's record: the audit log, read back for the clinician and the patient."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from prolo.security import audit
from prolo.security.models import AuditEvent, User
from prolo.security.principal import Principal

ACTION_WORDS = {"C": "created", "R": "viewed", "U": "changed", "D": "deleted", "E": "used"}
ROLE_WORDS = {
    "admin": "administrator",
    "clinician": "clinician",
    "front_desk": "front desk",
    "patient": "patient",
    "researcher": "researcher",
    "system": "system",
}


@dataclass(frozen=True)
class AccessEntry:
    """One access to the record, in words a patient can read."""

    when: dt.datetime
    who: str
    role: str
    what: str
    record: str
    outcome: str


def patient_access_log(
    *, session: Session, principal: Principal, patient_id: int, limit: int = 200
) -> list[AccessEntry]:
    """Who read or changed the patient's record, newest first.

    Raises AccessDenied (404) when the principal may not see the patient; reading
    the log is itself audited.
    """
    from prolo.patients.service import access_patient_by_id

    access_patient_by_id(
        session=session, principal=principal, patient_id=patient_id, event="access_log.read"
    )
    rows = session.execute(
        select(AuditEvent, User.display_name)
        .outerjoin(User, User.id == AuditEvent.user_id)
        .where(AuditEvent.patient_id == patient_id)
        .order_by(AuditEvent.id.desc())
        .limit(limit)
    ).tuples()
    entries = [
        AccessEntry(
            when=event.recorded_at,
            who=name or "system",
            role=ROLE_WORDS.get(event.user_role or "system", event.user_role or "system"),
            what=ACTION_WORDS.get(event.action, event.action),
            record=event.entity_type,
            outcome="ok" if event.outcome == "0" else "refused",
        )
        for event, name in rows
    ]
    audit.record(
        session,
        principal.actor,
        action="R",
        event="access_log.list",
        entity_type="AuditEvent",
        patient_id=patient_id,
        detail=f"{len(entries)} entries",
    )
    return entries
