"""Single-use, expiring, signed links into the portal (the kind a reminder email carries).

A link's URL carries ``itsdangerous`` token signed with the app secret; the token
names a :class:`~prolo.portal.models.PortalLink` row. The signature stops forged or
edited links; the row makes the link single-use and lets the clinic see when it was
used. Opening a link is a POST from a small page (a GET only shows the page), so a
mail scanner that fetches every link cannot use it up.

A used link starts a short portal visit: a cookie whose secret's hash is stored on
the row. The visit acts as the patient on the portal's pages only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy.orm import Session

from prolo.db import utcnow
from prolo.errors import Forbidden, Gone
from prolo.patients import service as patients
from prolo.patients.models import Patient
from prolo.portal.models import PortalLink
from prolo.security import audit
from prolo.security.principal import STAFF, Principal

SALT = "prolo.portal-link"
VISIT_COOKIE = "prolo_portal_visit"
VISIT_HOURS = 2
MAX_LINK_HOURS = 24 * 14


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _serializer(secret_key: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt=SALT)


def issue_link(
    *, session: Session, principal: Principal | None, patient_id: int, secret_key: str, hours: int
) -> tuple[str, PortalLink]:
    """Create a link for the patient; returns the token for the URL and the row.

    ``principal`` is the staff member asking (None for a job such as reminders,
    which must have checked the patient itself).
    """
    if not 1 <= hours <= MAX_LINK_HOURS:
        raise ValueError(f"hours must be between 1 and {MAX_LINK_HOURS}, got {hours}")
    if principal is not None:
        if principal.role not in STAFF:
            raise Forbidden("only clinic staff may send a portal link")
        patient = patients.access_patient_by_id(
            session=session, principal=principal, patient_id=patient_id, event="portal_link.create"
        )
    else:
        patient = session.get_one(Patient, patient_id)
    now = utcnow()
    link = PortalLink(
        id=secrets.token_hex(16),
        clinic_id=patient.clinic_id,
        patient_id=patient.id,
        created_by=principal.user_id if principal else None,
        created_at=now,
        expires_at=now + dt.timedelta(hours=hours),
    )
    session.add(link)
    session.flush()
    audit.record(
        session,
        principal.actor if principal else audit.SYSTEM,
        action="C",
        event="portal_link.create",
        entity_type="PortalLink",
        entity_id=link.id,
        patient_id=patient.id,
    )
    return _serializer(secret_key).dumps({"l": link.id}), link


class LinkGone(Gone):
    """An expired, used or invalid portal link (410), titled for the patient reading it."""

    title = "This link no longer works"


EXPIRED = "This link has expired. Ask the clinic for a new one, or log in."
USED = "This link was already used. Each link works once: ask the clinic for a new one, or log in."
INVALID = "This link is not valid. Check that it was copied completely, or log in."


def check_link(*, session: Session, token: str, secret_key: str) -> PortalLink:
    """The unused, unexpired link the token names; Gone (410) saying why otherwise."""
    try:
        payload = _serializer(secret_key).loads(token)
    except BadSignature:
        raise LinkGone(INVALID) from None
    link_id = payload.get("l") if isinstance(payload, dict) else None
    link = session.get(PortalLink, link_id) if isinstance(link_id, str) else None
    if link is None:
        raise LinkGone(INVALID)
    if link.used_at is not None:
        raise LinkGone(USED)
    if link.expires_at <= utcnow():
        raise LinkGone(EXPIRED)
    return link


def use_link(
    *, session: Session, token: str, secret_key: str, source_ip: str | None
) -> tuple[str, PortalLink]:
    """Use a link once: mark it used and start a visit; returns the visit cookie secret.

    The row is locked (``FOR UPDATE`` on PostgreSQL; SQLite serialises writers) so two
    clicks at once cannot both use it.
    """
    link = check_link(session=session, token=token, secret_key=secret_key)
    session.refresh(link, with_for_update=True)
    if link.used_at is not None:
        raise LinkGone(USED)
    visit = secrets.token_urlsafe(32)
    now = utcnow()
    link.used_at = now
    link.visit_hash = _digest(visit)
    link.visit_csrf = secrets.token_urlsafe(24)
    link.visit_expires_at = min(now + dt.timedelta(hours=VISIT_HOURS), link.expires_at)
    session.flush()
    audit.record(
        session,
        audit.Actor(None, "patient", link.clinic_id, source_ip),
        action="E",
        event="portal_link.use",
        entity_type="PortalLink",
        entity_id=link.id,
        patient_id=link.patient_id,
    )
    return visit, link


@dataclass(frozen=True)
class VisitPrincipal(Principal):
    """A patient on a link visit: no user account behind it, so the audit names none."""

    link_id: str = ""

    @property
    def actor(self) -> audit.Actor:
        return audit.Actor(
            user_id=None, role="patient", clinic_id=self.clinic_id, source_ip=self.source_ip
        )


def principal_for_visit(
    *, session: Session, secret: str, source_ip: str | None
) -> VisitPrincipal | None:
    """The patient behind a visit cookie, or None when unknown or expired."""
    from sqlalchemy import select

    link = session.scalar(select(PortalLink).where(PortalLink.visit_hash == _digest(secret)))
    if link is None or link.visit_expires_at is None or link.visit_expires_at <= utcnow():
        return None
    patient = session.get(Patient, link.patient_id)
    if patient is None:
        return None
    return VisitPrincipal(
        user_id=0,
        role="patient",
        clinic_id=link.clinic_id,
        display_name=f"{patient.given_name} {patient.family_name}",
        patient_id=patient.id,
        via="link",
        csrf_token=link.visit_csrf,
        source_ip=source_ip,
        link_id=link.id,
    )


def end_visit(*, session: Session, secret: str) -> None:
    """End a visit at once (the patient chose to leave)."""
    from sqlalchemy import select

    link = session.scalar(select(PortalLink).where(PortalLink.visit_hash == _digest(secret)))
    if link is not None and link.visit_expires_at is not None:
        link.visit_expires_at = min(link.visit_expires_at, utcnow())
