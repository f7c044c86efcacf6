"""The durable reminder worker behind ``prolo worker``.

One cycle (:meth:`Worker.run_once`):

1. **Claim** up to ``batch`` due jobs in one short transaction (PostgreSQL: ``FOR UPDATE
   SKIP LOCKED``; SQLite: a ``BEGIN IMMEDIATE`` transaction, so claims are serialised)
   and compose their messages in it, auditing the read of each patient's contact details.
   A job whose appointment was cancelled or moved meanwhile is closed here, unsent.
2. **Send** each message over SMTP, outside any transaction.
3. **Record** each outcome in its own transaction, guarded by the claim: a report from a
   worker that no longer holds the job changes nothing.

A worker killed at any moment leaves its jobs ``claimed`` with a lease in the past once
the lease runs out, and the next cycle of any worker takes them again: every job is sent
at least once. A duplicate needs a kill between step 2 and step 3 of one message; it
then carries the same Message-ID. A worker never starts a send once its lease is near
its end, so a slow worker does not race the one that takes over.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from prolo.clinic.models import Clinic, Practitioner
from prolo.db import utcnow
from prolo.notify import email as mail
from prolo.notify import outbox
from prolo.notify.ical import CalendarEntry, appointment_uid
from prolo.notify.models import OutboxJob
from prolo.patients.models import Patient
from prolo.scheduling.models import Appointment
from prolo.security import audit
from prolo.settings import Settings

log = logging.getLogger("prolo.worker")
SWEEP_LOCK_KEY = 0x70726F6C6F02  # "prolo" + 2: one questionnaire sweep at a time
Sender = Callable[[EmailMessage], None]


@dataclass(frozen=True)
class WorkerConfig:
    """How a worker paces itself. The lease must comfortably exceed one batch's sends."""

    lease: dt.timedelta = dt.timedelta(minutes=5)
    batch: int = 10
    poll_seconds: float = 5.0
    max_attempts: int = 8
    smtp_timeout: float = 10.0
    sweep_seconds: float = 900.0  # how often to look for newly open questionnaire windows

    def __post_init__(self) -> None:
        if self.lease < dt.timedelta(seconds=1):
            raise ValueError(f"lease must be at least one second, got {self.lease}")
        if self.batch < 1:
            raise ValueError(f"batch must be at least 1, got {self.batch}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")


@dataclass
class RunStats:
    """What one cycle did."""

    claimed: int = 0
    sent: int = 0
    skipped: int = 0
    cancelled: int = 0
    retried: int = 0
    failed: int = 0
    unrecorded: int = 0  # sent, but the job was cancelled or taken over meanwhile
    left_for_lease: int = 0  # not started because the lease was about to end


@dataclass
class _Outgoing:
    job_id: int
    kind: str
    attempts: int
    lease_until: dt.datetime
    message: EmailMessage
    clinic_id: int
    patient_id: int | None
    entity: tuple[str, int] = field(default=("OutboxJob", 0))


