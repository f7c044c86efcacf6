"""The audit chain detects edits and removals."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from prolo.security import audit
from prolo.security.models import AuditEvent

ACTOR = audit.Actor(user_id=1, role="clinician", clinic_id=1, source_ip="127.0.0.1")


def _write(session: Session, n: int) -> list[AuditEvent]:
    entries = [
        audit.record(
            session,
            ACTOR,
            action="R",
            event="patient.read",
            entity_type="Patient",
            entity_id=i,
            patient_id=i,
        )
        for i in range(n)
    ]
    audit.flush_pending(session)  # written now, so their ids are known
    return entries


def test_an_intact_chain_verifies(session: Session) -> None:
    before, _ = audit.verify_database(session)
    _write(session, 5)
    checked, broken = audit.verify_database(session)
    assert (checked, broken) == (before + 5, None)


def test_an_edited_entry_is_named(session: Session) -> None:
    entries = _write(session, 5)
    edited = entries[2].entry.replace('"user":1,', '"user":99,')
    assert edited != entries[2].entry
    session.execute(update(AuditEvent).where(AuditEvent.id == entries[2].id).values(entry=edited))
    session.expire_all()
    assert session.get(AuditEvent, entries[2].id).user_id == 99  # type: ignore[union-attr]
    _, broken = audit.verify_database(session)
    assert broken is not None and broken.entry_id == entries[2].id
    assert "edited" in broken.reason


@pytest.mark.parametrize(
    ("column", "value"), [("user_id", 99), ("detail", "x"), ("recorded_at", None)]
)
def test_a_field_cannot_be_edited_apart_from_the_hashed_entry(
    session: Session, column: str, value: object
) -> None:
    entry = _write(session, 1)[0]
    if column == "recorded_at":
        value = entry.recorded_at.replace(year=2020)
    nested = session.begin_nested()
    with pytest.raises(DBAPIError, match="(?i)generated"):
        session.execute(update(AuditEvent).where(AuditEvent.id == entry.id).values({column: value}))
    nested.rollback()
    assert audit.verify_database(session)[1] is None


def test_a_removed_entry_is_named(session: Session) -> None:
    entries = _write(session, 5)
    session.execute(delete(AuditEvent).where(AuditEvent.id == entries[1].id))
    session.expire_all()
    _, broken = audit.verify_database(session)
    assert broken is not None and broken.entry_id == entries[1].id
    assert "missing" in broken.reason


def test_a_rehashed_forgery_still_breaks_the_next_link(session: Session) -> None:
    entries = _write(session, 4)
    forged = entries[1]
    session.add(forged)  # the returned entries are detached
    forged.entry = forged.entry.replace('"user":1,', '"user":42,')
    forged.digest = audit.entry_digest(entries[0].digest, forged)  # consistent in itself
    session.flush()
    _, broken = audit.verify_database(session)
    assert broken is not None and broken.entry_id == entries[2].id


def test_reordered_entries_are_named(session: Session) -> None:
    entries = _write(session, 5)
    first, second = entries[1].id, entries[2].id
    for old, new in ((first, -1), (second, first), (-1, second)):  # swap the two rows' ids
        session.execute(update(AuditEvent).where(AuditEvent.id == old).values(id=new))
    session.expire_all()
    _, broken = audit.verify_database(session)
    assert broken is not None and broken.entry_id == first
