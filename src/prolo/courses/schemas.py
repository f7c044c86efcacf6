"""What crosses the API for treatment courses and consent."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from prolo.courses.consent import CURRENT_VERSION
from prolo.scheduling.schemas import AppointmentOut, PreferencesIn

Id = Annotated[int, Field(ge=1, le=2_147_483_647)]
StopReason = Literal["goal_reached", "no_response", "adverse_event", "patient_choice", "surgery"]
Sessions = Annotated[int, Field(ge=1, le=20)]
Weeks = Annotated[int, Field(ge=1, le=52)]
Injectate = Annotated[str, Field(min_length=1, max_length=400)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _check_interval(low: int | None, high: int | None) -> None:
    if low is not None and high is not None and high < low:
        raise ValueError("interval_weeks_max is below interval_weeks_min")


class CourseIn(_In):
    """Plan a course from a condition's protocol; given figures override the protocol's.

    Where the knowledge base has no published protocol for the condition (or a published
    protocol lacks a figure), the clinician must give the figure.
    """

    patient_id: Id
    condition_id: str = Field(min_length=1, max_length=60, pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")
    diagnosis_id: Id | None = None
    practitioner_id: Id | None = None
    planned_sessions: Sessions | None = None
    interval_weeks_min: Weeks | None = None
    interval_weeks_max: Weeks | None = None
    injectate: Injectate | None = None
    preferences: PreferencesIn | None = None

    @model_validator(mode="after")
    def _interval(self) -> CourseIn:
        _check_interval(self.interval_weeks_min, self.interval_weeks_max)
        return self


class CourseUpdate(_In):
    """Edit the plan; fields left out keep their value."""

    practitioner_id: Id | None = None
    planned_sessions: Sessions | None = None
    interval_weeks_min: Weeks | None = None
    interval_weeks_max: Weeks | None = None
    injectate: Injectate | None = None
    preferences: PreferencesIn | None = None

    @model_validator(mode="after")
    def _interval(self) -> CourseUpdate:
        _check_interval(self.interval_weeks_min, self.interval_weeks_max)
        return self


class CourseStatusIn(_In):
    """Move a course on: planned → active → completed, or to stopped with a reason."""

    status: Literal["active", "completed", "stopped"]
    stop_reason: StopReason | None = None

    @model_validator(mode="after")
    def _reason_only_when_stopping(self) -> CourseStatusIn:
        if self.status == "stopped" and self.stop_reason is None:
            raise ValueError("stop_reason is required to stop a course")
        if self.status != "stopped" and self.stop_reason is not None:
            raise ValueError("stop_reason is only for stopping a course")
        return self


class ConsentIn(_In):
    """The statements the patient acknowledged, from one version of the consent text."""

    text_version: str = Field(default=CURRENT_VERSION, max_length=20)
    acknowledged: list[Annotated[str, Field(max_length=60)]] = Field(max_length=30)
    signed_at: AwareDatetime | None = None


class ConsentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    course_id: int
    patient_id: int
    signed_at: dt.datetime
    recorded_by_name: str
    text_version: str
    items: list[str]
    withdrawn_at: dt.datetime | None
    superseded_at: dt.datetime | None = None  # a newer consent to the course replaced it


class CourseOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    patient_id: int
    practitioner_id: int | None
    diagnosis_id: int | None
    condition_id: str
    status: str
    stop_reason: str | None
    planned_sessions: int
    interval_weeks_min: int
    interval_weeks_max: int
    injectate: str
    protocol_status: str | None
    protocol: dict[str, Any] | None
    preferences: dict[str, Any] | None
    started_on: dt.date | None
    ended_on: dt.date | None
    created_at: dt.datetime


class SessionOut(BaseModel):
    number: int
    status: str  # not_booked, booked, arrived, fulfilled
    window_opens: dt.date | None
    window_closes: dt.date | None
    appointment: AppointmentOut | None
    procedure_id: int | None


class CourseDetailOut(CourseOut):
    consent: ConsentOut | None
    sessions: list[SessionOut]


class CoursePage(BaseModel):
    items: list[CourseOut]
    total: int


class SourceOut(BaseModel):
    source: str
    url: str
    locator: str
    grade: str
    note: str


class ConsentStatementOut(BaseModel):
    id: str
    text: str
    required: bool
    sources: list[SourceOut]


class ConsentTextOut(BaseModel):
    version: str
    title: str
    statements: list[ConsentStatementOut]
