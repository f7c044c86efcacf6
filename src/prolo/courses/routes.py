"""JSON API for treatment courses and informed consent."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from prolo.courses import service
from prolo.courses.consent import CONSENT_TEXTS, CURRENT_VERSION, ConsentText
from prolo.courses.models import TreatmentCourse
from prolo.courses.schemas import (
    ConsentIn,
    ConsentOut,
    ConsentStatementOut,
    ConsentTextOut,
    CourseDetailOut,
    CourseIn,
    CourseOut,
    CoursePage,
    CourseStatusIn,
    CourseUpdate,
    SessionOut,
    SourceOut,
)
from prolo.errors import NotFound
from prolo.scheduling import service as scheduling
from prolo.scheduling.schemas import AppointmentOut
from prolo.security.principal import Principal
from prolo.web import DbSession, policy

router = APIRouter(prefix="/api", tags=["courses"])

IdPath = Annotated[int, Path(ge=1, le=2_147_483_647)]
Reader = Annotated[Principal, policy("admin", "clinician", "patient")]
Writer = Annotated[Principal, policy("admin", "clinician")]
Anyone = Annotated[Principal, policy("authenticated")]


def _detail(session: DbSession, course: TreatmentCourse) -> CourseDetailOut:
    consent = service.consent_on_file(session=session, course=course)
    procedures = service.procedures_by_appointment(session=session, course=course)
    sessions = [
        SessionOut(
            number=s.number,
            status=s.status,
            window_opens=s.window_opens,
            window_closes=s.window_closes,
            appointment=AppointmentOut.of(s.appointment) if s.appointment else None,
            procedure_id=procedures.get(s.appointment.id) if s.appointment else None,
        )
        for s in scheduling.course_sessions(session=session, course=course)
    ]
    return CourseDetailOut(
        **CourseOut.model_validate(course).model_dump(),
        consent=ConsentOut.model_validate(consent) if consent else None,
        sessions=sessions,
    )


@router.get("/courses", response_model=CoursePage)
def list_courses(
    session: DbSession,
    principal: Reader,
    patient_id: Annotated[int | None, Query(ge=1, le=2_147_483_647)] = None,
    status: Literal["planned", "active", "completed", "stopped"] | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> CoursePage:
    """Courses the caller may see, newest first."""
    rows, total = service.list_courses(
        session=session,
        principal=principal,
        patient_id=patient_id,
        status=status,
        limit=limit,
        offset=offset,
    )
    return CoursePage(items=[CourseOut.model_validate(r) for r in rows], total=total)


@router.post("/courses", response_model=CourseDetailOut, status_code=201)
def plan_course(session: DbSession, principal: Writer, data: CourseIn) -> CourseDetailOut:
    """Plan a course from the condition's protocol; figures it does not publish are required."""
    course = service.plan_course(session=session, principal=principal, data=data)
    return _detail(session, course)


@router.get("/courses/{course_id}", response_model=CourseDetailOut)
def read_course(session: DbSession, principal: Reader, course_id: IdPath) -> CourseDetailOut:
    """The plan, the consent on file and each session with its appointment and window."""
    course = service.access_course_by_id(session=session, principal=principal, course_id=course_id)
    return _detail(session, course)


@router.patch("/courses/{course_id}", response_model=CourseDetailOut)
def update_course(
    session: DbSession, principal: Writer, course_id: IdPath, data: CourseUpdate
) -> CourseDetailOut:
    """Edit the plan of a planned or active course."""
    course = service.update_course(
        session=session, principal=principal, course_id=course_id, data=data
    )
    return _detail(session, course)


@router.post("/courses/{course_id}/status", response_model=CourseDetailOut)
def change_course_status(
    session: DbSession, principal: Writer, course_id: IdPath, data: CourseStatusIn
) -> CourseDetailOut:
    """Start, complete or stop the course; 409 names the current status if not allowed."""
    course = service.change_course_status(
        session=session, principal=principal, course_id=course_id, data=data
    )
    return _detail(session, course)


@router.post("/courses/{course_id}/consent", response_model=ConsentOut, status_code=201)
def record_consent(
    session: DbSession, principal: Writer, course_id: IdPath, data: ConsentIn
) -> ConsentOut:
    """Record the patient's informed consent; every required statement must be acknowledged."""
    return ConsentOut.model_validate(
        service.record_consent(session=session, principal=principal, course_id=course_id, data=data)
    )


@router.post("/courses/{course_id}/consent/withdraw", response_model=ConsentOut)
def withdraw_consent(session: DbSession, principal: Writer, course_id: IdPath) -> ConsentOut:
    """The patient withdrew consent: no further session can be marked done."""
    return ConsentOut.model_validate(
        service.withdraw_consent(session=session, principal=principal, course_id=course_id)
    )


def _text_out(text: ConsentText) -> ConsentTextOut:
    return ConsentTextOut(
        version=text.version,
        title=text.title,
        statements=[
            ConsentStatementOut(
                id=s.id,
                text=s.text,
                required=s.required,
                sources=[
                    SourceOut(
                        source=src.source,
                        url=src.url,
                        locator=src.locator,
                        grade=src.grade,
                        note=src.note,
                    )
                    for src in s.sources
                ],
            )
            for s in text.statements
        ],
    )


@router.get("/consent-texts/current", response_model=ConsentTextOut)
def current_consent_text(principal: Anyone) -> ConsentTextOut:
    """The consent text in use, each statement with its sources."""
    return _text_out(CONSENT_TEXTS[CURRENT_VERSION])


@router.get("/consent-texts/{version}", response_model=ConsentTextOut)
def consent_text(principal: Anyone, version: Annotated[str, Path(max_length=20)]) -> ConsentTextOut:
    """A consent text by version, as a patient was shown it."""
    text = CONSENT_TEXTS.get(version)
    if text is None:
        raise NotFound("no such consent text version")
    return _text_out(text)
