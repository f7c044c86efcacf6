"""The patient's side: questionnaire responses and scores, the flare diary, clinic
alerts, single-use portal links, clinic-loaded instrument wording and the clinic's
questionnaire schedule."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import CheckConstraint, Float, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from prolo.db import Base
from prolo.dbtypes import JsonDoc, created_column, fk, id_column, one_of

# When in a course a questionnaire is answered.
TIMEPOINTS = ("baseline", "pre_session", "week_6", "month_3", "month_6", "month_12", "ad_hoc")
RESPONSE_STATUSES = ("in-progress", "completed")


class QuestionnaireResponse(Base):
    """One answered instrument. Scored only once completed, in the same transaction."""

    __tablename__ = "questionnaire_response"
    __table_args__ = (
        one_of("timepoint", TIMEPOINTS),
        one_of("status", RESPONSE_STATUSES),
        # A retried submission carries the same key and is not stored twice.
        UniqueConstraint("patient_id", "idempotency_key"),
        Index("ix_qr_patient_instrument_authored", "patient_id", "instrument_id", "authored_at"),
    )

    id: Mapped[int] = id_column()
    clinic_id: Mapped[int] = fk("clinic.id")
    patient_id: Mapped[int] = fk("patient.id", index=False)
    course_id: Mapped[int | None] = fk("treatment_course.id", nullable=True)
    instrument_id: Mapped[str] = mapped_column(String(40))
    timepoint: Mapped[str] = mapped_column(String(12))
    status: Mapped[str] = mapped_column(String(12), default="completed")
    answers: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    authored_at: Mapped[dt.datetime] = mapped_column()
    idempotency_key: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[dt.datetime] = created_column()


class Score(Base):
    """One score (total or subscale) of a response: an Observation in FHIR terms."""

    __tablename__ = "score"
    __table_args__ = (
        UniqueConstraint("response_id", "score_key"),
        Index(
            "ix_score_patient_instrument_effective", "patient_id", "instrument_id", "effective_at"
        ),
    )

    id: Mapped[int] = id_column()
    response_id: Mapped[int] = fk("questionnaire_response.id", ondelete="CASCADE", index=False)
    patient_id: Mapped[int] = fk("patient.id", index=False)
    instrument_id: Mapped[str] = mapped_column(String(40))
    score_key: Mapped[str] = mapped_column(String(40))
    value: Mapped[float] = mapped_column(Float)
    effective_at: Mapped[dt.datetime] = mapped_column()


# The flare diary: one row per day (1-7) after an injection session.
SWELLING = ("none", "some", "marked")
REDNESS = ("none", "at_site", "spreading")
DIARY_DAYS = 7


class FlareDiaryEntry(Base):
    """One day of the seven-day diary after an injection session (the appointment)."""

    __tablename__ = "flare_diary_entry"
    __table_args__ = (
        UniqueConstraint("appointment_id", "day"),
        one_of("swelling", SWELLING),
        one_of("redness", REDNESS),
        CheckConstraint(f"day BETWEEN 1 AND {DIARY_DAYS}", name="day_range"),
        CheckConstraint("pain BETWEEN 0 AND 10", name="pain_range"),
    )

    id: Mapped[int] = id_column()
    clinic_id: Mapped[int] = fk("clinic.id")
    patient_id: Mapped[int] = fk("patient.id")
    appointment_id: Mapped[int] = fk("appointment.id", index=False)
    day: Mapped[int] = mapped_column()
    pain: Mapped[int] = mapped_column()
    swelling: Mapped[str] = mapped_column(String(8))
    redness: Mapped[str] = mapped_column(String(10))
    warmth: Mapped[bool] = mapped_column()
    fever: Mapped[bool] = mapped_column()
    normal_activity: Mapped[bool] = mapped_column()
    red_flags: Mapped[list[str]] = mapped_column(JsonDoc, default=list)  # warning-sign ids
    recorded_at: Mapped[dt.datetime] = mapped_column()
    created_at: Mapped[dt.datetime] = created_column()


ALERT_KINDS = ("flare_red_flag",)


class ClinicAlert(Base):
    """Something the clinic must look at now, shown on the staff home until acknowledged."""

    __tablename__ = "clinic_alert"
    __table_args__ = (
        one_of("kind", ALERT_KINDS),
        CheckConstraint(
            "(acknowledged_at IS NULL) = (acknowledged_by IS NULL)", name="acknowledged_pair"
        ),
        Index("ix_clinic_alert_clinic_open", "clinic_id", "acknowledged_at", "created_at"),
    )

    id: Mapped[int] = id_column()
    clinic_id: Mapped[int] = fk("clinic.id", index=False)
    patient_id: Mapped[int] = fk("patient.id")
    kind: Mapped[str] = mapped_column(String(20))
    diary_entry_id: Mapped[int | None] = fk(
        "flare_diary_entry.id", nullable=True, ondelete="CASCADE"
    )
    signs: Mapped[list[str]] = mapped_column(JsonDoc)  # warning-sign ids
    created_at: Mapped[dt.datetime] = created_column()
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column()
    acknowledged_by: Mapped[int | None] = fk("app_user.id", nullable=True, index=False)


class PortalLink(Base):
    """A single-use, expiring link into the portal (the kind a reminder email carries).

    The URL carries a token signed with the app secret naming this row; the row makes
    it single-use (``used_at``) and bounds the visit it opens (``visit_expires_at``).
    Only a hash of the visit's cookie secret is kept.
    """

    __tablename__ = "portal_link"
    __table_args__ = (
        CheckConstraint("expires_at > created_at", name="expires_after_created"),
        CheckConstraint("(used_at IS NULL) = (visit_hash IS NULL)", name="used_has_visit"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random, in the token
    clinic_id: Mapped[int] = fk("clinic.id", index=False)
    patient_id: Mapped[int] = fk("patient.id")
    created_by: Mapped[int | None] = fk("app_user.id", nullable=True, index=False)
    created_at: Mapped[dt.datetime] = created_column()
    expires_at: Mapped[dt.datetime] = mapped_column()
    used_at: Mapped[dt.datetime | None] = mapped_column()
    visit_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    visit_csrf: Mapped[str | None] = mapped_column(String(64))
    visit_expires_at: Mapped[dt.datetime | None] = mapped_column()


class InstrumentText(Base):
    """A clinic's licensed wording for one instrument (validated before it is stored)."""

    __tablename__ = "instrument_text"
    __table_args__ = (UniqueConstraint("clinic_id", "instrument_id"),)

    id: Mapped[int] = id_column()
    clinic_id: Mapped[int] = fk("clinic.id", index=False)
    instrument_id: Mapped[str] = mapped_column(String(40))
    texts: Mapped[dict[str, Any]] = mapped_column(JsonDoc)  # the file's parsed content
    loaded_by: Mapped[int | None] = fk("app_user.id", nullable=True, index=False)
    loaded_at: Mapped[dt.datetime] = created_column()


class DueScheduleSetting(Base):
    """A clinic's questionnaire schedule; absent means the defaults in ``schedule.py``."""

    __tablename__ = "due_schedule_setting"
    __table_args__ = (
        CheckConstraint("open_days_before BETWEEN 0 AND 60", name="open_days_range"),
        CheckConstraint("due_hours_before_session BETWEEN 0 AND 168", name="due_hours_range"),
        CheckConstraint("follow_up_due_days BETWEEN 0 AND 60", name="due_days_range"),
        CheckConstraint("last_follow_up_grace_days BETWEEN 0 AND 365", name="grace_range"),
    )

    clinic_id: Mapped[int] = mapped_column(
        ForeignKey("clinic.id", ondelete="CASCADE"), primary_key=True
    )
    pre_session: Mapped[bool] = mapped_column()
    follow_up_days: Mapped[dict[str, int]] = mapped_column(JsonDoc)  # timepoint -> days
    open_days_before: Mapped[int] = mapped_column()
    due_hours_before_session: Mapped[int] = mapped_column()
    follow_up_due_days: Mapped[int] = mapped_column()
    last_follow_up_grace_days: Mapped[int] = mapped_column()
    updated_at: Mapped[dt.datetime] = created_column()
