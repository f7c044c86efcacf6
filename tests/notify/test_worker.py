"""The worker against a real SMTP server on loopback: what arrives, retries, refusals."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from icalendar import Calendar
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from prolo.notify import outbox
from prolo.notify.email import IDEMPOTENCY_HEADER
from prolo.notify.models import OutboxJob
from prolo.notify.worker import Worker, WorkerConfig, retry_delay
from prolo.security.models import AuditEvent
from prolo.settings import Settings
from tests.notify.helpers import NOW, book
from tests.notify.smtp import Inbox, free_port, smtp_server

LEASE = dt.timedelta(minutes=5)


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def inbox(smtp: tuple[Inbox, int]) -> Inbox:
    smtp[0].messages.clear()
    smtp[0].envelopes.clear()
    smtp[0].refuse.clear()
    return smtp[0]


def _worker(
    factory: sessionmaker[Session], settings: Settings, port: int, at: dt.datetime, **kw: object
) -> Worker:
    mail_settings = settings.model_copy(
        update={"smtp_port": port, "mail_from": "reminders@clinic.example.org"}
    )
    return Worker(
        factory,
        settings=mail_settings,
        config=WorkerConfig(lease=LEASE, smtp_timeout=5, **kw),  # type: ignore[arg-type]
        worker_id="test-worker",
        clock=lambda: at,
    )


def _job(session: Session, job_id: int) -> OutboxJob:
    session.expire_all()
    job = session.get(OutboxJob, job_id)
    assert job is not None
    return job


def test_an_appointment_reminder_arrives_with_its_calendar_entry(
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    smtp: tuple[Inbox, int],
    inbox: Inbox,
) -> None:
    starts = dt.datetime(2030, 3, 12, 14, 30, tzinfo=dt.UTC)  # 10:30 in New York (EDT)
    visit = book(session, starts_at=starts)
    visit.clinic.address = "12 Main Street, Springfield"
    visit.clinic.phone = "+1 555 0100"
    jobs = outbox.enqueue_appointment_reminders(
        session=session, appointment=visit.appointment, now=NOW
    )
    session.commit()
    first = min(jobs, key=lambda j: j.due_at)
    worker = _worker(session_factory, settings, smtp[1], first.due_at)
    stats = worker.run_once()
    assert (stats.claimed, stats.sent) == (1, 1)

    assert len(inbox.messages) == 1
    msg = inbox.messages[0]
    assert inbox.envelopes[0] == ("reminders@clinic.example.org", ["ana.silva@example.com"])
    assert msg["To"] == "ana.silva@example.com"
    assert msg["Message-ID"] == f"<{first.message_id}@clinic.example.org>"
    assert msg[IDEMPOTENCY_HEADER] == first.idempotency_key
    assert msg["Subject"] == "Reminder: your appointment on Tue 12 Mar at 10:30"
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert "Hello Ana," in text and "Tuesday 12 March 2030 at 10:30 (EDT)" in text
    assert "treatment session" in text and "+1 555 0100" in text
    attachments = list(msg.iter_attachments())
    assert [a.get_filename() for a in attachments] == ["appointment.ics"]
    assert attachments[0].get_content_type() == "text/calendar"
    assert attachments[0].get_param("method") == "PUBLISH"
    cal = Calendar.from_ical(attachments[0].get_payload(decode=True))
    assert str(cal["method"]) == "PUBLISH" and str(cal["version"]) == "2.0"
    (event,) = cal.walk("VEVENT")
    assert str(event["uid"]) == f"appointment-{visit.appointment.id}@clinic.example.org"
    assert event.decoded("dtstart") == starts
    assert event.decoded("dtend") == starts + dt.timedelta(minutes=30)
    assert int(event["sequence"]) == 0
    assert str(event["status"]) == "CONFIRMED"
    assert str(event["location"]) == "12 Main Street, Springfield"

    job = _job(session, first.id)
    assert (job.status, job.sent_at, job.attempts, job.lease_until) == (
        "sent",
        first.due_at,
        1,
        None,
    )
    events = session.scalars(
        select(AuditEvent.event).where(AuditEvent.patient_id == visit.patient.id)
    ).all()
    assert list(events) == ["reminder.compose", "reminder.sent"]
    # Nothing else is due at that moment: a second cycle sends nothing.
    assert worker.run_once().claimed == 0
    assert len(inbox.messages) == 1


def test_a_moved_appointment_sends_its_new_time_with_a_higher_sequence(
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    smtp: tuple[Inbox, int],
    inbox: Inbox,
) -> None:
    visit = book(session, starts_at=NOW + dt.timedelta(hours=30))
    outbox.enqueue_appointment_reminders(session=session, appointment=visit.appointment, now=NOW)
    visit.appointment.starts_at += dt.timedelta(hours=2)
    visit.appointment.ends_at += dt.timedelta(hours=2)
    outbox.enqueue_appointment_reminders(session=session, appointment=visit.appointment, now=NOW)
    session.commit()
    due = visit.appointment.starts_at - min(outbox.REMINDER_LEADS)
    stats = _worker(session_factory, settings, smtp[1], due).run_once()
    assert (stats.claimed, stats.sent) == (1, 1)
    (msg,) = inbox.messages
    (attachment,) = msg.iter_attachments()
    (event,) = Calendar.from_ical(attachment.get_payload(decode=True)).walk("VEVENT")
    assert event.decoded("dtstart") == visit.appointment.starts_at
    assert int(event["sequence"]) == 1


def test_a_reminder_cancelled_after_it_was_due_is_not_sent(
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    smtp: tuple[Inbox, int],
    inbox: Inbox,
) -> None:
    visit = book(session, starts_at=NOW + dt.timedelta(hours=1))
    (job,) = outbox.enqueue_appointment_reminders(
        session=session, appointment=visit.appointment, now=NOW
    )
    # Cancelled without calling the outbox (a path that forgot to): the worker notices.
    visit.appointment.status = "cancelled"
    session.commit()
    stats = _worker(session_factory, settings, smtp[1], NOW).run_once()
    assert (stats.claimed, stats.cancelled, stats.sent) == (1, 1, 0)
    assert inbox.messages == []
    assert _job(session, job.id).status == "cancelled"


def test_a_patient_without_email_is_skipped(
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    smtp: tuple[Inbox, int],
    inbox: Inbox,
) -> None:
    visit = book(session, starts_at=NOW + dt.timedelta(hours=1), email=None)
    (job,) = outbox.enqueue_appointment_reminders(
        session=session, appointment=visit.appointment, now=NOW
    )
    session.commit()
    stats = _worker(session_factory, settings, smtp[1], NOW).run_once()
    assert (stats.claimed, stats.skipped) == (1, 1)
    job = _job(session, job.id)
    assert (job.status, job.last_error) == ("skipped", "patient has no email address")
    assert inbox.messages == []


def test_an_unreachable_mail_server_means_retry_later(
    session: Session, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    visit = book(session, starts_at=NOW + dt.timedelta(hours=1))
    (job,) = outbox.enqueue_appointment_reminders(
        session=session, appointment=visit.appointment, now=NOW
    )
    session.commit()
    stats = _worker(session_factory, settings, free_port(), NOW, max_attempts=2).run_once()
    assert stats.retried == 1
    job = _job(session, job.id)
    assert (job.status, job.attempts, job.due_at) == ("pending", 1, NOW + retry_delay(1))
    assert job.last_error == "ConnectionRefusedError while sending"
    # The second failure is the last attempt allowed: the job fails for good.
    later = NOW + retry_delay(1)
    stats = _worker(session_factory, settings, free_port(), later, max_attempts=2).run_once()
    assert stats.failed == 1
    assert _job(session, job.id).status == "failed"


def test_a_refused_recipient_fails_without_retrying(
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    smtp: tuple[Inbox, int],
    inbox: Inbox,
) -> None:
    inbox.refuse.add("ana.silva@example.com")
    visit = book(session, starts_at=NOW + dt.timedelta(hours=1))
    (job,) = outbox.enqueue_appointment_reminders(
        session=session, appointment=visit.appointment, now=NOW
    )
    session.commit()
    stats = _worker(session_factory, settings, smtp[1], NOW).run_once()
    assert stats.failed == 1
    job = _job(session, job.id)
    assert (job.status, job.attempts) == ("failed", 1)
    assert job.last_error == "recipient refused (550)"


def test_a_questionnaire_reminder_arrives_without_naming_the_instruments(
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    smtp: tuple[Inbox, int],
    inbox: Inbox,
) -> None:
    visit = book(session, starts_at=NOW + dt.timedelta(days=3))
    job = outbox.enqueue_questionnaire_reminder(
        session=session,
        clinic_id=visit.clinic.id,
        patient_id=visit.patient.id,
        course_id=None,
        timepoint="week_6",
        instruments=["womac", "pgic"],
        window_opens=NOW,
        due_by=dt.datetime(2030, 3, 11, 4, 0, tzinfo=dt.UTC),
        now=NOW,
    )
    assert job is not None
    session.commit()
    stats = _worker(session_factory, settings, smtp[1], NOW).run_once()
    assert stats.sent == 1
    (msg,) = inbox.messages
    text = msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "fill in 2 questionnaires by Monday 11 March 2030" in text
    assert "http://127.0.0.1:8000/portal" in text
    assert "womac" not in text.lower() and "pgic" not in text.lower()
    assert list(msg.iter_attachments()) == []


def _course_with_a_session(session: Session, visit_starts: dt.datetime):  # type: ignore[no-untyped-def]
    from prolo.courses.models import TreatmentCourse

    visit = book(session, starts_at=visit_starts)
    course = TreatmentCourse(
        clinic_id=visit.clinic.id,
        patient_id=visit.patient.id,
        condition_id="knee-osteoarthritis",
        status="planned",
        planned_sessions=3,
        interval_weeks_min=4,
        interval_weeks_max=4,
        injectate="dextrose (test)",
        created_at=NOW - dt.timedelta(days=2),
    )
    session.add(course)
    session.flush()
    visit.appointment.course_id = course.id
    session.flush()
    return visit, course


def test_the_sweep_enqueues_one_reminder_per_open_window(
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    smtp: tuple[Inbox, int],
    inbox: Inbox,
) -> None:
    from prolo.portal.service import open_windows

    visit, course = _course_with_a_session(session, NOW + dt.timedelta(days=3))
    session.commit()
    windows = open_windows(session=session, clinic_id=visit.clinic.id, now=NOW)
    assert [w.timepoint for w in windows] == ["baseline"]
    worker = _worker(session_factory, settings, smtp[1], NOW)
    assert worker.sweep() == 1
    assert worker.sweep() == 0  # the window's reminder exists already
    jobs = session.scalars(
        select(OutboxJob).where(OutboxJob.kind == "questionnaire_reminder")
    ).all()
    assert [(j.patient_id, j.payload["course_id"], j.payload["timepoint"]) for j in jobs] == [
        (visit.patient.id, course.id, "baseline")
    ]
    assert jobs[0].payload["instruments"] == list(windows[0].instruments)
    stats = worker.run_once()
    assert stats.sent >= 1
    (msg,) = [m for m in inbox.messages if "questionnaire" in str(m["Subject"])]
    count = len(windows[0].instruments)
    what = "a short questionnaire" if count == 1 else f"{count} questionnaires"
    assert f"fill in {what} by" in msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]


def test_a_questionnaire_reminder_answered_meanwhile_is_not_sent(
    session: Session,
    session_factory: sessionmaker[Session],
    settings: Settings,
    smtp: tuple[Inbox, int],
    inbox: Inbox,
) -> None:
    from prolo.portal.models import QuestionnaireResponse

    visit, course = _course_with_a_session(session, NOW + dt.timedelta(days=3))
    session.commit()
    worker = _worker(session_factory, settings, smtp[1], NOW)
    assert worker.sweep() == 1
    job = session.scalars(select(OutboxJob).where(OutboxJob.kind == "questionnaire_reminder")).one()
    for instrument in job.payload["instruments"]:
        session.add(
            QuestionnaireResponse(
                clinic_id=visit.clinic.id,
                patient_id=visit.patient.id,
                course_id=course.id,
                instrument_id=instrument,
                timepoint="baseline",
                status="completed",
                answers={},
                authored_at=NOW - dt.timedelta(hours=1),
            )
        )
    session.commit()
    stats = worker.run_once()
    assert stats.cancelled >= 1
    assert _job(session, job.id).status == "cancelled"
    assert not [m for m in inbox.messages if "questionnaire" in str(m["Subject"])]
