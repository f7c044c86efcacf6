"""Login pages: CSRF, lockout, sessions that logout really ends."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from prolo.security.service import MAX_FAILED_LOGINS
from tests.factories import PASSWORD, make_clinic, make_patient, make_user


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "form has no CSRF token"
    return match.group(1)


def _login(client: TestClient, email: str, password: str) -> tuple[int, str]:
    token = _csrf(client.get("/login").text)
    r = client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token},
        follow_redirects=False,
    )
    return r.status_code, r.headers.get("location", r.text)


def test_clinician_logs_in_and_sees_home(client: TestClient, session: Session) -> None:
    clinic = make_clinic(session)
    user = make_user(session, clinic, "clinician")
    status, location = _login(client, user.email, PASSWORD)
    assert (status, location) == (303, "/home")
    r = client.get("/home")
    assert r.status_code == 200
    assert clinic.name in r.text
    cookie = client.cookies.get("prolo_session")
    assert cookie


def test_patient_lands_on_the_portal(client: TestClient, session: Session) -> None:
    clinic = make_clinic(session)
    user = make_user(session, clinic, "patient", patient=make_patient(session, clinic))
    assert _login(client, user.email, PASSWORD) == (303, "/portal")
    assert "Hello, Test" in client.get("/portal").text
    assert client.get("/home").status_code == 403


def test_wrong_password_shows_one_message_for_both_cases(
    client: TestClient, session: Session
) -> None:
    user = make_user(session, make_clinic(session), "clinician")
    status, body = _login(client, user.email, "wrong-password-here")
    assert status == 401 and "The email or password is not right." in body
    status, body2 = _login(client, "nobody@example.org", "wrong-password-here")
    assert status == 401 and "The email or password is not right." in body2


def test_login_without_the_csrf_token_is_refused(client: TestClient, session: Session) -> None:
    user = make_user(session, make_clinic(session), "clinician")
    client.get("/login")
    r = client.post("/login", data={"email": user.email, "password": PASSWORD, "csrf_token": "x"})
    assert r.status_code == 403
    assert client.cookies.get("prolo_session") is None


def test_too_many_failures_lock_the_account(client: TestClient, session: Session) -> None:
    user = make_user(session, make_clinic(session), "clinician")
    for _ in range(MAX_FAILED_LOGINS):
        _login(client, user.email, "wrong-password-here")
    status, body = _login(client, user.email, PASSWORD)
    assert status == 401 and "locked" in body


def test_logout_ends_the_session_on_the_server(client: TestClient, session: Session) -> None:
    user = make_user(session, make_clinic(session), "clinician")
    _login(client, user.email, PASSWORD)
    cookie = client.cookies.get("prolo_session")
    home = client.get("/home").text
    r = client.post("/logout", data={"csrf_token": _csrf(home)}, follow_redirects=False)
    assert r.status_code == 303
    # Replaying the old cookie after logout must not work.
    client.cookies.set("prolo_session", cookie)
    r = client.get("/home", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_session_cookie_flags(client: TestClient, session: Session) -> None:
    user = make_user(session, make_clinic(session), "clinician")
    token = _csrf(client.get("/login").text)
    r = client.post(
        "/login",
        data={"email": user.email, "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    set_cookie = r.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=lax" in set_cookie


def test_open_redirects_are_refused(client: TestClient, session: Session) -> None:
    user = make_user(session, make_clinic(session), "clinician")
    token = _csrf(client.get("/login").text)
    r = client.post(
        "/login",
        data={
            "email": user.email,
            "password": PASSWORD,
            "csrf_token": token,
            "next": "//evil.example.com",
        },
        follow_redirects=False,
    )
    assert r.headers["location"] == "/home"


def test_two_factor_login_for_staff(client: TestClient, session: Session) -> None:
    import pyotp

    user = make_user(session, make_clinic(session), "clinician")
    _login(client, user.email, PASSWORD)
    account = client.get("/account").text
    secret = re.search(r'Key: <span class="mono">([A-Z2-7]+)</span>', account).group(1)
    enrolment = re.search(r'name="enrolment" value="([^"]+)"', account).group(1)
    r = client.post(
        "/account/2fa/enable",
        data={"csrf_token": _csrf(account), "enrolment": enrolment, "code": "000000"},
    )
    assert r.status_code == 422 and "does not match" in r.text
    r = client.post(
        "/account/2fa/enable",
        data={
            "csrf_token": _csrf(account),
            "enrolment": enrolment,
            "code": pyotp.TOTP(secret).now(),
        },
    )
    assert r.status_code == 200 and "Two-factor login is on" in r.text
    client.cookies.clear()
    # The password alone no longer opens a session.
    status, location = _login(client, user.email, PASSWORD)
    assert status == 303 and location.startswith("/login/2fa")
    assert client.get("/home", follow_redirects=False).status_code == 303
    form = client.get("/login/2fa").text
    r = client.post("/login/2fa", data={"csrf_token": _csrf(form), "code": "123456"})
    assert r.status_code == 401 and "not right" in r.text
    r = client.post(
        "/login/2fa",
        data={"csrf_token": _csrf(form), "code": pyotp.TOTP(secret).now()},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/home"
    assert client.get("/home").status_code == 200


def test_admin_creates_and_revokes_a_token(client: TestClient, session: Session) -> None:
    clinic = make_clinic(session)
    admin = make_user(session, clinic, "admin")
    clinician = make_user(session, clinic, "clinician")
    _login(client, admin.email, PASSWORD)
    page = client.get("/admin").text
    r = client.post(
        "/admin/tokens",
        data={"csrf_token": _csrf(page), "user_id": "", "name": "", "scopes": "read"},
    )
    assert r.status_code == 422 and "Choose an account" in r.text
    r = client.post(
        "/admin/tokens",
        data={
            "csrf_token": _csrf(page),
            "user_id": str(clinician.id),
            "name": "EHR bridge",
            "scopes": ["read", "fhir"],
            "days": "7",
        },
    )
    assert r.status_code == 200
    secret = re.search(r'<p class="mono">(prolo_[^<]+)</p>', r.text).group(1)
    bearer = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/patients", headers=bearer).status_code == 200
    token_id = re.search(r"/admin/tokens/(\d+)/revoke", r.text).group(1)
    client.post(f"/admin/tokens/{token_id}/revoke", data={"csrf_token": _csrf(page)})
    assert client.get("/api/patients", headers=bearer).status_code == 401


def test_access_log_for_clinician_and_patient(client: TestClient, session: Session) -> None:
    from tests.factories import token_for

    clinic = make_clinic(session)
    patient = make_patient(session, clinic)
    clinician = token_for(session, make_user(session, clinic, "clinician"))
    own = token_for(session, make_user(session, clinic, "patient", patient=patient))
    other = token_for(
        session, make_user(session, clinic, "patient", patient=make_patient(session, clinic))
    )
    client.get(f"/api/patients/{patient.id}", headers=clinician)
    log = client.get(f"/api/patients/{patient.id}/access-log", headers=own)
    assert log.status_code == 200
    assert [e["what"] for e in log.json()][-1] == "viewed"
    assert any(e["role"] == "clinician" for e in log.json())
    assert client.get(f"/api/patients/{patient.id}/access-log", headers=other).status_code == 404
    assert (
        client.get(f"/api/patients/{patient.id}/access-log", headers=clinician).status_code == 200
    )
