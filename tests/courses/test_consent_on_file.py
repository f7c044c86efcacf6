"""One consent on file per course: a newer consent supersedes the older, and withdrawing
the one on file leaves none (an older consent never counts again). The API, the
scheduling rule, the database index and the migration of existing data agree. On SQLite
and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from prolo.courses import service as courses
from prolo.courses.consent import CONSENT_TEXTS, CURRENT_VERSION
from prolo.courses.models import Consent, TreatmentCourse
from prolo.db import create_db_engine
from prolo.migrate import upgrade
from prolo.scheduling.models import Appointment
from prolo.security.models import AuditEvent
from prolo.settings import Settings
from tests.conftest import fresh_postgres_url
from tests.factories import make_clinic, make_patient, make_practitioner, make_user, token_for

REQUIRED = list(CONSENT_TEXTS[CURRENT_VERSION].required_ids)
BEFORE = "c4e8a1f2b6d3"  # the revision before consents could be superseded
SUPERSEDED = "9d41b7e2c5a8"


@pytest.fixture
def setup(session: Session) -> dict[str, Any]:
    clinic = make_clinic(session)
    return {
        "clinic": clinic,
        "patient": make_patient(session, clinic),
        "practitioner": make_practitioner(session, clinic),
        "headers": token_for(session, make_user(session, clinic, "clinician")),
    }


def _course(client: TestClient, setup: dict[str, Any]) -> dict[str, Any]:
    r = client.post(
        "/api/courses",
        json={"patient_id": setup["patient"].id, "condition_id": "knee-osteoarthritis"},
        headers=setup["headers"],
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def _consent(client: TestClient, setup: dict[str, Any], course_id: int, **body: Any) -> Any:
    return client.post(
        f"/api/courses/{course_id}/consent",
        json={"acknowledged": REQUIRED, **body},
        headers=setup["headers"],
    )


def test_withdrawing_the_newest_consent_leaves_none_on_file(
    client: TestClient, session: Session, setup: dict[str, Any]
) -> None:
    course = _course(client, setup)
    headers = setup["headers"]
    hour_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    first = _consent(client, setup, course["id"], signed_at=hour_ago).json()
    second = _consent(client, setup, course["id"]).json()
    session.expire_all()
    older = session.get_one(Consent, first["id"])
    assert older.superseded_at is not None and older.withdrawn_at is None
    events = session.scalars(
        select(AuditEvent.event).where(
            AuditEvent.entity_type == "Consent", AuditEvent.entity_id == str(first["id"])
        )
    ).all()
    assert "consent.supersede" in events
    detail = client.get(f"/api/courses/{course['id']}", headers=headers).json()
    assert detail["consent"]["id"] == second["id"]

    r = client.post(f"/api/courses/{course['id']}/consent/withdraw", headers=headers)
    assert r.status_code == 200 and r.json()["id"] == second["id"]
    detail = client.get(f"/api/courses/{course['id']}", headers=headers).json()
    assert detail["consent"] is None  # the older consent does not come back
    row = session.get_one(TreatmentCourse, course["id"])
    assert courses.consent_on_file(session=session, course=row) is None
    assert courses.patient_consent_on_file(session=session, patient_id=row.patient_id) is None
    # nothing left to withdraw, and the course cannot start on the superseded consent
    r = client.post(f"/api/courses/{course['id']}/consent/withdraw", headers=headers)
    assert r.status_code == 409 and r.json()["code"] == "consent_missing"
    r = client.post(
        f"/api/courses/{course['id']}/status", json={"status": "active"}, headers=headers
    )
    assert r.status_code == 409 and r.json()["code"] == "consent_missing"

    # an injection session of the course cannot be marked done either
    starts = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    visit = Appointment(
        clinic_id=setup["clinic"].id,
        patient_id=setup["patient"].id,
        practitioner_id=setup["practitioner"].id,
        course_id=course["id"],
        kind="injection",
        status="arrived",
        starts_at=starts,
        ends_at=starts + dt.timedelta(minutes=30),
    )
    session.add(visit)
    session.flush()
    r = client.post(f"/api/appointments/{visit.id}/fulfil", headers=headers)
    assert r.status_code == 409 and r.json()["code"] == "consent_missing", r.text

    # a new consent is on file again
    third = _consent(client, setup, course["id"]).json()
    detail = client.get(f"/api/courses/{course['id']}", headers=headers).json()
    assert detail["consent"]["id"] == third["id"]


def test_a_consent_signed_before_the_one_on_file_is_refused(
    client: TestClient, session: Session, setup: dict[str, Any]
) -> None:
    course = _course(client, setup)
    now = dt.datetime.now(dt.UTC)
    on_file = _consent(client, setup, course["id"], signed_at=now.isoformat()).json()
    earlier = (now - dt.timedelta(minutes=10)).isoformat()
    r = _consent(client, setup, course["id"], signed_at=earlier)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "signed_at"
    assert f"consent {on_file['id']}" in r.json()["detail"]
    session.expire_all()
    assert session.get_one(Consent, on_file["id"]).superseded_at is None


def test_the_database_refuses_two_consents_on_file_for_a_course(
    client: TestClient, session: Session, setup: dict[str, Any]
) -> None:
    course = _course(client, setup)
    first = _consent(client, setup, course["id"]).json()

    def add(**values: Any) -> None:
        with session.begin_nested():
            session.add(
                Consent(
                    clinic_id=setup["clinic"].id,
                    course_id=course["id"],
                    patient_id=setup["patient"].id,
                    signed_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
                    recorded_by_user_id=1,
                    recorded_by_name="Direct insert",
                    text_version=CURRENT_VERSION,
                    items=REQUIRED,
                    **values,
                )
            )

    with pytest.raises(IntegrityError):
        add()
    now = dt.datetime.now(dt.UTC)
    add(withdrawn_at=now)  # an ended consent beside the one on file is fine
    add(superseded_at=now)
    with pytest.raises(IntegrityError):  # a consent ends once
        add(withdrawn_at=now, superseded_at=now)
    row = session.get_one(TreatmentCourse, course["id"])
    on_file = courses.consent_on_file(session=session, course=row)
    assert on_file is not None and on_file.id == first["id"]


# -- the migration of existing data ---------------------------------------------------------

T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
_clinic = sa.table("clinic", sa.column("id"), sa.column("name"), sa.column("timezone"))
_patient = sa.table(
    "patient",
    *(sa.column(c) for c in ("id", "clinic_id", "mrn", "given_name", "family_name", "sex")),
    sa.column("birth_date", sa.Date()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)
_course_table = sa.table(
    "treatment_course",
    *(
        sa.column(c)
        for c in (
            "id",
            "clinic_id",
            "patient_id",
            "condition_id",
            "status",
            "planned_sessions",
            "interval_weeks_min",
            "interval_weeks_max",
            "injectate",
        )
    ),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
_consent_table = sa.table(
    "consent",
    *(
        sa.column(c)
        for c in (
            "id",
            "clinic_id",
            "course_id",
            "patient_id",
            "recorded_by_user_id",
            "recorded_by_name",
            "text_version",
        )
    ),
    sa.column("items", sa.JSON()),
    sa.column("signed_at", sa.DateTime(timezone=True)),
    sa.column("withdrawn_at", sa.DateTime(timezone=True)),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
# (consent id, course id, signed days after T0, withdrawn days after T0 or None,
#  recorded days after T0)
OLD_CONSENTS = [
    (1, 1, 0, None, 0),  # course 1: the older consent, never withdrawn ...
    (2, 1, 5, 9, 5),  # ... the newest, withdrawn: none is on file any more
    (3, 2, 0, None, 0),  # course 2: two not withdrawn; the newer stays on file
    (4, 2, 3, None, 30),  # recorded a month later, backdated to day 3
    (5, 3, 1, None, 1),  # course 3: one consent, untouched
    (6, 4, 0, 2, 0),  # course 4: withdrawn, then a new one
    (7, 4, 4, None, 4),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A database at the revision before supersession, holding consents as the old code did."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'consents.db'}"
    else:
        url = fresh_postgres_url("consents")
    engine = create_db_engine(Settings(env="test", database_url=url))
    upgrade(engine, BEFORE)
    with engine.begin() as conn:
        conn.execute(sa.insert(_clinic).values(id=1, name="Old clinic", timezone="UTC"))
        conn.execute(
            sa.insert(_patient).values(
                id=1, clinic_id=1, mrn="M1", given_name="Old", family_name="Patient",
                sex="female", birth_date=dt.date(1970, 1, 1), created_at=T0, updated_at=T0,
            )
        )  # fmt: skip
        for course_id in (1, 2, 3, 4):
            conn.execute(
                sa.insert(_course_table).values(
                    id=course_id, clinic_id=1, patient_id=1, condition_id="knee-osteoarthritis",
                    status="planned", planned_sessions=3, interval_weeks_min=4,
                    interval_weeks_max=4, injectate="dextrose", created_at=T0,
                )
            )  # fmt: skip
        for consent_id, course_id, signed, withdrawn, recorded in OLD_CONSENTS:
            conn.execute(
                sa.insert(_consent_table).values(
                    id=consent_id, clinic_id=1, course_id=course_id, patient_id=1,
                    recorded_by_user_id=1, recorded_by_name="Old clinician",
                    text_version=CURRENT_VERSION, items=REQUIRED,
                    signed_at=T0 + dt.timedelta(days=signed),
                    withdrawn_at=None if withdrawn is None else T0 + dt.timedelta(days=withdrawn),
                    created_at=T0 + dt.timedelta(days=recorded),
                )
            )  # fmt: skip
    yield engine
    engine.dispose()


def test_the_migration_keeps_only_the_newest_consent_on_file(old_database: Engine) -> None:
    upgrade(old_database, SUPERSEDED)
    with Session(old_database) as session:
        rows = {c.id: c for c in session.scalars(select(Consent))}
        on_file = {
            course_id: getattr(
                courses.consent_on_file(
                    session=session, course=session.get_one(TreatmentCourse, course_id)
                ),
                "id",
                None,
            )
            for course_id in (1, 2, 3, 4)
        }
    assert on_file == {1: None, 2: 4, 3: 5, 4: 7}
    superseded = {i: c.superseded_at for i, c in rows.items() if c.superseded_at is not None}
    # ended when the newest consent of the course was recorded
    assert superseded == {1: T0 + dt.timedelta(days=5), 3: T0 + dt.timedelta(days=30)}
    assert rows[2].withdrawn_at == T0 + dt.timedelta(days=9)  # withdrawals are kept
    assert rows[6].superseded_at is None and rows[6].withdrawn_at is not None
