"""Security headers and the login CSRF cookie, as a plain ASGI middleware.

Starlette's ``@app.middleware("http")`` (``BaseHTTPMiddleware``) runs each request
through an extra task and memory stream; profiling the load benchmark put it at
about a tenth of a request's cost. This class does the same job on the raw ASGI
messages: it seeds the request state, then adds the headers to the response's
start message.

Contract:
- every HTTP response carries the CSP, ``nosniff``, ``DENY`` framing and
  ``same-origin`` referrer headers, and ``Cache-Control: no-store`` unless the
  handler set its own ``Cache-Control`` (health data must not sit in caches);
- ``request.state.principal`` starts as None and ``request.state.login_csrf`` holds
  the browser's login CSRF token (from its cookie, or a fresh one, sent as an
  HttpOnly, SameSite=Strict cookie); on machine paths (API, FHIR, CDS Hooks, health,
  static files), where no login form is ever shown, it is empty and no cookie is set.
"""

from __future__ import annotations

import secrets
from http.cookies import SimpleCookie
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOGIN_CSRF_COOKIE = "prolo_csrf"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'; object-src 'none'"
)
_FIXED = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]
_NO_STORE = (b"cache-control", b"no-store")
MACHINE_PATHS = ("/api/", "/fhir", "/cds-services", "/health", "/static/")


def _cookie(headers: list[tuple[bytes, bytes]], name: str) -> str | None:
    for key, value in headers:
        if key == b"cookie" and name.encode() in value:
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed Cookie header is treated as absent
                return None
            morsel = jar.get(name)
            return morsel.value if morsel is not None else None
    return None


class SecurityHeaders:
    """Adds the security headers and the login CSRF cookie to every HTTP response."""

    def __init__(self, app: ASGIApp, *, secure_cookies: bool) -> None:
        self.app = app
        self.cookie_flags = "; HttpOnly; Path=/; SameSite=strict" + (
            "; Secure" if secure_cookies else ""
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        state["principal"] = None
        if scope["path"].startswith(MACHINE_PATHS):
            # No login form is ever shown here: no token to read or make.
            state["login_csrf"] = ""
            set_cookie = False
        else:
            token = _cookie(scope["headers"], LOGIN_CSRF_COOKIE)
            set_cookie = token is None
            state["login_csrf"] = token = token or secrets.token_urlsafe(24)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if not any(key.lower() == b"cache-control" for key, _ in headers):
                    headers.append(_NO_STORE)
                headers.extend(_FIXED)
                if set_cookie:
                    value = f"{LOGIN_CSRF_COOKIE}={token}{self.cookie_flags}"
                    headers.append((b"set-cookie", value.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
