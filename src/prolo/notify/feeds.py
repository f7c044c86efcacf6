"""Practitioners' private calendar feeds: an unguessable URL that serves their visits.

The URL carries a random token (256 bits); only its SHA-256 is stored, so the URL is
shown once, when it is made. Making a new one revokes the old, and a feed can be revoked
at any time; a revoked or unknown token answers 404, the same for both. Each fetch is
audited (it discloses appointment times) and shows only what a calendar needs: the
kind of visit, the patient's initials and the room; no diagnosis, no full name.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from prolo.clinic.models import Clinic, Practitioner, Room
from prolo.db import utcnow
from prolo.errors import AccessDenied, Forbidden, NotFound, ValidationFailed
from prolo.notify.email import KIND_LABELS
from prolo.notify.ical import CalendarEntry, appointment_uid, feed
from prolo.notify.models import CalendarFeed
from prolo.patients.models import Patient
from prolo.scheduling.models import Appointment
from prolo.security import audit
from prolo.security.principal import Principal

FEED_PAST = dt.timedelta(days=30)
FEED_FUTURE = dt.timedelta(days=180)
SHOWN_STATUSES = ("booked", "arrived", "fulfilled", "cancelled")
FEED_OWNERS = ("admin", "clinician")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _practitioner_for(
    session: Session, principal: Principal, practitioner_id: int | None
) -> Practitioner:
    if principal.role not in FEED_OWNERS:
        raise Forbidden("only clinicians and admins have calendar feeds")
    wanted = practitioner_id or principal.practitioner_id
    if wanted is None:
        raise ValidationFailed(
            "your login is not linked to a practitioner; say whose feed", field="practitioner_id"
        )
    if principal.role != "admin" and wanted != principal.practitioner_id:
        raise Forbidden("a clinician manages only their own calendar feed")
    practitioner = session.get(Practitioner, wanted)
    if practitioner is None or practitioner.clinic_id != principal.clinic_id:
        raise AccessDenied("no such practitioner", entity_type="Practitioner", entity_id=wanted)
    return practitioner


def create_feed(
    *, session: Session, principal: Principal, practitioner_id: int | None = None
) -> tuple[CalendarFeed, str]:
    """A new feed for the practitioner (revoking any earlier one); returns (feed, token)."""
    practitioner = _practitioner_for(session, principal, practitioner_id)
    now = utcnow()
    session.execute(
        update(CalendarFeed)
        .where(CalendarFeed.practitioner_id == practitioner.id, CalendarFeed.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session="fetch")
    )
    token = secrets.token_urlsafe(32)
    row = CalendarFeed(
        clinic_id=practitioner.clinic_id,
        practitioner_id=practitioner.id,
        token_hash=token_hash(token),
        created_by=principal.user_id,
        created_at=now,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        principal.actor,
        action="C",
        event="calendar_feed.create",
        entity_type="CalendarFeed",
        entity_id=row.id,
    )
    return row, token


def list_feeds(*, session: Session, principal: Principal) -> Sequence[CalendarFeed]:
    """Feeds the principal manages: their own; an admin, the clinic's."""
    if principal.role not in FEED_OWNERS:
        raise Forbidden("only clinicians and admins have calendar feeds")
    stmt = select(CalendarFeed).where(CalendarFeed.clinic_id == principal.clinic_id)
    if principal.role != "admin":
        stmt = stmt.where(CalendarFeed.practitioner_id == principal.practitioner_id)
    return session.scalars(stmt.order_by(CalendarFeed.created_at.desc())).all()


def revoke_feed(*, session: Session, principal: Principal, feed_id: int) -> CalendarFeed:
    """Revoke a feed: its URL stops working at once."""
    row = session.get(CalendarFeed, feed_id)
    visible = row is not None and row.clinic_id == principal.clinic_id
    if visible and principal.role != "admin":
        visible = row is not None and row.practitioner_id == principal.practitioner_id
    if row is None or not visible or principal.role not in FEED_OWNERS:
        raise AccessDenied("no such calendar feed", entity_type="CalendarFeed", entity_id=feed_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    audit.record(
        session,
        principal.actor,
        action="U",
        event="calendar_feed.revoke",
        entity_type="CalendarFeed",
        entity_id=row.id,
    )
    return row


def _kind(kind: str) -> str:
    return KIND_LABELS.get(kind, "visit").capitalize()


def _initials(patient: Patient) -> str:
    return f"{patient.given_name[:1]}. {patient.family_name[:1]}.".upper()


def render_feed(*, session: Session, token: str, domain: str) -> bytes:
    """The iCalendar document behind a feed URL; NotFound for a revoked or unknown token."""
    row = session.scalar(select(CalendarFeed).where(CalendarFeed.token_hash == token_hash(token)))
    if row is None or row.revoked_at is not None:
        raise NotFound("no such calendar feed")
    now = utcnow()
    practitioner = session.get_one(Practitioner, row.practitioner_id)
    clinic = session.get_one(Clinic, row.clinic_id)
    visits = session.execute(
        select(Appointment, Patient, Room)
        .join(Patient, Patient.id == Appointment.patient_id)
        .outerjoin(Room, Room.id == Appointment.room_id)
        .where(
            Appointment.practitioner_id == practitioner.id,
            Appointment.status.in_(SHOWN_STATUSES),
            Appointment.starts_at >= now - FEED_PAST,
            Appointment.starts_at < now + FEED_FUTURE,
        )
        .order_by(Appointment.starts_at)
    ).all()
    entries = [
        CalendarEntry(
            uid=appointment_uid(appointment.id, domain),
            starts_at=appointment.starts_at,
            ends_at=appointment.ends_at,
            summary=f"{_kind(appointment.kind)} · {_initials(patient)}",
            location=f"{clinic.name}, {room.name}" if room is not None else clinic.name,
            cancelled=appointment.status == "cancelled",
        )
        for appointment, patient, room in visits
    ]
    row.last_used_at = now
    audit.record(
        session,
        audit.Actor(user_id=row.created_by, role="calendar_feed", clinic_id=row.clinic_id),
        action="R",
        event="calendar_feed.read",
        entity_type="CalendarFeed",
        entity_id=row.id,
        detail=f"{len(entries)} appointments",
    )
    return feed(entries, name=f"prolo · {practitioner.display_name}", stamp=now)
