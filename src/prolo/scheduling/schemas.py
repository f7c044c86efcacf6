"""What crosses the API for the calendar and booking.

Times are aware datetimes (any offset; stored and returned in UTC). A naive time is
refused: the API never guesses a zone. Working hours and closures are in the clinic's
local wall-clock time, as the clinic thinks of them.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from prolo.scheduling.models import Appointment

Kind = Literal["consultation", "injection", "follow_up"]
CancelReason = Literal["patient_request", "clinic_request", "course_stopped", "other"]
Id = Annotated[int, Field(ge=1, le=2_147_483_647)]
# Far enough for any real calendar, near enough that date arithmetic never overflows.
EARLIEST_DAY = dt.date(2000, 1, 1)
LATEST_DAY = dt.date(2100, 12, 31)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _sane_moment(value: dt.datetime, name: str) -> dt.datetime:
    if not EARLIEST_DAY <= value.astimezone(dt.UTC).date() <= LATEST_DAY:
        raise ValueError(f"{name} must be between {EARLIEST_DAY} and {LATEST_DAY}")
    return value.astimezone(dt.UTC)


class AppointmentIn(_In):
    """A booking request. ``ends_at`` defaults to the start plus the type's length."""

    patient_id: Id
    practitioner_id: Id
    room_id: Id
    kind: Kind
    starts_at: AwareDatetime
    ends_at: AwareDatetime | None = None
    course_id: Id | None = None
    session_number: Annotated[int, Field(ge=1, le=20)] | None = None

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _sane(cls, value: dt.datetime | None, info: ValidationInfo) -> dt.datetime | None:
        return None if value is None else _sane_moment(value, info.field_name or "time")

    @model_validator(mode="after")
    def _session_needs_course(self) -> AppointmentIn:
        if self.session_number is not None and self.course_id is None:
            raise ValueError("session_number needs a course_id")
        return self


class RescheduleIn(_In):
    """Move a booked appointment; practitioner and room stay unless given."""

    starts_at: AwareDatetime
    ends_at: AwareDatetime | None = None
    practitioner_id: Id | None = None
    room_id: Id | None = None

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _sane(cls, value: dt.datetime | None, info: ValidationInfo) -> dt.datetime | None:
        return None if value is None else _sane_moment(value, info.field_name or "time")


class CancelIn(_In):
    reason: CancelReason = "patient_request"


class AppointmentOut(BaseModel):
    """An appointment; ``practitioner_*`` is when the practitioner is held."""

    id: int
    patient_id: int
    practitioner_id: int
    room_id: int | None
    course_id: int | None
    session_number: int | None
    kind: str
    status: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    practitioner_starts_at: dt.datetime
    practitioner_ends_at: dt.datetime
    cancel_reason: str | None

    @classmethod
    def of(cls, appointment: Appointment) -> AppointmentOut:
        held_from, held_until = appointment.practitioner_span
        return cls(
            id=appointment.id,
            patient_id=appointment.patient_id,
            practitioner_id=appointment.practitioner_id,
            room_id=appointment.room_id,
            course_id=appointment.course_id,
            session_number=appointment.session_number,
            kind=appointment.kind,
            status=appointment.status,
            starts_at=appointment.starts_at,
            ends_at=appointment.ends_at,
            practitioner_starts_at=held_from,
            practitioner_ends_at=held_until,
            cancel_reason=appointment.cancel_reason,
        )


class FreeSlotOut(BaseModel):
    starts_at: dt.datetime
    ends_at: dt.datetime
    practitioner_id: int
    room_ids: list[int]


class SlotPage(BaseModel):
    kind: str
    minutes: int
    items: list[FreeSlotOut]
    truncated: bool


class PhaseIn(_In):
    name: str = Field(min_length=1, max_length=40)
    minutes: int = Field(ge=5, le=480, multiple_of=5)
    practitioner: bool


class AppointmentTypeIn(_In):
    """A clinic's length and phases for a kind of visit."""

    name: str = Field(min_length=1, max_length=100)
    phases: list[PhaseIn] = Field(min_length=1, max_length=8)

    @model_validator(mode="after")
    def _practitioner_phases_contiguous(self) -> AppointmentTypeIn:
        flags = [p.practitioner for p in self.phases]
        if not any(flags):
            raise ValueError("at least one phase needs the practitioner")
        first, last = flags.index(True), len(flags) - 1 - flags[::-1].index(True)
        if not all(flags[first : last + 1]):
            raise ValueError("the phases that need the practitioner must follow each other")
        if sum(p.minutes for p in self.phases) > 480:
            raise ValueError("a visit is at most 8 hours")
        return self


