"""The security-headers middleware: headers on every kind of response, the login CSRF cookie."""

from fastapi.testclient import TestClient

from prolo.app import create_app
from prolo.middleware import CSP, LOGIN_CSRF_COOKIE
from prolo.settings import Settings


def test_api_responses_carry_headers_but_no_login_cookie(client: TestClient) -> None:
    r = client.get("/api/nothing-here")
    assert r.status_code == 404
    assert r.headers["content-security-policy"] == CSP
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["referrer-policy"] == "same-origin"
    assert LOGIN_CSRF_COOKIE not in r.cookies  # machines never see a login form


def test_login_page_sets_an_httponly_strict_csrf_cookie_once(client: TestClient) -> None:
    r = client.get("/login")
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{LOGIN_CSRF_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    token = r.cookies[LOGIN_CSRF_COOKIE]
    assert token in r.text  # the form carries the same token
    again = client.get("/login")  # the browser sends it back: no new cookie
    assert "set-cookie" not in again.headers
    assert token in again.text


def test_handler_cache_control_is_kept(client: TestClient) -> None:
    r = client.get("/static/app.css")
    assert r.status_code == 200
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"].count("no-store") <= 1  # never two Cache-Control values
    assert len(r.headers.get_list("cache-control")) == 1


def test_malformed_cookie_header_is_treated_as_absent(client: TestClient) -> None:
    r = client.get("/login", headers={"cookie": f'{LOGIN_CSRF_COOKIE}="unterminated'})
    assert r.status_code == 200
    assert r.headers["set-cookie"].startswith(f"{LOGIN_CSRF_COOKIE}=")


def test_fastapi_telemetry_is_off_so_nothing_leaves_the_machine(tmp_path: object) -> None:
    # FastAPI's OpenTelemetry logs would record exception messages (health data can be
    # in them) and FASTAPI_OTEL_AUTO_CONFIGURE would add exporters; prolo turns it off.
    app = create_app(Settings(env="test", database_url=f"sqlite:///{tmp_path}/t.db"))
    config = app._telemetry
    assert not any(config[key] for key in ("tracing", "metrics", "logs", "operation_spans"))
    assert config["auto_configure"] is False
    assert app._native_telemetry.enabled() is False
