"""A write the database refuses (a race the service's checks did not foresee) is a 409
naming the kind of rule, as problem+json for the API and an OperationOutcome under
/fhir; the request's work is rolled back and no value from the driver's message leaks.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from prolo.app import create_app
from prolo.fhir.errors import FhirRoute, remember_session
from prolo.fhir.models import ResourceVersion
from prolo.settings import Settings
from prolo.web import DbSession, policy

SECRET = "secret-value-x"  # stands for health data inside the offending row


def _clash(session: Session) -> None:
    """Insert the same key twice, as two racing requests would."""
    stmt = text(
        "INSERT INTO fhir_resource_version (table_name, row_id, version, last_updated) "
        "VALUES (:t, 1, 1, CURRENT_TIMESTAMP)"
    )
    session.execute(stmt, {"t": SECRET})
    session.execute(stmt, {"t": SECRET})


@pytest.fixture
def racing_app(settings: Settings, session_factory: sessionmaker[Session]) -> Iterator[FastAPI]:
    app = create_app(settings, session_factory=session_factory)

    @app.post("/api/test-race", dependencies=[policy("public")])
    def api_race(session: DbSession) -> dict[str, str]:
        _clash(session)
        return {"status": "written"}

    fhir = APIRouter(route_class=FhirRoute)

    @fhir.post("/fhir/test-race", dependencies=[policy("public")])
    def fhir_race(request: Request, session: DbSession) -> dict[str, str]:
        remember_session(request, session)
        _clash(session)
        return {"status": "written"}

    app.include_router(fhir)
    # Ahead of the FHIR API's own ``/fhir/{type}`` routes, which would match first.
    app.router.routes.insert(0, app.router.routes.pop())
    yield app


def _kept(session: Session) -> int:
    found = select(func.count()).where(ResourceVersion.table_name == SECRET)
    return session.scalar(found) or 0


def test_api_answers_409_problem_json_without_values(racing_app: FastAPI, session: Session) -> None:
    with TestClient(racing_app, raise_server_exceptions=False) as client:
        r = client.post("/api/test-race")
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == "conflict"
    assert "unique constraint" in body["detail"]
    assert SECRET not in r.text
    assert _kept(session) == 0  # the first insert was rolled back with the request


def test_fhir_answers_409_operation_outcome_without_values(
    racing_app: FastAPI, session: Session
) -> None:
    with TestClient(racing_app, raise_server_exceptions=False) as client:
        r = client.post("/fhir/test-race")
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "conflict"
    assert "unique constraint" in body["issue"][0]["diagnostics"]
    assert SECRET not in r.text
    assert _kept(session) == 0


def test_the_refusal_is_logged_without_values(
    racing_app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(racing_app, raise_server_exceptions=False) as client:
        client.post("/api/test-race")
    assert "database refused a write on POST /api/test-race" in caplog.text
    assert SECRET not in caplog.text
