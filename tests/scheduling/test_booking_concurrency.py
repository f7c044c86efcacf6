"""Many bookings racing for one slot, on separate connections with committed data: exactly
one wins, every other gets the 409; and the database itself refuses an overlap that
bypasses the service. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from prolo.clinic.models import Clinic, Practitioner, Room
from prolo.db import utcnow
from prolo.errors import AppError
from prolo.fhir.models import ResourceVersion
from prolo.patients.models import Patient
from prolo.scheduling import service
from prolo.scheduling.models import Appointment, WorkingHours
from prolo.scheduling.schemas import AppointmentIn
from prolo.security.models import ApiToken, AuditEvent, AuditHead, User, WebSession
from prolo.security.principal import Principal
from tests.factories import (
    make_clinic,
    make_patient,
    make_practitioner,
    make_room,
    make_user,
    principal_for,
    set_working_hours,
)

NEW_YORK = ZoneInfo("America/New_York")
RACERS = 12


@dataclass
class Committed:
    clinic_id: int
    practitioner_ids: list[int]
    room_ids: list[int]
    patient_ids: list[int]
    desk: Principal


@pytest.fixture
def committed(engine: Engine) -> Iterator[Committed]:
    """A clinic committed to the shared database (threads must see it), removed afterwards."""
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    with factory() as session:
        last_entry = session.scalar(select(func.max(AuditEvent.id))) or 0
        heads = {h.id: (h.last_id, h.last_hash) for h in session.scalars(select(AuditHead))}
    with factory() as session, session.begin():
        clinic = make_clinic(session, "Race Clinic")
        practitioners = [make_practitioner(session, clinic) for _ in range(RACERS)]
        for practitioner in practitioners:
            set_working_hours(session, practitioner)
        rooms = [make_room(session, clinic) for _ in range(RACERS)]
        patients = [make_patient(session, clinic) for _ in range(RACERS)]
        desk = principal_for(make_user(session, clinic, "front_desk"))
        data = Committed(
            clinic.id,
            [p.id for p in practitioners],
            [r.id for r in rooms],
            [p.id for p in patients],
            desk,
        )
    yield data
    with factory() as session, session.begin():
        # The FHIR version rows of what goes too: SQLite reuses freed row ids, and a
        # later test's new patient must not inherit a removed one's version.
        appointment_ids = session.scalars(
            select(Appointment.id).where(Appointment.clinic_id == data.clinic_id)
        ).all()
        for table, ids in (
            ("appointment", list(appointment_ids)),
            ("patient", data.patient_ids),
            ("practitioner", data.practitioner_ids),
            ("room", data.room_ids),
        ):
            session.execute(
                delete(ResourceVersion).where(
                    ResourceVersion.table_name == table, ResourceVersion.row_id.in_(ids)
                )
            )
        session.execute(delete(Appointment).where(Appointment.clinic_id == data.clinic_id))
        session.execute(
            delete(WorkingHours).where(WorkingHours.practitioner_id.in_(data.practitioner_ids))
        )
        users = select(User.id).where(User.clinic_id == data.clinic_id)
        session.execute(delete(ApiToken).where(ApiToken.user_id.in_(users)))
        session.execute(delete(WebSession).where(WebSession.user_id.in_(users)))
        session.execute(delete(User).where(User.clinic_id == data.clinic_id))
        session.execute(delete(Patient).where(Patient.clinic_id == data.clinic_id))
        session.execute(delete(Practitioner).where(Practitioner.clinic_id == data.clinic_id))
        session.execute(delete(Room).where(Room.clinic_id == data.clinic_id))
        session.execute(delete(Clinic).where(Clinic.id == data.clinic_id))
        # The test's audit entries go too, and each chain lane's head goes back to where
        # it was: the log is then exactly as before, and its chain verifies.
        session.execute(delete(AuditEvent).where(AuditEvent.id > last_entry))
        session.execute(delete(AuditHead).where(AuditHead.id.not_in(list(heads) or [0])))
        for lane, (last_id, last_hash) in heads.items():
            session.execute(
                update(AuditHead)
                .where(AuditHead.id == lane)
                .values(last_id=last_id, last_hash=last_hash)
            )


def _slot(days_ahead: int = 3) -> dt.datetime:
    day = dt.datetime.now(NEW_YORK).date() + dt.timedelta(days=days_ahead)
    return dt.datetime.combine(day, dt.time(10, 0), NEW_YORK)


def _race(engine: Engine, requests: list[AppointmentIn], desk: Principal) -> list[object]:
    """Book each request on its own thread and connection, all released at once."""
    # What the booking routes do: on SQLite the transaction begins with the write lock.
    factory = sessionmaker(
        bind=engine.execution_options(sqlite_begin="IMMEDIATE"), expire_on_commit=False
    )
    barrier = threading.Barrier(len(requests))
    results: list[object] = [None] * len(requests)

    def run(index: int) -> None:
        barrier.wait()
        try:
            with factory() as session, session.begin():
                appointment = service.book_appointment(
                    session=session, principal=desk, data=requests[index]
                )
                results[index] = appointment.id
        except AppError as error:
            results[index] = error
        except Exception as error:  # anything else fails the test below, with its type
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.mark.parametrize("shared", ["practitioner", "room", "patient"])
def test_many_concurrent_bookings_of_one_slot_exactly_one_wins(
    engine: Engine, committed: Committed, shared: str
) -> None:
    when = _slot()
    requests = [
        AppointmentIn(
            patient_id=committed.patient_ids[0 if shared == "patient" else i],
            practitioner_id=committed.practitioner_ids[0 if shared == "practitioner" else i],
            room_id=committed.room_ids[0 if shared == "room" else i],
            kind="injection",
            starts_at=when + dt.timedelta(minutes=5 * (i % 3)),  # overlapping, not identical
        )
        for i in range(RACERS)
    ]
    results = _race(engine, requests, committed.desk)
    winners = [r for r in results if isinstance(r, int)]
    losers = [r for r in results if isinstance(r, service.DoubleBooked)]
    assert len(winners) == 1, results
    assert len(losers) == RACERS - 1, [type(r).__name__ for r in results]
    for loser in losers:
        assert loser.extra["conflicting_appointment"]["id"] == winners[0]
        assert loser.extra["conflicting_appointment"]["resource"] == shared
    with Session(engine) as session:
        active = session.scalars(
            select(Appointment.id).where(
                Appointment.clinic_id == committed.clinic_id, Appointment.status == "booked"
            )
        ).all()
    assert active == winners


def test_concurrent_bookings_of_different_slots_all_win(
    engine: Engine, committed: Committed
) -> None:
    when = _slot(days_ahead=4)
    requests = [
        AppointmentIn(
            patient_id=committed.patient_ids[i],
            practitioner_id=committed.practitioner_ids[0],
            room_id=committed.room_ids[i],
            kind="injection",
            starts_at=when + dt.timedelta(minutes=30 * i),
        )
        for i in range(RACERS)
    ]
    results = _race(engine, requests, committed.desk)
    assert all(isinstance(r, int) for r in results), results


def _row(committed: Committed, start: dt.datetime, **overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "clinic_id": committed.clinic_id,
        "patient_id": committed.patient_ids[0],
        "practitioner_id": committed.practitioner_ids[0],
        "room_id": committed.room_ids[0],
        "kind": "injection",
        "status": "booked",
        "starts_at": start,
        "ends_at": start + dt.timedelta(minutes=30),
        "created_at": utcnow(),
    }
    row.update(overrides)
    return row


@pytest.mark.parametrize(
    "clash",
    [
        {"room_id": 1, "patient_id": 1},  # same practitioner only
        {"practitioner_id": 1, "patient_id": 1},  # same room only
        {"practitioner_id": 1, "room_id": 1},  # same patient only
    ],
)
def test_the_database_refuses_an_overlap_that_bypasses_the_service(
    engine: Engine, committed: Committed, clash: dict[str, int]
) -> None:
    start = _slot(days_ahead=5)
    other = {
        key: getattr(committed, key.replace("_id", "_ids"))[value] for key, value in clash.items()
    }
    with engine.begin() as conn:
        conn.execute(insert(Appointment), [_row(committed, start)])
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            insert(Appointment), [_row(committed, start + dt.timedelta(minutes=15), **other)]
        )
    # touching is not overlapping, and a cancelled visit holds nothing
    with engine.begin() as conn:
        conn.execute(
            insert(Appointment), [_row(committed, start + dt.timedelta(minutes=30), **other)]
        )
        conn.execute(
            insert(Appointment),
            [
                _row(
                    committed,
                    start,
                    status="cancelled",
                    cancelled_at=utcnow(),
                    **other,
                )
            ],
        )
    # ... and neither an update onto a held time nor reviving the cancelled visit is allowed
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            update(Appointment)
            .where(Appointment.clinic_id == committed.clinic_id, Appointment.status == "cancelled")
            .values(status="booked", cancelled_at=None)
        )


def test_the_database_holds_the_practitioner_only_for_their_phases(
    engine: Engine, committed: Committed
) -> None:
    start = _slot(days_ahead=6)
    first = _row(
        committed,
        start,
        practitioner_starts_at=start,
        practitioner_ends_at=start + dt.timedelta(minutes=20),
    )
    staggered = _row(
        committed,
        start + dt.timedelta(minutes=20),
        room_id=committed.room_ids[1],
        patient_id=committed.patient_ids[1],
        practitioner_starts_at=start + dt.timedelta(minutes=20),
        practitioner_ends_at=start + dt.timedelta(minutes=40),
    )
    with engine.begin() as conn:
        conn.execute(insert(Appointment), [first])
        conn.execute(insert(Appointment), [staggered])
    overlapping = _row(
        committed,
        start + dt.timedelta(minutes=10),
        room_id=committed.room_ids[2],
        patient_id=committed.patient_ids[2],
        practitioner_starts_at=start + dt.timedelta(minutes=10),
        practitioner_ends_at=start + dt.timedelta(minutes=30),
    )
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(Appointment), [overlapping])


def test_when_the_check_misses_a_clash_the_database_guard_still_answers_409(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As when a concurrent booking commits between the check and the insert."""
    clinic = make_clinic(session)
    doctor, room = make_practitioner(session, clinic), make_room(session, clinic)
    set_working_hours(session, doctor)
    first, second = make_patient(session, clinic), make_patient(session, clinic)
    desk = principal_for(make_user(session, clinic, "front_desk"))
    when = _slot(days_ahead=7)

    def book(patient: Patient) -> Appointment:
        return service.book_appointment(
            session=session,
            principal=desk,
            data=AppointmentIn(
                patient_id=patient.id,
                practitioner_id=doctor.id,
                room_id=room.id,
                kind="injection",
                starts_at=when,
            ),
        )

    winner = book(first)
    real = service._clashes
    calls = []

    def blind_first_time(*args: object, **kwargs: object) -> list[service.Clash]:
        calls.append(1)
        return [] if len(calls) == 1 else real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(service, "_clashes", blind_first_time)
    with pytest.raises(service.DoubleBooked) as caught:
        book(second)
    assert caught.value.extra["conflicting_appointment"]["id"] == winner.id
    assert len(calls) == 2  # the pre-check (blinded), then the lookup after the guard fired
    # the savepoint was rolled back: the transaction goes on, with only the winner
    rows = session.scalars(select(Appointment).where(Appointment.clinic_id == clinic.id)).all()
    assert [a.id for a in rows] == [winner.id]
