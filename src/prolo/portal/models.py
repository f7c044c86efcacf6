"""Questionnaire responses and the scores computed from them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Float, Index, String, UniqueConstraint
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
