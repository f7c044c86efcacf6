"""Screening results stored on the patient's record.

A stored screening is what the clinician saw when they screened: the answers given,
the engine's whole result (``result``, as the API returned it) and one row per reason
with its rule id, kind and sources, so that "who had the bleeding-risk rule fire" is a
query, not a JSON search. Rows are written once and never updated: a new screening is a
new row.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from prolo.db import Base
from prolo.dbtypes import JsonDoc, created_column, fk, id_column, one_of

DECISIONS = ("candidate", "candidate_with_precautions", "not_candidate", "refer")
REASON_KINDS = ("red_flag", "absolute", "relative", "duration", "evidence")


class Screening(Base):
    """One screening of one patient by a clinician, as decided by the engine."""

    __tablename__ = "screening"
    __table_args__ = (
        one_of("decision", DECISIONS),
        Index("ix_screening_patient_screened", "patient_id", "screened_at"),
    )

    id: Mapped[int] = id_column()
    patient_id: Mapped[int] = fk("patient.id", ondelete="CASCADE", index=False)
    clinic_id: Mapped[int] = fk("clinic.id")
    screened_by_user_id: Mapped[int | None] = fk("app_user.id", nullable=True, ondelete="SET NULL")
    screened_at: Mapped[dt.datetime] = created_column()
    decision: Mapped[str] = mapped_column(String(30))
    # The safety rules' version, so a later change of rules can be told apart.
    safety_rules_version: Mapped[int] = mapped_column(Integer)
    answers: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    result: Mapped[dict[str, Any]] = mapped_column(JsonDoc)

    reasons: Mapped[list[ScreeningReason]] = relationship(
        back_populates="screening",
        order_by="ScreeningReason.position",
        cascade="all, delete-orphan",
    )


class ScreeningReason(Base):
    """One reason of a stored screening: the rule that fired and where it comes from."""

    __tablename__ = "screening_reason"
    __table_args__ = (
        UniqueConstraint("screening_id", "position"),
        one_of("kind", REASON_KINDS),
        Index("ix_screening_reason_rule", "rule_id"),
    )

    id: Mapped[int] = id_column()
    screening_id: Mapped[int] = fk("screening.id", ondelete="CASCADE", index=False)
    position: Mapped[int] = mapped_column(Integer)
    rule_id: Mapped[str] = mapped_column(String(60))
    kind: Mapped[str] = mapped_column(String(12))
    condition_id: Mapped[str | None] = mapped_column(String(60))
    patient_message: Mapped[str] = mapped_column(Text)
    clinician_message: Mapped[str] = mapped_column(Text)
    sources: Mapped[list[dict[str, Any]]] = mapped_column(JsonDoc)

    screening: Mapped[Screening] = relationship(back_populates="reasons")
