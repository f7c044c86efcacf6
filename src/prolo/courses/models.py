"""Treatment courses, informed consent, and the procedure record of each injection session."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import CheckConstraint, Date, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from prolo.db import Base
from prolo.dbtypes import JsonDoc, created_column, fk, id_column, one_of

COURSE_STATUSES = ("planned", "active", "completed", "stopped")
STOP_REASONS = ("goal_reached", "no_response", "adverse_event", "patient_choice", "surgery")
# Where the plan's figures came from: all from a published protocol; a published protocol
# that lacked some figures, which the clinician entered; or no published protocol at all
# (the knowledge base says insufficient_evidence), every figure entered by the clinician.
PROTOCOL_STATUSES = ("published", "incomplete", "not_published")
# A signed record never changes (database triggers refuse UPDATE and DELETE); a correction
# is a new record whose ``amends_id`` points at the one it corrects.
PROCEDURE_STATUSES = ("draft", "signed")
# The consent that counts for its course: neither withdrawn nor replaced by a newer one.
CONSENT_ON_FILE_SQL = "withdrawn_at IS NULL AND superseded_at IS NULL"
SCREENING_DECISIONS = ("candidate", "candidate_with_precautions", "not_candidate", "refer")


class TreatmentCourse(Base):
    """A planned series of injection sessions for one condition."""

    __tablename__ = "treatment_course"
    __table_args__ = (
        one_of("status", COURSE_STATUSES),
        one_of("stop_reason", STOP_REASONS),
        one_of("protocol_status", PROTOCOL_STATUSES),
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
    injectate: Mapped[str] = mapped_column(String(400))
    started_on: Mapped[dt.date | None] = mapped_column(Date)
    ended_on: Mapped[dt.date | None] = mapped_column(Date)
    created_at: Mapped[dt.datetime] = created_column()
    # NULL on rows written before protocols were recorded (and on synthetic data).
    protocol_status: Mapped[str | None] = mapped_column(String(16))
    # The knowledge-base protocol as it was when the course was planned (figures, sources).
    protocol: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    # The patient's preferred local weekdays and times: {"weekdays": [..], "times": [..]}.
    preferences: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    created_by_user_id: Mapped[int | None] = mapped_column()
    updated_at: Mapped[dt.datetime | None] = mapped_column()


class Consent(Base):
    """Informed consent to a course, recorded before its first session.

    ``items`` are the ids of the statements the patient acknowledged, from consent text
    ``text_version`` (:mod:`prolo.courses.consent`); the service refuses a consent that
    leaves out a required one. A course has at most one consent on file: the one neither
    withdrawn (the patient withdrew it) nor superseded (a newer consent to the course was
    recorded), which a partial unique index enforces. So withdrawing it leaves no consent on
    file until a new one is recorded: an older consent never counts again.
    """

    __tablename__ = "consent"
    __table_args__ = (
        CheckConstraint(
            "withdrawn_at IS NULL OR withdrawn_at >= signed_at", name="withdrawn_after_signed"
        ),
        CheckConstraint(
            "superseded_at IS NULL OR superseded_at >= signed_at", name="superseded_after_signed"
        ),
        # A consent ends once: withdrawn by the patient or replaced by a newer one.
        CheckConstraint(
            "withdrawn_at IS NULL OR superseded_at IS NULL", name="withdrawn_or_superseded"
        ),
        Index(
            "uq_consent_course_on_file",
            "course_id",
            unique=True,
            sqlite_where=text(CONSENT_ON_FILE_SQL),
            postgresql_where=text(CONSENT_ON_FILE_SQL),
        ),
    )

    id: Mapped[int] = id_column()
    clinic_id: Mapped[int] = fk("clinic.id", index=False)
    course_id: Mapped[int] = fk("treatment_course.id")
    patient_id: Mapped[int] = fk("patient.id")
    signed_at: Mapped[dt.datetime] = mapped_column()
    recorded_by_user_id: Mapped[int] = mapped_column()  # plain id: the row outlives logins
    recorded_by_name: Mapped[str] = mapped_column(String(200))
    text_version: Mapped[str] = mapped_column(String(20))
    items: Mapped[list[str]] = mapped_column(JsonDoc)
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column()
    created_at: Mapped[dt.datetime] = created_column()
    # When a newer consent to the course was recorded and replaced this one.
    superseded_at: Mapped[dt.datetime | None] = mapped_column()


class Procedure(Base):
    """The record of one injection session. Signed records never change.

    ``details`` holds the documented session (``prolo.courses.procedure_schemas``):
    injectate, sites with volumes, guidance, needle, pre-procedure checks with the stored
    screening result, immediate adverse events and the aftercare given. Each record is
    amended at most once (unique ``amends_id``), so the corrections form one chain.
    """

    __tablename__ = "procedure"
    __table_args__ = (
        one_of("status", PROCEDURE_STATUSES),
        one_of("screening_decision", SCREENING_DECISIONS),
        CheckConstraint(
            "(status = 'signed') = (signed_at IS NOT NULL)", name="signed_at_iff_signed"
        ),
        CheckConstraint(
            "(status = 'signed') = (signed_by_user_id IS NOT NULL)", name="signer_iff_signed"
        ),
        CheckConstraint(
            "(amends_id IS NULL) = (amendment_reason IS NULL)", name="amendment_has_reason"
        ),
        UniqueConstraint("amends_id"),
        Index("ix_procedure_patient_performed", "patient_id", "performed_at"),
        # One original record per session; its amendments share the appointment.
        Index(
            "uq_procedure_appointment_original",
            "appointment_id",
            unique=True,
            sqlite_where=text("amends_id IS NULL"),
            postgresql_where=text("amends_id IS NULL"),
        ),
    )

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
    amends_id: Mapped[int | None] = fk("procedure.id", nullable=True, index=False)
    created_at: Mapped[dt.datetime] = created_column()
    body_region: Mapped[str | None] = mapped_column(String(20))
    screening_decision: Mapped[str | None] = mapped_column(String(30))
    signed_by_user_id: Mapped[int | None] = fk("app_user.id", nullable=True, index=False)
    signed_by_name: Mapped[str | None] = mapped_column(String(200))
    amendment_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime | None] = mapped_column()