class PhaseOut(BaseModel):
    name: str
    minutes: int
    practitioner: bool


class AppointmentTypeOut(BaseModel):
    code: str
    name: str
    minutes: int
    phases: list[PhaseOut]


class WorkingWindow(_In):
    """One weekly window, local clinic time: weekday 0 = Monday."""

    weekday: int = Field(ge=0, le=6)
    starts: dt.time
    ends: dt.time

    @field_validator("starts", "ends")
    @classmethod
    def _wall_clock(cls, value: dt.time) -> dt.time:
        if value.tzinfo is not None:
            raise ValueError("working hours are local wall-clock times, without a zone")
        if value.second or value.microsecond or value.minute % 5:
            raise ValueError("working hours are on 5-minute marks, e.g. 08:30")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> WorkingWindow:
        if self.ends <= self.starts:
            raise ValueError("ends must be after starts (a window does not cross midnight)")
        return self


class WorkingHoursIn(_In):
    windows: list[WorkingWindow] = Field(max_length=70)

    @model_validator(mode="after")
    def _no_overlap(self) -> WorkingHoursIn:
        by_day = sorted(self.windows, key=lambda w: (w.weekday, w.starts))
        for before, after in zip(by_day, by_day[1:], strict=False):
            if before.weekday == after.weekday and after.starts < before.ends:
                raise ValueError(f"windows on weekday {before.weekday} overlap")
        return self


class WorkingHoursOut(BaseModel):
    practitioner_id: int
    timezone: str
    windows: list[WorkingWindow]


class ClosureIn(_In):
    """Closed local days, first to last inclusive: the clinic, one room or a practitioner."""

    first_day: dt.date
    last_day: dt.date
    room_id: Id | None = None
    practitioner_id: Id | None = None
    reason: str = Field(default="", max_length=200)

    @model_validator(mode="after")
    def _valid(self) -> ClosureIn:
        for name in ("first_day", "last_day"):
            if not EARLIEST_DAY <= getattr(self, name) <= LATEST_DAY:
                raise ValueError(f"{name} must be between {EARLIEST_DAY} and {LATEST_DAY}")
        if self.last_day < self.first_day:
            raise ValueError("last_day is before first_day")
        if (self.last_day - self.first_day).days > 366:
            raise ValueError("a closure is at most a year; add another for longer")
        if self.room_id is not None and self.practitioner_id is not None:
            raise ValueError("a closure is for the clinic, one room or one practitioner")
        return self


class ClosureOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    first_day: dt.date
    last_day: dt.date
    room_id: int | None
    practitioner_id: int | None
    reason: str


Weekday = Annotated[int, Field(ge=0, le=6)]


class TimeWindowIn(_In):
    starts: dt.time
    ends: dt.time

    @model_validator(mode="after")
    def _ordered(self) -> TimeWindowIn:
        if self.starts.tzinfo is not None or self.ends.tzinfo is not None:
            raise ValueError("preferred times are local wall-clock times, without a zone")
        if self.ends <= self.starts:
            raise ValueError("ends must be after starts")
        return self


class PreferencesIn(_In):
    """When the patient would rather come, local clinic time; empty means any."""

    weekdays: list[Weekday] = Field(default_factory=list, max_length=7)
    times: list[TimeWindowIn] = Field(default_factory=list, max_length=6)


class ScheduleCourseIn(_In):
    """Auto-schedule the course's remaining sessions."""

    preferences: PreferencesIn | None = None
    earliest_day: dt.date | None = None
    dry_run: bool = False

    @field_validator("earliest_day")
    @classmethod
    def _sane_day(cls, value: dt.date | None) -> dt.date | None:
        if value is not None and not EARLIEST_DAY <= value <= LATEST_DAY:
            raise ValueError(f"earliest_day must be between {EARLIEST_DAY} and {LATEST_DAY}")
        return value


class PlannedSessionOut(BaseModel):
    session_number: int
    starts_at: dt.datetime
    ends_at: dt.datetime
    practitioner_id: int
    room_id: int
    in_window: bool
    preference_met: bool
    appointment_id: int | None


class UnplacedSessionOut(BaseModel):
    session_number: int
    reason: str


class ScheduleOut(BaseModel):
    course_id: int
    dry_run: bool
    placed: list[PlannedSessionOut]
    unplaced: list[UnplacedSessionOut]
