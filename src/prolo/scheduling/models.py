"""Appointments in the clinic calendar."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from prolo.db import Base
from prolo.dbtypes import created_column, fk, id_column, one_of

APPOINTMENT_KINDS = ("consultation", "injection", "follow_up")
# FHIR Appointment.status subset: http://hl7.org/fhir/R4/valueset-appointmentstatus.html
APPOINTMENT_STATUSES = ("booked", "arrived", "fulfilled", "cancelled", "noshow")


class Appointment(Base):
    """A visit holding a practitioner, a room and a patient for [starts_at, ends_at)."""

    __tablename__ = "appointment"
    __table_args__ = (
        one_of("kind", APPOINTMENT_KINDS),
        one_of("status", APPOINTMENT_STATUSES),
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        Index("ix_appointment_practitioner_starts", "practitioner_id", "starts_at"),
        Index("ix_appointment_room_starts", "room_id", "starts_at"),
        Index("ix_appointment_patient_starts", "patient_id", "starts_at"),
    )

    id: Mapped[int] = id_column()
    clinic_id: Mapped[int] = fk("clinic.id")
    patient_id: Mapped[int] = fk("patient.id", index=False)
    practitioner_id: Mapped[int] = fk("practitioner.id", index=False)
    room_id: Mapped[int | None] = fk("room.id", nullable=True, index=False)
    course_id: Mapped[int | None] = fk("treatment_course.id", nullable=True)
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(12), default="booked")
    starts_at: Mapped[dt.datetime] = mapped_column()
    ends_at: Mapped[dt.datetime] = mapped_column()
    created_at: Mapped[dt.datetime] = created_column()
