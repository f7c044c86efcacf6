"""The authorization matrix: every route against every role, from the route table.

For each route the declared policy says which roles may call it. A caller outside
the policy gets 401 (anonymous API), a redirect to the login page (anonymous
browser) or 403; a caller inside it is never stopped by the policy layer. Then the
object-level check: a patient asking for another patient's record gets 404.
"""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from prolo.security import service as security
from prolo.web import PUBLIC, ROLE_NAMES, SESSION_COOKIE, api_routes, route_policy
from tests.factories import make_clinic, make_patient, make_user, token_for

POLICY_REFUSAL = "your role may not use this"
MISSING_ID = "2147480000"


# A sample value for each path convertor, so the route itself is reached.
CONVERTOR_SAMPLES = {"chartlist": "diagnoses", "path": "x"}


def _path(template: str, ids: dict[str, str]) -> str:
    def fill(match: re.Match[str]) -> str:
        name, convertor = match.group(1), (match.group(2) or ":")[1:]
        return ids.get(name, CONVERTOR_SAMPLES.get(convertor, MISSING_ID))

    return re.sub(r"\{([^}:]+)(:[^}]+)?\}", fill, template)


def _routes(client: TestClient) -> list[tuple[str, str, tuple[str, ...], bool]]:
    found = []
    for route in api_routes(client.app.routes):  # type: ignore[attr-defined]
        roles = route_policy(route.dependant.dependencies)
        assert roles is not None, f"{route.path} has no policy"
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            found.append((method, route.path, roles, route.include_in_schema))
    return found


@pytest.fixture
def callers(session: Session) -> dict[str, dict[str, object]]:
    """A bearer token and a browser session (with its CSRF token) for every role."""
    clinic = make_clinic(session)
    patient = make_patient(session, clinic)
    out: dict[str, dict[str, object]] = {}
    for role in ROLE_NAMES:
        user = make_user(session, clinic, role, patient=patient if role == "patient" else None)
        cookie, web = security.start_web_session(session=session, user=user, hours=1)
        out[role] = {
            "headers": token_for(session, user, scopes=("read", "write", "fhir", "bulk")),
            "cookie": cookie,
            "csrf": web.csrf_token,
        }
    session.flush()
    return out


def _call(client: TestClient, method: str, path: str, caller: dict[str, object] | None, api: bool):
    client.cookies.clear()
    kwargs: dict[str, object] = {"follow_redirects": False}
    if caller is not None and api:
        kwargs["headers"] = caller["headers"]
    elif caller is not None:
        client.cookies.set(SESSION_COOKIE, str(caller["cookie"]))
    if method in ("POST", "PUT", "PATCH"):
        if api:
            kwargs["json"] = {}
        else:
            kwargs["data"] = {"csrf_token": str(caller["csrf"]) if caller else ""}
    return client.request(method, path, **kwargs)


def test_every_route_against_every_role(client: TestClient, callers) -> None:
    problems: list[str] = []
    for method, template, roles, api in _routes(client):
        if template.startswith(("/api/docs", "/api/openapi")):
            continue
        path = _path(template, {})
        for role in (None, *ROLE_NAMES):
            allowed = PUBLIC in roles or (
                role is not None and (role in roles or "authenticated" in roles)
            )
            r = _call(client, method, path, callers[role] if role else None, api)
            denied_by_policy = (
                r.status_code == 401
                or (r.status_code == 303 and r.headers.get("location", "").startswith("/login"))
                or (r.status_code == 403 and POLICY_REFUSAL in r.text)
            )
            if allowed and denied_by_policy and PUBLIC not in roles:
                problems.append(f"{role} refused on {method} {template} ({r.status_code})")
            if (
                not allowed
                and r.status_code not in (401, 403)
                and not (
                    r.status_code == 303 and r.headers.get("location", "").startswith("/login")
                )
            ):
                problems.append(
                    f"{role or 'anonymous'} let through {method} {template} ({r.status_code})"
                )
            if r.status_code >= 500:
                problems.append(f"{role} crashed {method} {template} ({r.status_code})")
    assert problems == []


def test_a_patient_never_reads_another_patients_record(
    client: TestClient, session: Session, callers
) -> None:
    clinic = make_clinic(session)
    stranger = make_patient(session, clinic, family_name="Stranger")
    checked = 0
    for method, template, roles, api in _routes(client):
        if method != "GET" or "{patient_id}" not in template or "patient" not in roles:
            continue
        r = _call(
            client,
            method,
            _path(template, {"patient_id": str(stranger.id)}),
            callers["patient"],
            api,
        )
        assert r.status_code == 404, f"GET {template} answered {r.status_code}"
        assert "Stranger" not in r.text
        checked += 1
    assert checked >= 2
