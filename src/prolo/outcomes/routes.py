"""JSON API of the outcomes registry: the report and a course's follow-up facts.

The handlers are plain ``def`` functions, so FastAPI runs them in its thread pool: a
report that takes a second never blocks the event loop or other requests.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query

from prolo.outcomes import service
from prolo.outcomes.mme import OpioidDose
from prolo.outcomes.report import Selection
from prolo.outcomes.schemas import FollowUpIn, FollowUpOut
from prolo.security.principal import Principal
from prolo.web import DbSession, policy

router = APIRouter(prefix="/api/outcomes", tags=["outcomes"])
Clinical = Annotated[Principal, policy("admin", "clinician")]


@router.get("/report", response_model=dict[str, Any])
def outcome_report(
    session: DbSession,
    principal: Clinical,
    condition: Annotated[str | None, Query(max_length=60)] = None,
    practitioner_id: int | None = None,
    injectate: Annotated[str | None, Query(max_length=400)] = None,
    started_from: dt.date | None = None,
    started_to: dt.date | None = None,
    as_of: dt.date | None = None,
) -> dict[str, Any]:
    """The outcome report of the caller's clinic for a selection (JSON)."""
    selection = Selection(
        condition_id=condition or None,
        practitioner_id=practitioner_id,
        injectate=injectate or None,
        started_from=started_from,
        started_to=started_to,
    )
    report = service.outcome_report(
        session=session, principal=principal, selection=selection, as_of=as_of
    )
    for entry in report.get("evidence", []):
        entry.pop("svg", None)  # pictures are on the pages and in the HTML/PDF exports
    return report


@router.get("/courses/{course_id}/follow-ups", response_model=list[FollowUpOut])
def list_follow_ups(session: DbSession, principal: Clinical, course_id: int) -> list[FollowUpOut]:
    """A course's surgery and pain-medicine facts, baseline first."""
    rows = service.list_follow_ups(session=session, principal=principal, course_id=course_id)
    return [FollowUpOut.model_validate(r) for r in rows]


@router.put("/courses/{course_id}/follow-ups", response_model=FollowUpOut)
def record_follow_up(
    session: DbSession, principal: Clinical, course_id: int, data: FollowUpIn
) -> FollowUpOut:
    """Record (or replace) the facts at one timepoint; MME is computed from the opioids."""
    facts = service.FollowUpFacts(
        timepoint=data.timepoint,
        surgery_planned=data.surgery_planned,
        surgery_done=data.surgery_done,
        pain_medicine_use=data.pain_medicine_use,
        opioid_use=data.opioid_use,
        opioids=tuple(OpioidDose(o.drug, o.daily_dose) for o in data.opioids),
    )
    row = service.record_follow_up(
        session=session, principal=principal, course_id=course_id, facts=facts
    )
    return FollowUpOut.model_validate(row)
