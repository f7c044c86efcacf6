"""The outbox of reminder jobs and the practitioners' private calendar feeds."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import CheckConstraint, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from prolo.db import Base
from prolo.dbtypes import JsonDoc, created_column, fk, id_column, one_of

JOB_KINDS = ("appointment_reminder", "questionnaire_reminder")
# pending: waiting for due_at; claimed: a worker holds its lease; sent: delivered to the
# mail server; cancelled: made moot (appointment cancelled or moved); skipped: nothing to
# send (no address, appointment gone); failed: gave up after the last attempt.
JOB_STATUSES = ("pending", "claimed", "sent", "cancelled", "skipped", "failed")


class OutboxJob(Base):
    """One message to send, enqueued in the same transaction as the change behind it.

    ``idempotency_key`` names the message (which reminder of which appointment at which
    time) and is unique, so enqueueing twice stores one job; ``message_id`` is derived
    from it, so a resend after a crash carries the same Message-ID.
    """

    __tablename__ = "outbox_job"
    __table_args__ = (
        one_of("kind", JOB_KINDS),
        one_of("status", JOB_STATUSES),
        CheckConstraint(
            "(status = 'claimed') = (lease_until IS NOT NULL)", name="lease_only_when_claimed"
        ),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        Index("ix_outbox_job_status_due", "status", "due_at"),
    )

    id: Mapped[int] = id_column()
    clinic_id: Mapped[int] = fk("clinic.id", index=False)
    kind: Mapped[str] = mapped_column(String(30))
    patient_id: Mapped[int | None] = fk("patient.id", nullable=True, ondelete="CASCADE")
    appointment_id: Mapped[int | None] = fk("appointment.id", nullable=True, ondelete="CASCADE")
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    message_id: Mapped[str] = mapped_column(String(200), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    due_at: Mapped[dt.datetime] = mapped_column()
    attempts: Mapped[int] = mapped_column(default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    lease_until: Mapped[dt.datetime | None] = mapped_column()
    sent_at: Mapped[dt.datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(String(200))  # never health data
    created_at: Mapped[dt.datetime] = created_column()
    updated_at: Mapped[dt.datetime] = created_column()


class CalendarFeed(Base):
    """A practitioner's private iCalendar feed. Only a hash of the URL's token is kept."""

    __tablename__ = "calendar_feed"

    id: Mapped[int] = id_column()
    clinic_id: Mapped[int] = fk("clinic.id", index=False)
    practitioner_id: Mapped[int] = fk("practitioner.id")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[int | None] = fk("app_user.id", nullable=True, index=False)
    created_at: Mapped[dt.datetime] = created_column()
    revoked_at: Mapped[dt.datetime | None] = mapped_column()
    last_used_at: Mapped[dt.datetime | None] = mapped_column()
