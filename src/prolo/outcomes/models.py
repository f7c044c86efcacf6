"""The outcomes registry's own table: what a course's follow-up visit records beyond the
questionnaires.

The issue's "seed-level promise" questions (was surgery avoided? did pain-medicine and
opioid use fall?) need facts that no questionnaire holds, so each course gets one row
per follow-up timepoint here rather than new columns on other domains' tables.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Float,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from prolo.db import Base
from prolo.dbtypes import JsonDoc, created_column, fk, id_column, one_of

# The course timepoints at which these facts are recorded (a subset of the portal's).
FOLLOW_UP_TIMEPOINTS = ("baseline", "week_6", "month_3", "month_6", "month_12")


class CourseFollowUp(Base):
    """Surgery plans and pain-medicine use for one course at one timepoint.

    ``surgery_planned`` at baseline means an operation for the treated condition was
    planned or recommended before the course; at later timepoints it means it is still
    planned. ``surgery_done`` (never at baseline) means the operation has happened since
    baseline. ``opioid_mme_per_day`` is the total daily opioid dose in morphine milligram
    equivalents, computed from ``opioids`` with the CDC conversion factors
    (:mod:`prolo.outcomes.mme`). ``None`` everywhere means "not asked", never "no".
    """

    __tablename__ = "course_follow_up"
    __table_args__ = (
        UniqueConstraint("course_id", "timepoint"),
        one_of("timepoint", FOLLOW_UP_TIMEPOINTS),
        CheckConstraint(
            "opioid_mme_per_day IS NULL OR opioid_mme_per_day >= 0", name="mme_not_negative"
        ),
        CheckConstraint(
            "timepoint <> 'baseline' OR surgery_done IS NULL", name="no_surgery_done_at_baseline"
        ),
        CheckConstraint(
            "opioid_mme_per_day IS NULL OR opioid_use IS NOT NULL", name="mme_needs_opioid_use"
        ),
        Index("ix_course_follow_up_clinic_timepoint", "clinic_id", "timepoint"),
    )

    id: Mapped[int] = id_column()
    clinic_id: Mapped[int] = fk("clinic.id", index=False)
    patient_id: Mapped[int] = fk("patient.id")
    course_id: Mapped[int] = fk("treatment_course.id", ondelete="CASCADE", index=False)
    timepoint: Mapped[str] = mapped_column(String(12))
    surgery_planned: Mapped[bool | None] = mapped_column()
    surgery_done: Mapped[bool | None] = mapped_column()
    pain_medicine_use: Mapped[bool | None] = mapped_column()
    opioid_use: Mapped[bool | None] = mapped_column()
    opioid_mme_per_day: Mapped[float | None] = mapped_column(Float)
    opioids: Mapped[list[dict[str, Any]]] = mapped_column(JsonDoc, default=list)
    recorded_at: Mapped[dt.datetime] = created_column()


class OutcomeChange(Base):
    """The last change to any registry row of a course: which course, and when in commit
    order. Written only by database triggers (migration ``8f3a2c1d9e47``) on every table
    the outcome report reads, so no write path can forget it.

    One row per course, overwritten on each change, so the table never outgrows the
    number of courses. ``seq`` orders changes: on SQLite a counter (writers are serialized,
    so it grows in commit order); on PostgreSQL the writing transaction's id, read
    against the oldest running transaction (``pg_snapshot_xmin``) so that a transaction
    committing late is never skipped. No foreign key: a deleted course keeps its row, so
    the deletion reaches the kept facts too. See ``prolo.outcomes.facts``.
    """

    __tablename__ = "outcome_change"
    __table_args__ = (Index("ix_outcome_change_seq", "seq"),)

    course_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
