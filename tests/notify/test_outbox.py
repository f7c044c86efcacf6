"""The outbox: reminders follow their appointment; claims honour leases; one job per key."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from prolo.notify import outbox
from prolo.notify.models import OutboxJob
from tests.notify.helpers import NOW, book

HOUR = dt.timedelta(hours=1)
LEASE = dt.timedelta(minutes=5)


def _jobs(session: Session, appointment_id: int) -> list[OutboxJob]:
    return list(
        session.scalars(
            select(OutboxJob)
            .where(OutboxJob.appointment_id == appointment_id)
            .order_by(OutboxJob.id)
        )
    )


def test_booking_far_ahead_enqueues_one_reminder_per_lead(session: Session) -> None:
    visit = book(session, starts_at=NOW + 7 * 24 * HOUR)
    jobs = outbox.enqueue_appointment_reminders(
        session=session, appointment=visit.appointment, now=NOW
    )
    assert sorted(j.due_at for j in jobs) == sorted(
        visit.appointment.starts_at - lead for lead in outbox.REMINDER_LEADS
    )
    assert {j.status for j in jobs} == {"pending"}
    assert len({j.idempotency_key for j in jobs}) == len({j.message_id for j in jobs}) == 2
    # Enqueueing again (a retried request) adds nothing.
    again = outbox.enqueue_appointment_reminders(
        session=session, appointment=visit.appointment, now=NOW
    )
    assert {j.id for j in again} == {j.id for j in jobs}
    assert len(_jobs(session, visit.appointment.id)) == 2


def test_booking_inside_the_shortest_lead_sends_one_reminder_now(session: Session) -> None:
    visit = book(session, starts_at=NOW + HOUR)
    jobs = outbox.enqueue_appointment_reminders(
        session=session, appointment=visit.appointment, now=NOW
    )
    assert [(j.due_at, j.payload["lead_minutes"]) for j in jobs] == [
        (NOW, int(min(outbox.REMINDER_LEADS).total_seconds() // 60))
    ]


def test_an_appointment_in_the_past_gets_no_reminder(session: Session) -> None:
    visit = book(session, starts_at=NOW - HOUR)
    assert (
        outbox.enqueue_appointment_reminders(
            session=session, appointment=visit.appointment, now=NOW
        )
        == []
    )


def test_moving_an_appointment_replaces_its_pending_reminders(session: Session) -> None:
    visit = book(session, starts_at=NOW + 7 * 24 * HOUR)
    first = outbox.enqueue_appointment_reminders(
        session=session, appointment=visit.appointment, now=NOW
    )
    visit.appointment.starts_at += 24 * HOUR
    visit.appointment.ends_at += 24 * HOUR
    second = outbox.enqueue_appointment_reminders(
        session=session, appointment=visit.appointment, now=NOW
    )
    assert {j.status for j in first} == {"cancelled"}
    assert {j.status for j in second} == {"pending"}
    assert sorted(j.due_at for j in second) == sorted(
        visit.appointment.starts_at - lead for lead in outbox.REMINDER_LEADS
    )
    assert {j.payload["sequence"] for j in first} == {0}
    assert {j.payload["sequence"] for j in second} == {1}
    # Moving back revives the original messages (same keys) with a newer sequence.
    visit.appointment.starts_at -= 24 * HOUR
    visit.appointment.ends_at -= 24 * HOUR
    third = outbox.enqueue_appointment_reminders(
        session=session, appointment=visit.appointment, now=NOW
    )
    assert {j.id for j in third} == {j.id for j in first}
    assert {j.status for j in third} == {"pending"}
    assert {j.payload["sequence"] for j in third} == {2}
    assert len(_jobs(session, visit.appointment.id)) == 4


def test_a_sent_reminder_is_never_sent_again_after_a_move_back(session: Session) -> None:
    visit = book(session, starts_at=NOW + 7 * 24 * HOUR)
    jobs = outbox.enqueue_appointment_reminders(
        session=session, appointment=visit.appointment, now=NOW
    )
    early = min(jobs, key=lambda j: j.due_at)
    early.status = "sent"
    session.flush()
    again = outbox.enqueue_appointment_reminders(
        session=session, appointment=visit.appointment, now=NOW
    )
    assert early.id not in {j.id for j in again}
    assert early.status == "sent"


def test_cancelling_cancels_open_reminders_only(session: Session) -> None:
    visit = book(session, starts_at=NOW + 7 * 24 * HOUR)
    jobs = outbox.enqueue_appointment_reminders(
        session=session, appointment=visit.appointment, now=NOW
    )
    jobs[0].status = "sent"
    session.flush()
    n = outbox.cancel_appointment_reminders(
        session=session, appointment_id=visit.appointment.id, now=NOW
    )
    assert n == 1
    statuses = {j.id: j.status for j in _jobs(session, visit.appointment.id)}
    assert statuses == {jobs[0].id: "sent", jobs[1].id: "cancelled"}
    # A cancelled appointment passed to enqueue keeps no reminder either.
    visit.appointment.status = "cancelled"
    assert (
        outbox.enqueue_appointment_reminders(
            session=session, appointment=visit.appointment, now=NOW
        )
        == []
    )


def test_claims_take_due_jobs_once_and_lapsed_leases_again(session: Session) -> None:
    visit = book(session, starts_at=NOW + 3 * 24 * HOUR)
    jobs = outbox.enqueue_appointment_reminders(
        session=session, appointment=visit.appointment, now=NOW
    )
    first_due = min(j.due_at for j in jobs)
    assert outbox.claim_due_jobs(session=session, worker_id="w1", lease=LEASE, now=NOW) == []
    at = first_due + dt.timedelta(seconds=1)
    claimed = outbox.claim_due_jobs(session=session, worker_id="w1", lease=LEASE, now=at)
    assert [(j.due_at, j.claimed_by, j.attempts) for j in claimed] == [(first_due, "w1", 1)]
    # Another worker finds nothing while the lease holds ...
    assert outbox.claim_due_jobs(session=session, worker_id="w2", lease=LEASE, now=at) == []
    # ... and takes it over once the lease has lapsed (the first worker died).
    later = at + LEASE + dt.timedelta(seconds=1)
    taken = outbox.claim_due_jobs(session=session, worker_id="w2", lease=LEASE, now=later)
    assert [(j.id, j.claimed_by, j.attempts) for j in taken] == [(claimed[0].id, "w2", 2)]
    # The dead worker's late report is refused; the holder's is recorded.
    job_id = claimed[0].id
    assert not outbox.finish_job(
        session=session, job_id=job_id, worker_id="w1", status="sent", now=later
    )
    assert outbox.finish_job(
        session=session, job_id=job_id, worker_id="w2", status="sent", now=later
    )
    session.expire_all()
    job = session.get(OutboxJob, job_id)
    assert job is not None
    assert (job.status, job.sent_at, job.lease_until) == ("sent", later, None)


def test_questionnaire_reminder_is_enqueued_once_per_window(session: Session) -> None:
    visit = book(session, starts_at=NOW + 24 * HOUR)
    kwargs = {
        "session": session,
        "clinic_id": visit.clinic.id,
        "patient_id": visit.patient.id,
        "course_id": None,
        "timepoint": "week_6",
        "instruments": ["womac", "pgic"],
        "window_opens": NOW - HOUR,
        "due_by": NOW + 7 * 24 * HOUR,
        "now": NOW,
    }
    job = outbox.enqueue_questionnaire_reminder(**kwargs)  # type: ignore[arg-type]
    assert job is not None
    assert (job.kind, job.due_at, job.payload["instruments"]) == (
        "questionnaire_reminder",
        NOW,
        ["womac", "pgic"],
    )
    assert outbox.enqueue_questionnaire_reminder(**kwargs) is None  # type: ignore[arg-type]
