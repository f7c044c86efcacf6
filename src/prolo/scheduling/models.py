"""The clinic calendar: appointments, appointment types, working hours and closures.

No practitioner, room or patient is ever double-booked, and the database enforces it,
not only Python: on PostgreSQL by exclusion constraints over time ranges, on SQLite by
triggers that abort an overlapping insert or update (both created by the migration, see
``migrations/versions/*_calendar_and_booking.py``). Only the statuses in
:data:`ACTIVE_STATUSES` hold their time; a cancelled visit or a no-show frees it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import CheckConstraint, Date, Index, String, Time, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from prolo.db import Base
from prolo.dbtypes import JsonDoc, created_column, fk, id_column, one_of

APPOINTMENT_KINDS = ("consultation", "injection", "follow_up")
# FHIR Appointment.status subset: http://hl7.org/fhir/R4/valueset-appointmentstatus.html
APPOINTMENT_STATUSES = ("booked", "arrived", "fulfilled", "cancelled", "noshow")
# Statuses that hold the practitioner, the room and the patient.
ACTIVE_STATUSES = ("booked", "arrived", "fulfilled")
CANCEL_REASONS = ("patient_request", "clinic_request", "course_stopped", "other")

_ACTIVE_SQL = "status IN ('booked', 'arrived', 'fulfilled')"


class Appointment(Base):
    """A visit holding a room and a patient for [starts_at, ends_at).

    The practitioner is held for ``[practitioner_starts_at, practitioner_ends_at)``, the
    phases of the visit that need them (for an injection session: preparation and
    treatment, not recovery), so one clinician can work two rooms staggered. Both are
    NULL on rows written before phases existed, meaning the whole visit.
    """

    __tablename__ = "appointment"
    __table_args__ = (
        one_of("kind", APPOINTMENT_KINDS),
        one_of("status", APPOINTMENT_STATUSES),
        one_of("cancel_reason", CANCEL_REASONS),
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        CheckConstraint(
            "(practitioner_starts_at IS NULL) = (practitioner_ends_at IS NULL)",
            name="practitioner_span_pair",
        ),
        CheckConstraint(
            "practitioner_starts_at IS NULL OR (practitioner_starts_at >= starts_at "
            "AND practitioner_ends_at <= ends_at "
            "AND practitioner_ends_at > practitioner_starts_at)",
            name="practitioner_span_in_visit",
        ),
        CheckConstraint("session_number BETWEEN 1 AND 20", name="session_number_range"),
        Index("ix_appointment_practitioner_starts", "practitioner_id", "starts_at"),
        Index("ix_appointment_room_starts", "room_id", "starts_at"),
        Index("ix_appointment_patient_starts", "patient_id", "starts_at"),
        Index("ix_appointment_clinic_starts", "clinic_id", "starts_at"),
        # One live appointment per session of a course.
        Index(
            "uq_appointment_course_session",
            "course_id",
            "session_number",
            unique=True,
            sqlite_where=text(f"session_number IS NOT NULL AND {_ACTIVE_SQL}"),
            postgresql_where=text(f"session_number IS NOT NULL AND {_ACTIVE_SQL}"),
        ),
    )

    id: Mapped[int] = id_column()
    clinic_id: Mapped[int] = fk("clinic.id", index=False)
    patient_id: Mapped[int] = fk("patient.id", index=False)
    practitioner_id: Mapped[int] = fk("practitioner.id", index=False)
    room_id: Mapped[int | None] = fk("room.id", nullable=True, index=False)
    course_id: Mapped[int | None] = fk("treatment_course.id", nullable=True)
    session_number: Mapped[int | None] = mapped_column()
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(12), default="booked")
    starts_at: Mapped[dt.datetime] = mapped_column()
    ends_at: Mapped[dt.datetime] = mapped_column()
    practitioner_starts_at: Mapped[dt.datetime | None] = mapped_column()
    practitioner_ends_at: Mapped[dt.datetime | None] = mapped_column()
    cancelled_at: Mapped[dt.datetime | None] = mapped_column()
    cancel_reason: Mapped[str | None] = mapped_column(String(20))
    booked_by_user_id: Mapped[int | None] = mapped_column()  # plain id: the row outlives logins
    created_at: Mapped[dt.datetime] = created_column()
    updated_at: Mapped[dt.datetime | None] = mapped_column()

    @property
    def practitioner_span(self) -> tuple[dt.datetime, dt.datetime]:
        """When the practitioner is held: their phases, or the whole visit."""
        return (
            self.practitioner_starts_at or self.starts_at,
            self.practitioner_ends_at or self.ends_at,
        )


class AppointmentType(Base):
    """A clinic's own length and phases for a kind of visit, overriding the defaults.

    ``phases`` is a list of ``{"name": str, "minutes": int, "practitioner": bool}`` in
    visit order; their minutes add up to ``minutes``. The room and the patient are held
    for the whole visit, the practitioner for the phases marked ``practitioner``.
    """

    __tablename__ = "appointment_type"
    __table_args__ = (
        UniqueConstraint("clinic_id", "code"),
        one_of("code", APPOINTMENT_KINDS),
        CheckConstraint("minutes BETWEEN 5 AND 480", name="minutes_range"),
    )

    id: Mapped[int] = id_column()
    clinic_id: Mapped[int] = fk("clinic.id", index=False)
    code: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(100))
    minutes: Mapped[int] = mapped_column()
    phases: Mapped[list[dict[str, Any]]] = mapped_column(JsonDoc)
    updated_at: Mapped[dt.datetime] = created_column()


class WorkingHours(Base):
    """One weekly window in which a practitioner works, in the clinic's local time."""

    __tablename__ = "working_hours"
    __table_args__ = (
        CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday_range"),
        CheckConstraint("ends_local > starts_local", name="ends_after_start"),
        UniqueConstraint("practitioner_id", "weekday", "starts_local"),
    )

    id: Mapped[int] = id_column()
    practitioner_id: Mapped[int] = fk("practitioner.id", ondelete="CASCADE", index=False)
    weekday: Mapped[int] = mapped_column()  # 0 = Monday, as datetime.date.weekday()
    starts_local: Mapped[dt.time] = mapped_column(Time)
    ends_local: Mapped[dt.time] = mapped_column(Time)


class CalendarClosure(Base):
    """Local days, ``first_day`` to ``last_day`` inclusive, on which something is closed.

    With neither ``room_id`` nor ``practitioner_id`` the whole clinic is closed; with a
    room, only that room; with a practitioner, that practitioner is away.
    """

    __tablename__ = "calendar_closure"
    __table_args__ = (
        CheckConstraint("last_day >= first_day", name="last_after_first"),
        CheckConstraint("room_id IS NULL OR practitioner_id IS NULL", name="room_or_practitioner"),
        Index("ix_calendar_closure_clinic_days", "clinic_id", "first_day", "last_day"),
    )

    id: Mapped[int] = id_column()
    clinic_id: Mapped[int] = fk("clinic.id", index=False)
    room_id: Mapped[int | None] = fk("room.id", nullable=True, ondelete="CASCADE")
    practitioner_id: Mapped[int | None] = fk("practitioner.id", nullable=True, ondelete="CASCADE")
    first_day: Mapped[dt.date] = mapped_column(Date)
    last_day: Mapped[dt.date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = created_column()
