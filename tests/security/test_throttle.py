from fastapi.testclient import TestClient

from prolo.security.throttle import LoginThrottle


def test_window_blocks_after_the_limit_and_forgets_old_failures() -> None:
    throttle = LoginThrottle(max_failures=3, window=60)
    for t in (0.0, 1.0, 2.0):
        assert not throttle.blocked("10.0.0.1", now=t)
        throttle.failed("10.0.0.1", now=t)
    assert throttle.blocked("10.0.0.1", now=3.0)
    assert not throttle.blocked("10.0.0.2", now=3.0)
    assert not throttle.blocked("10.0.0.1", now=61.5)  # the first failure left the window


def test_login_page_answers_429_when_an_address_sprays(client: TestClient) -> None:
    client.app.state.login_throttle = LoginThrottle(max_failures=2, window=60)  # type: ignore[attr-defined]
    client.get("/login")
    token = client.cookies.get("prolo_csrf")
    for n in range(2):
        r = client.post(
            "/login",
            data={"email": f"x{n}@example.org", "password": "nope-nope-nope", "csrf_token": token},
        )
        assert r.status_code == 401
    r = client.post(
        "/login", data={"email": "y@example.org", "password": "nope-nope-nope", "csrf_token": token}
    )
    assert r.status_code == 429 and "Too many failed logins" in r.text
