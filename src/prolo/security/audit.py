"""The hash-chained audit log: append inside the caller's transaction, verify the chain.

Each entry's hash is SHA-256 over the previous entry's hash and the entry's own
fields in a fixed order. Appends are serialised (on PostgreSQL by a transaction-
scoped advisory lock; SQLite serialises writers itself) so the chain has no forks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from prolo.db import utcnow
from prolo.security.models import AuditEvent

GENESIS = "0" * 64
_ADVISORY_LOCK_KEY = 0x70726F6C6F  # "prolo"


@dataclass(frozen=True)
class Actor:
    """Who did something, from where."""

    user_id: int | None
    role: str | None
    clinic_id: int | None
    source_ip: str | None = None


SYSTEM = Actor(user_id=None, role="system", clinic_id=None)


def entry_hash(prev_hash: str, event: AuditEvent) -> str:
    """The chain hash of ``event`` following ``prev_hash``."""
    fields = (
        prev_hash,
        str(event.id),
        event.recorded_at.astimezone(dt.UTC).isoformat(),
        str(event.user_id),
        str(event.user_role),
        str(event.clinic_id),
        event.action,
        event.event,
        event.entity_type,
        str(event.entity_id),
        str(event.patient_id),
        event.outcome,
        str(event.source_ip),
        str(event.detail),
    )
    return hashlib.sha256("\x1f".join(fields).encode()).hexdigest()


def record(
    session: Session,
    actor: Actor,
    *,
    action: str,
    event: str,
    entity_type: str,
    entity_id: object = None,
    patient_id: int | None = None,
    outcome: str = "0",
    detail: str | None = None,
) -> AuditEvent:
    """Append one audit entry in the caller's transaction.

    ``action`` is a FHIR AuditEvent action code (C, R, U, D, E); ``outcome`` a FHIR
    outcome code ("0" success, "4" minor failure such as a denied access, "8" serious).
    ``detail`` must never hold health information.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK_KEY})
    last = session.execute(
        select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)
    ).first()
    prev_id, prev_hash = (last[0], last[1]) if last else (0, GENESIS)
    entry = AuditEvent(
        id=prev_id + 1,
        recorded_at=utcnow(),
        user_id=actor.user_id,
        user_role=actor.role,
        clinic_id=actor.clinic_id,
        action=action,
        event=event,
        entity_type=entity_type,
        entity_id=None if entity_id is None else str(entity_id),
        patient_id=patient_id,
        outcome=outcome,
        source_ip=actor.source_ip,
        detail=detail,
        prev_hash=prev_hash,
    )
    entry.hash = entry_hash(prev_hash, entry)
    session.add(entry)
    session.flush()
    return entry


@dataclass(frozen=True)
class ChainBreak:
    """The first entry where the chain does not hold, and why."""

    entry_id: int
    reason: str


def check_entry(entry: AuditEvent, *, expected_id: int, prev_hash: str) -> str | None:
    """Why ``entry`` breaks the chain at position ``expected_id``, or None when it holds."""
    if entry.id != expected_id:
        return f"entry {expected_id} is missing"
    if entry.prev_hash != prev_hash:
        return "its link to the previous entry does not match"
    if entry_hash(prev_hash, entry) != entry.hash:
        return "its content does not match its hash (edited)"
    return None


def verify_database(session: Session, *, batch: int = 50_000) -> tuple[int, ChainBreak | None]:
    """Verify the whole log in the database; returns (entries checked, first break)."""
    count = 0
    prev_hash = GENESIS
    last_id = 0
    while True:
        rows = (
            session.execute(
                select(AuditEvent)
                .where(AuditEvent.id > last_id)
                .order_by(AuditEvent.id)
                .limit(batch)
            )
            .scalars()
            .all()
        )
        if not rows:
            return count, None
        for entry in rows:
            reason = check_entry(entry, expected_id=last_id + 1, prev_hash=prev_hash)
            if reason is not None:
                return count, ChainBreak(last_id + 1, reason)
            prev_hash = entry.hash
            last_id = entry.id
            count += 1
        session.expunge_all()
