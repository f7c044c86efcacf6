"""The outbox: reminder jobs written in the caller's transaction, claimed by workers.

Booking, rescheduling and cancelling call :func:`enqueue_appointment_reminders` and
:func:`cancel_appointment_reminders` inside their own transaction, so a reminder exists
exactly when the change that causes it committed. Workers claim due jobs with a lease
(:func:`claim_due_jobs`); a job whose worker died is claimed again once the lease has
run out, so every job is sent at least once.

Each message is named by an idempotency key (which reminder, of which appointment, for
which start time) that is unique in the table, and its Message-ID is derived from that
key, so a job sent twice (the worker died after the mail server accepted it and before
it recorded that) arrives as the same message, which mail clients fold together.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from prolo.db import utcnow
from prolo.notify.models import OutboxJob
from prolo.scheduling.models import Appointment

# How long before an appointment its reminders go out. Operational choices, not
# clinical figures: one two days ahead (time to rearrange), one on the day.
REMINDER_LEADS: tuple[dt.timedelta, ...] = (dt.timedelta(hours=48), dt.timedelta(hours=3))
# Statuses in which a job may still be sent; cancelling or moving touches only these.
OPEN_STATUSES = ("pending", "claimed")
REMINDABLE_APPOINTMENT_STATUSES = ("booked",)


def message_id_for(key: str) -> str:
    """The left part of the Message-ID for idempotency ``key`` (stable, opaque)."""
    return "reminder." + hashlib.sha256(key.encode()).hexdigest()[:40]


def _utc_stamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def parse_stamp(value: str) -> dt.datetime:
    """The aware UTC datetime of a stamp written by this module."""
    return dt.datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)


def appointment_reminder_key(
    appointment_id: int, starts_at: dt.datetime, lead: dt.timedelta
) -> str:
    """The idempotency key of one reminder of one appointment at one start time."""
    minutes = int(lead.total_seconds() // 60)
    return f"appointment:{appointment_id}:{_utc_stamp(starts_at)}:lead{minutes}m"


def _jobs_for_appointment(session: Session, appointment_id: int) -> Sequence[OutboxJob]:
    return session.scalars(
        select(OutboxJob)
        .where(
            OutboxJob.appointment_id == appointment_id,
            OutboxJob.kind == "appointment_reminder",
        )
        .order_by(OutboxJob.id)
    ).all()


def _due_times(starts_at: dt.datetime, now: dt.datetime) -> list[tuple[dt.timedelta, dt.datetime]]:
    """(lead, due) for each reminder still worth sending; one right away when all passed."""
    if starts_at <= now:
        return []
    upcoming = [(lead, starts_at - lead) for lead in REMINDER_LEADS if starts_at - lead > now]
    if upcoming:
        return upcoming
    # Booked inside the shortest lead: one reminder now, with the shortest lead's key.
    return [(min(REMINDER_LEADS), now)]


def enqueue_appointment_reminders(
    *, session: Session, appointment: Appointment, now: dt.datetime | None = None
) -> list[OutboxJob]:
    """Make the appointment's pending reminders match its current time and status.

    Call it in the transaction that books or moves ``appointment``. Reminders for
    another start time that are still pending are cancelled, reminders for this time
    are created once (calling again changes nothing), and a cancelled appointment
    keeps none. Returns the open jobs for the current time.
    """
    now = now or utcnow()
    if appointment.id is None:
        session.flush()
    existing = {job.idempotency_key: job for job in _jobs_for_appointment(session, appointment.id)}
    if appointment.status not in REMINDABLE_APPOINTMENT_STATUSES:
        _cancel(existing.values(), now)
        return []
    wanted = {
        appointment_reminder_key(appointment.id, appointment.starts_at, lead): (lead, due)
        for lead, due in _due_times(appointment.starts_at, now)
    }
    moved = [job for key, job in existing.items() if key not in wanted]
    _cancel(moved, now)
    # The calendar entry's SEQUENCE (RFC 5545 3.8.7.4) grows each time the visit moves.
    stamp = _utc_stamp(appointment.starts_at)
    same_time = [
        j
        for j in existing.values()
        if j.payload.get("starts_at") == stamp and j.status != "cancelled"
    ]
    if same_time:
        sequence = int(same_time[0].payload.get("sequence", 0))
    else:
        sequence = max(
            (int(j.payload.get("sequence", 0)) + 1 for j in existing.values()), default=0
        )
    result: list[OutboxJob] = []
    for key, (lead, due) in wanted.items():
        found = existing.get(key)
        if found is None:
            job = OutboxJob(
                clinic_id=appointment.clinic_id,
                kind="appointment_reminder",
                patient_id=appointment.patient_id,
                appointment_id=appointment.id,
                idempotency_key=key,
                message_id=message_id_for(key),
                payload={
                    "starts_at": stamp,
                    "lead_minutes": int(lead.total_seconds() // 60),
                    "sequence": sequence,
                },
                status="pending",
                due_at=due,
                attempts=0,
                created_at=now,
                updated_at=now,
            )
            session.add(job)
            result.append(job)
        elif found.status == "cancelled":
            # Moved back to a time it had before: the same message becomes due again.
            found.status = "pending"
            found.due_at = due
            found.attempts = 0
            found.last_error = None
            found.payload = {**found.payload, "sequence": sequence}
            found.updated_at = now
            result.append(found)
        elif found.status in OPEN_STATUSES:
            result.append(found)
        # sent, skipped or failed: that message's story is over; never send it again.
    session.flush()
    return result


def _cancel(jobs: Any, now: dt.datetime) -> int:
    count = 0
    for job in jobs:
        if job.status in OPEN_STATUSES:
            job.status = "cancelled"
            job.claimed_by = None
            job.lease_until = None
            job.updated_at = now
            count += 1
    return count


def cancel_appointment_reminders(
    *, session: Session, appointment_id: int, now: dt.datetime | None = None
) -> int:
    """Cancel every reminder of the appointment not sent yet; returns how many.

    Call it in the transaction that cancels the appointment (or marks a no-show). A
    reminder a worker is sending at that moment may still arrive: its result is then
    not recorded as sent.
    """
    now = now or utcnow()
    result = session.execute(
        update(OutboxJob)
        .where(
            OutboxJob.appointment_id == appointment_id,
            OutboxJob.status.in_(OPEN_STATUSES),
        )
        .values(status="cancelled", claimed_by=None, lease_until=None, updated_at=now)
        .execution_options(synchronize_session="fetch")
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def questionnaire_reminder_key(
    patient_id: int, course_id: int | None, timepoint: str, window_opens: dt.datetime
) -> str:
    """The idempotency key of the reminder that a questionnaire window is open."""
    course = course_id if course_id is not None else "none"
    return f"questionnaire:{patient_id}:{course}:{timepoint}:{_utc_stamp(window_opens)}"


def enqueue_questionnaire_reminder(
    *,
    session: Session,
    clinic_id: int,
    patient_id: int,
    course_id: int | None,
    timepoint: str,
    instruments: Sequence[str],
    window_opens: dt.datetime,
    due_by: dt.datetime | None,
    now: dt.datetime | None = None,
) -> OutboxJob | None:
    """Enqueue one reminder that questionnaires are due, once per window.

    Returns the new job, or None when this window already has one (in any status).
    """
    now = now or utcnow()
    key = questionnaire_reminder_key(patient_id, course_id, timepoint, window_opens)
    if session.scalar(select(OutboxJob.id).where(OutboxJob.idempotency_key == key)) is not None:
        return None
    job = OutboxJob(
        clinic_id=clinic_id,
        kind="questionnaire_reminder",
        patient_id=patient_id,
        appointment_id=None,
        idempotency_key=key,
        message_id=message_id_for(key),
        payload={
            "course_id": course_id,
            "timepoint": timepoint,
            "instruments": list(instruments),
            "opens_at": _utc_stamp(window_opens),
            "due_by": _utc_stamp(due_by) if due_by is not None else None,
        },
        status="pending",
        due_at=max(now, window_opens),
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    session.add(job)
    session.flush()
    return job


def claimable(now: dt.datetime) -> Any:
    """The condition for a job a worker may take: due, and free or with a lapsed lease."""
    return or_(
        and_(OutboxJob.status == "pending", OutboxJob.due_at <= now),
        and_(OutboxJob.status == "claimed", OutboxJob.lease_until < now),
    )


def claim_due_jobs(
    *,
    session: Session,
    worker_id: str,
    lease: dt.timedelta,
    limit: int = 10,
    now: dt.datetime | None = None,
) -> list[OutboxJob]:
    """Take up to ``limit`` due jobs for ``worker_id`` until ``now + lease``.

    On PostgreSQL the rows are locked with ``FOR UPDATE SKIP LOCKED`` so concurrent
    workers take different jobs without waiting. On SQLite the caller must run this
    in an IMMEDIATE transaction (the database's single write lock serialises claims);
    the guarded UPDATE makes a lost race harmless on both.
    """
    now = now or utcnow()
    stmt = select(OutboxJob.id).where(claimable(now)).order_by(OutboxJob.due_at, OutboxJob.id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    ids = list(session.scalars(stmt.limit(limit)).all())
    if not ids:
        return []
    session.execute(
        update(OutboxJob)
        .where(OutboxJob.id.in_(ids), claimable(now))
        .values(
            status="claimed",
            claimed_by=worker_id,
            lease_until=now + lease,
            attempts=OutboxJob.attempts + 1,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return list(
        session.scalars(
            select(OutboxJob)
            .where(OutboxJob.id.in_(ids), OutboxJob.claimed_by == worker_id)
            .where(OutboxJob.status == "claimed")
            .order_by(OutboxJob.due_at, OutboxJob.id)
            .execution_options(populate_existing=True)
        ).all()
    )


def finish_job(
    *,
    session: Session,
    job_id: int,
    worker_id: str,
    status: str,
    error: str | None = None,
    retry_at: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> bool:
    """Record a claimed job's outcome if ``worker_id`` still holds it; True when recorded.

    ``status`` is ``sent``, ``skipped`` or ``failed``; or ``pending`` with ``retry_at``
    to try again later. False means the job was cancelled or re-claimed meanwhile.
    """
    now = now or utcnow()
    values: dict[str, Any] = {
        "status": status,
        "claimed_by": None,
        "lease_until": None,
        "updated_at": now,
        "last_error": error[:200] if error else None,
    }
    if status == "sent":
        values["sent_at"] = now
    if status == "pending":
        if retry_at is None:
            raise ValueError("a job put back to pending needs retry_at")
        values["due_at"] = retry_at
    result = session.execute(
        update(OutboxJob)
        .where(
            OutboxJob.id == job_id,
            OutboxJob.status == "claimed",
            OutboxJob.claimed_by == worker_id,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
