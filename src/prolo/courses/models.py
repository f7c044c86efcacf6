"""Treatment courses and the procedure record of each injection session."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import CheckConstraint, Date, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from prolo.db import Base
from prolo.dbtypes import JsonDoc, created_column, fk, id_column, one_of

COURSE_STATUSES = ("planned", "active", "completed", "stopped")
STOP_REASONS = ("goal_reached", "no_response", "adverse_event", "patient_choice", "surgery")
PROCEDURE_STATUSES = ("draft", "signed", "amended")


class TreatmentCourse(Base):
    """A planned series of injection sessions for one condition."""

    __tablename__ = "treatment_course"
    __table_args__ = (
        one_of("status", COURSE_STATUSES),
        one_of("stop_reason", STOP_REASONS),
        CheckConstraint("(status = 'stopped') = (stop_reason IS NOT NULL)", name="stop_reason"),
        CheckConstraint("planned_sessions BETWEEN 1 AND 20", name="planned_sessions_range"),
        CheckConstraint(
            "interval_weeks_min >= 1 AND interval_weeks_max >= interval_weeks_min",
            name="interval_range",
        ),
    )

    id: Mapped[int] = id_column()
    clinic_id: Mapped[int] = fk("clinic.id")
    patient_id: Mapped[int] = fk("patient.id")
    practitioner_id: Mapped[int | None] = fk("practitioner.id", nullable=True)
    diagnosis_id: Mapped[int | None] = fk("diagnosis.id", nullable=True, ondelete="SET NULL")
    condition_id: Mapped[str] = mapped_column(String(60))  # knowledge-base entry
    status: Mapped[str] = mapped_column(String(12), default="planned")
    stop_reason: Mapped[str | None] = mapped_column(String(20))
    planned_sessions: Mapped[int] = mapped_column()
    interval_weeks_min: Mapped[int] = mapped_column()
    interval_weeks_max: Mapped[int] = mapped_column()
    injectate: Mapped[str] = mapped_column(String(200))
    started_on: Mapped[dt.date | None] = mapped_column(Date)
    ended_on: Mapped[dt.date | None] = mapped_column(Date)
    created_at: Mapped[dt.datetime] = created_column()


class Procedure(Base):
    """The record of one injection session. Signed records never change."""

    __tablename__ = "procedure"
    __table_args__ = (one_of("status", PROCEDURE_STATUSES),)

    id: Mapped[int] = id_column()
    clinic_id: Mapped[int] = fk("clinic.id")
    patient_id: Mapped[int] = fk("patient.id")
    course_id: Mapped[int | None] = fk("treatment_course.id", nullable=True)
    appointment_id: Mapped[int | None] = fk("appointment.id", nullable=True)
    practitioner_id: Mapped[int] = fk("practitioner.id")
    performed_at: Mapped[dt.datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(10), default="draft")
    details: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    note: Mapped[str | None] = mapped_column(Text)
    signed_at: Mapped[dt.datetime | None] = mapped_column()
    amends_id: Mapped[int | None] = fk("procedure.id", nullable=True)
    created_at: Mapped[dt.datetime] = created_column()