def default_worker_id() -> str:
    """host:pid:random, so two workers never share a claim name."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


def _answered(session: Session, job: OutboxJob) -> bool:
    """Whether every instrument of a questionnaire reminder was answered in its window."""
    from prolo.portal.models import QuestionnaireResponse

    opens = job.payload.get("opens_at")
    instruments = set(job.payload.get("instruments", []))
    if not opens or not instruments:
        return False
    stmt = select(QuestionnaireResponse.instrument_id).where(
        QuestionnaireResponse.patient_id == job.patient_id,
        QuestionnaireResponse.timepoint == job.payload.get("timepoint"),
        QuestionnaireResponse.status == "completed",
        QuestionnaireResponse.authored_at >= outbox.parse_stamp(opens),
    )
    course_id = job.payload.get("course_id")
    if course_id is not None:
        stmt = stmt.where(
            (QuestionnaireResponse.course_id == course_id)
            | QuestionnaireResponse.course_id.is_(None)
        )
    return instruments <= set(session.scalars(stmt).all())


def retry_delay(attempts: int) -> dt.timedelta:
    """Exponential back-off after a failed try: 1, 2, 4 ... minutes, at most an hour."""
    return dt.timedelta(minutes=min(2 ** max(attempts - 1, 0), 60))


class Worker:
    """Claims, composes, sends and records reminder jobs."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        settings: Settings,
        config: WorkerConfig | None = None,
        worker_id: str | None = None,
        sender: Sender | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.factory = factory
        self.settings = settings
        self.config = config or WorkerConfig()
        self.worker_id = worker_id or default_worker_id()
        self.clock = clock
        self.mailbox = mail.Mailbox(settings.mail_from, "Clinic reminders")
        self._send = sender or self._smtp_send

    def _smtp_send(self, message: EmailMessage) -> None:
        mail.send(
            message,
            host=self.settings.smtp_host,
            port=self.settings.smtp_port,
            timeout=self.config.smtp_timeout,
        )

    # -- one cycle -------------------------------------------------------------------
    def run_once(self) -> RunStats:
        """Claim due jobs, send them, record each outcome; returns what happened."""
        stats = RunStats()
        outgoing = self._claim_and_compose(stats)
        for item in outgoing:
            margin = self.config.lease / 5
            if self.clock() >= item.lease_until - margin:
                stats.left_for_lease += 1
                continue
            self._deliver(item, stats)
        return stats

    def run(self, stop: threading.Event) -> None:
        """Cycle until ``stop`` is set; sleep ``poll_seconds`` when nothing was due."""
        log.info("worker %s started", self.worker_id)
        next_sweep = self.clock()
        while not stop.is_set():
            try:
                if self.config.sweep_seconds and self.clock() >= next_sweep:
                    added = self.sweep()
                    if added:
                        log.info("questionnaire sweep enqueued %d reminders", added)
                    next_sweep = self.clock() + dt.timedelta(seconds=self.config.sweep_seconds)
                stats = self.run_once()
            except Exception as exc:  # a database outage must not end the worker
                log.error("worker cycle failed: %s", type(exc).__name__)
                stop.wait(self.config.poll_seconds)
                continue
            if stats.claimed:
                log.info(
                    "claimed %d, sent %d, skipped %d, cancelled %d, retry %d, failed %d",
                    stats.claimed,
                    stats.sent,
                    stats.skipped,
                    stats.cancelled,
                    stats.retried,
                    stats.failed,
                )
            else:
                stop.wait(self.config.poll_seconds)
        log.info("worker %s stopped", self.worker_id)

    # -- questionnaire sweep -----------------------------------------------------------
    def sweep(self) -> int:
        """Enqueue a reminder for every questionnaire window newly open; returns how many.

        One worker sweeps at a time (PostgreSQL: a transaction-scoped advisory lock that
        the others skip; SQLite: the write lock), and the idempotency key makes a window's
        reminder unique even if two sweeps overlapped.
        """
        from prolo.portal.service import open_windows

        now = self.clock()
        added = 0
        with self.factory() as session, session.begin():
            self._begin(session)
            if session.get_bind().dialect.name == "postgresql":
                got = session.scalar(
                    text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": SWEEP_LOCK_KEY}
                )
                if not got:
                    return 0
            for clinic_id in session.scalars(select(Clinic.id).order_by(Clinic.id)).all():
                for window in open_windows(session=session, clinic_id=clinic_id, now=now):
                    job = outbox.enqueue_questionnaire_reminder(
                        session=session,
                        clinic_id=window.clinic_id,
                        patient_id=window.patient_id,
                        course_id=window.course_id,
                        timepoint=window.timepoint,
                        instruments=window.instruments,
                        window_opens=window.opens_at,
                        due_by=window.due_by,
                        now=now,
                    )
                    added += job is not None
        return added

    # -- steps -------------------------------------------------------------------------
    def _begin(self, session: Session) -> None:
        # SQLite: take the write lock up front so two workers' claims never interleave.
        session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})

    def _claim_and_compose(self, stats: RunStats) -> list[_Outgoing]:
        now = self.clock()
        outgoing: list[_Outgoing] = []
        with self.factory() as session, session.begin():
            self._begin(session)
            jobs = outbox.claim_due_jobs(
                session=session,
                worker_id=self.worker_id,
                lease=self.config.lease,
                limit=self.config.batch,
                now=now,
            )
            stats.claimed = len(jobs)
            for job in jobs:
                item = self._compose(session, job, now, stats)
                if item is not None:
                    outgoing.append(item)
        return outgoing

    def _close(
        self, session: Session, job: OutboxJob, status: str, reason: str, now: dt.datetime
    ) -> None:
        outbox.finish_job(
            session=session,
            job_id=job.id,
            worker_id=self.worker_id,
            status=status,
            error=reason,
            now=now,
        )

    def _compose(
        self, session: Session, job: OutboxJob, now: dt.datetime, stats: RunStats
    ) -> _Outgoing | None:
        patient = session.get(Patient, job.patient_id) if job.patient_id else None
        clinic = session.get(Clinic, job.clinic_id)
        if patient is None or clinic is None:
            self._close(session, job, "skipped", "patient or clinic no longer exists", now)
            stats.skipped += 1
            return None
        zone = clinic.timezone or self.settings.clinic_timezone
        message: EmailMessage
        if job.kind == "appointment_reminder":
            appointment = session.get(Appointment, job.appointment_id)
            current = appointment is not None and appointment.status == "booked"
            if (
                appointment is None
                or not current
                or (
                    outbox.appointment_reminder_key(
                        appointment.id,
                        appointment.starts_at,
                        dt.timedelta(minutes=int(job.payload["lead_minutes"])),
                    )
                    != job.idempotency_key
                )
            ):
                # Cancelled or moved after this job was due: its reminder is moot.
                self._close(session, job, "cancelled", "appointment cancelled or moved", now)
                stats.cancelled += 1
                return None
            if appointment.starts_at <= now:
                self._close(session, job, "skipped", "appointment already started", now)
                stats.skipped += 1
                return None
            if not patient.email:
                self._close(session, job, "skipped", "patient has no email address", now)
                stats.skipped += 1
                return None
            practitioner = session.get(Practitioner, appointment.practitioner_id)
            entry = CalendarEntry(
                uid=appointment_uid(appointment.id, self.mailbox.domain),
                starts_at=appointment.starts_at,
                ends_at=appointment.ends_at,
                summary=f"Appointment at {clinic.name}",
                location=clinic.address,
                description=f"With {practitioner.display_name}" if practitioner else None,
                sequence=int(job.payload.get("sequence", 0)),
            )
            message = mail.appointment_message(
                mail.AppointmentReminder(
                    to=patient.email,
                    given_name=patient.given_name,
                    clinic_name=clinic.name,
                    clinic_phone=clinic.phone,
                    clinic_address=clinic.address,
                    clinic_zone=zone,
                    practitioner=practitioner.display_name if practitioner else "your clinician",
                    kind=appointment.kind,
                    calendar=entry,
                ),
                sender=self.mailbox,
                message_id=job.message_id,
                key=job.idempotency_key,
                now=now,
            )
            entity = ("Appointment", appointment.id)
        else:
            if _answered(session, job):
                self._close(session, job, "cancelled", "questionnaires answered meanwhile", now)
                stats.cancelled += 1
                return None
            if not patient.email:
                self._close(session, job, "skipped", "patient has no email address", now)
                stats.skipped += 1
                return None
            stamp = job.payload.get("due_by")
            due_by = outbox.parse_stamp(stamp) if stamp else None
            message = mail.questionnaire_message(
                mail.QuestionnaireReminder(
                    to=patient.email,
                    given_name=patient.given_name,
                    clinic_name=clinic.name,
                    clinic_zone=zone,
                    count=max(1, len(job.payload.get("instruments", []))),
                    due_by=due_by,
                    portal_url=self.settings.base_url.rstrip("/") + "/portal",
                ),
                sender=self.mailbox,
                message_id=job.message_id,
                key=job.idempotency_key,
                now=now,
            )
            entity = ("Patient", patient.id)
        audit.record(
            session,
            audit.Actor(user_id=None, role="system", clinic_id=job.clinic_id),
            action="R",
            event="reminder.compose",
            entity_type=entity[0],
            entity_id=entity[1],
            patient_id=patient.id,
            detail=f"outbox job {job.id}",
        )
        assert job.lease_until is not None  # noqa: S101  (set by the claim)
        return _Outgoing(
            job_id=job.id,
            kind=job.kind,
            attempts=job.attempts,
            lease_until=job.lease_until,
            message=message,
            clinic_id=job.clinic_id,
            patient_id=patient.id,
            entity=entity,
        )

    def _record(
        self,
        item: _Outgoing,
        status: str,
        *,
        error: str | None = None,
        retry_at: dt.datetime | None = None,
    ) -> bool:
        now = self.clock()
        with self.factory() as session, session.begin():
            recorded = outbox.finish_job(
                session=session,
                job_id=item.job_id,
                worker_id=self.worker_id,
                status=status,
                error=error,
                retry_at=retry_at,
                now=now,
            )
            if recorded and status == "sent":
                audit.record(
                    session,
                    audit.Actor(user_id=None, role="system", clinic_id=item.clinic_id),
                    action="E",
                    event="reminder.sent",
                    entity_type=item.entity[0],
                    entity_id=item.entity[1],
                    patient_id=item.patient_id,
                    detail=f"outbox job {item.job_id}",
                )
        return recorded

    def _deliver(self, item: _Outgoing, stats: RunStats) -> None:
        try:
            self._send(item.message)
        except mail.PermanentFailure as exc:
            self._record(item, "failed", error=str(exc))
            stats.failed += 1
            log.warning("job %d (%s) refused by the mail server", item.job_id, item.kind)
            return
        except Exception as exc:  # connection refused, 4xx, timeout: try again later
            reason = f"{type(exc).__name__} while sending"
            if item.attempts >= self.config.max_attempts:
                self._record(item, "failed", error=reason)
                stats.failed += 1
            else:
                retry_at = self.clock() + retry_delay(item.attempts)
                self._record(item, "pending", error=reason, retry_at=retry_at)
                stats.retried += 1
            log.warning("job %d (%s) not sent: %s", item.job_id, item.kind, reason)
            return
        if self._record(item, "sent"):
            stats.sent += 1
        else:
            stats.unrecorded += 1
            log.info("job %d was sent but cancelled or taken over meanwhile", item.job_id)
