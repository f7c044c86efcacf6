"""The database itself keeps signed procedure records fixed, on SQLite and PostgreSQL.

These tests go around the service on purpose: raw SQL and ORM writes that the
application would never issue must still be refused by the triggers and constraints.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from prolo.courses.models import Procedure
from tests.factories import make_clinic, make_patient, make_practitioner, make_user

NOW = dt.datetime(2030, 1, 2, 15, 0, tzinfo=dt.UTC)


def _procedure(session: Session, *, signed: bool, **extra: object) -> Procedure:
    clinic = make_clinic(session)
    patient = make_patient(session, clinic)
    practitioner = make_practitioner(session, clinic)
    user = make_user(session, clinic, "clinician")
    values: dict[str, object] = {
        "clinic_id": clinic.id,
        "patient_id": patient.id,
        "practitioner_id": practitioner.id,
        "performed_at": NOW,
        "status": "signed" if signed else "draft",
        "details": {"note": "raw row"},
        "signed_at": NOW if signed else None,
        "signed_by_user_id": user.id if signed else None,
    }
    values.update(extra)
    procedure = Procedure(**values)
    session.add(procedure)
    session.flush()
    return procedure


def _refused(session: Session, statement: object) -> str:
    """Run ``statement`` in a savepoint; return the database's refusal message."""
    with pytest.raises(DBAPIError) as caught, session.begin_nested():
        session.execute(statement)  # type: ignore[call-overload]
    return str(caught.value.orig)


def test_a_signed_row_refuses_update_and_delete(session: Session) -> None:
    procedure = _procedure(session, signed=True)
    pid = procedure.id
    message = _refused(
        session, text("UPDATE procedure SET note = 'edited' WHERE id = :id").bindparams(id=pid)
    )
    assert "is signed" in message
    # Not even "unsigning" it first.
    message = _refused(session, update(Procedure).where(Procedure.id == pid).values(status="draft"))
    assert "is signed" in message
    message = _refused(session, delete(Procedure).where(Procedure.id == pid))
    assert "is signed" in message
    session.expire_all()
    row = session.get(Procedure, pid)
    assert row is not None and (row.status, row.note) == ("signed", None)


def test_a_draft_may_change_be_signed_and_then_never_again(session: Session) -> None:
    procedure = _procedure(session, signed=False)
    pid = procedure.id
    session.execute(update(Procedure).where(Procedure.id == pid).values(note="fine"))
    user_id = make_user(session, make_clinic(session), "clinician").id
    session.execute(
        update(Procedure)
        .where(Procedure.id == pid)
        .values(status="signed", signed_at=NOW, signed_by_user_id=user_id)
    )
    message = _refused(session, update(Procedure).where(Procedure.id == pid).values(note="late"))
    assert "is signed" in message


def test_a_draft_may_be_deleted(session: Session) -> None:
    pid = _procedure(session, signed=False).id
    session.execute(delete(Procedure).where(Procedure.id == pid))
    session.expire_all()
    assert session.get(Procedure, pid) is None


def test_signing_needs_a_time_and_a_signer(session: Session) -> None:
    procedure = _procedure(session, signed=False)
    stmt = update(Procedure).where(Procedure.id == procedure.id).values(status="signed")
    message = _refused(session, stmt)
    assert "signed_at_iff_signed" in message or "signer_iff_signed" in message


def test_a_record_is_amended_at_most_once_and_with_a_reason(session: Session) -> None:
    original = _procedure(session, signed=True)
    base = {
        "clinic_id": original.clinic_id,
        "patient_id": original.patient_id,
        "practitioner_id": original.practitioner_id,
        "performed_at": NOW,
        "status": "draft",
        "details": {},
        "amends_id": original.id,
    }
    no_reason = Procedure.__table__.insert().values(**base, created_at=NOW)
    assert "amendment_has_reason" in _refused(session, no_reason)
    first = Procedure.__table__.insert().values(**base, amendment_reason="typo", created_at=NOW)
    session.execute(first)
    second = Procedure.__table__.insert().values(**base, amendment_reason="again", created_at=NOW)
    message = _refused(session, second)
    assert "amends_id" in message or "UNIQUE" in message.upper()
