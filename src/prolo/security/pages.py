"""Login and logout pages, and the front door that sends each role home."""

from __future__ import annotations

import hmac
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse
from itsdangerous import BadSignature, URLSafeTimedSerializer

from prolo import ui
from prolo.security import service
from prolo.security.models import User
from prolo.security.throttle import LoginThrottle
from prolo.web import SESSION_COOKIE, DbSession, client_ip, policy, resolve_principal

SECOND_FACTOR_COOKIE = "prolo_2fa"
SECOND_FACTOR_SECONDS = 300

router = APIRouter(include_in_schema=False)

HOME_FOR_ROLE = {
    "patient": "/portal",
    "researcher": "/research",
    "admin": "/home",
    "clinician": "/home",
    "front_desk": "/home",
}


def _safe_next(target: str | None, default: str) -> str:
    # Only same-site paths: an open redirect would let a phishing link borrow our login.
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return default


@router.get("/", dependencies=[policy("public")])
def front_door(request: Request, session: DbSession) -> Response:
    """Logged in: go home. Otherwise: the public condition explorer's login page."""
    principal = resolve_principal(request, session)
    if principal is None:
        return ui.redirect("/login")
    return ui.redirect(HOME_FOR_ROLE[principal.role])


@router.get("/login", response_class=HTMLResponse, dependencies=[policy("public")])
def login_form(request: Request, next: str | None = None) -> Response:  # noqa: A002
    return ui.render(request, "login.html", next=_safe_next(next, ""), errors={}, email="")


@router.post("/login", response_class=HTMLResponse, dependencies=[policy("public")])
def login(
    request: Request,
    session: DbSession,
    email: Annotated[str, Form(max_length=254)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=500)] = "",  # noqa: A002
) -> Response:
    """Check the password; on success start a session and go home."""
    cookie_token = request.cookies.get("prolo_csrf", "")
    if not cookie_token or not hmac.compare_digest(cookie_token, csrf_token):
        return ui.render(
            request,
            "login.html",
            status_code=403,
            next=next,
            email=email,
            errors={"form": "The form expired. Please try again."},
        )
    errors: dict[str, str] = {}
    if not email.strip():
        errors["email"] = "Enter your email address."
    if not password:
        errors["password"] = "Enter your password."  # noqa: S105  (a message)
    if errors:
        return ui.render(
            request, "login.html", status_code=422, next=next, email=email, errors=errors
        )
    throttle: LoginThrottle = request.app.state.login_throttle
    ip = client_ip(request)
    if throttle.blocked(ip):
        return ui.render(
            request,
            "login.html",
            status_code=429,
            next=next,
            email=email,
            errors={"form": "Too many failed logins from this address. Wait 15 minutes."},
        )
    result = service.authenticate(session=session, email=email, password=password, source_ip=ip)
    if result.user is None:
        throttle.failed(ip)
        message = {
            "locked": "Too many failed attempts. The account is locked for 15 minutes.",
            "inactive": "This account is disabled. Ask your clinic's administrator.",
        }.get(result.reason or "", "The email or password is not right.")
        return ui.render(
            request, "login.html", status_code=401, next=next, email=email, errors={"form": message}
        )
    if result.user.totp_secret:
        # Password was right; the session starts only after the second factor.
        response = ui.redirect(f"/login/2fa?next={quote(_safe_next(next, ''))}")
        response.set_cookie(
            SECOND_FACTOR_COOKIE,
            _second_factor_signer(request).dumps(result.user.id),
            httponly=True,
            samesite="strict",
            secure=request.app.state.settings.secure_cookies,
            max_age=SECOND_FACTOR_SECONDS,
        )
        return response
    return _start_session(request, session, result.user, next)


def _start_session(request: Request, session: DbSession, user: User, next: str) -> Response:  # noqa: A002
    settings = request.app.state.settings
    secret, _ = service.start_web_session(session=session, user=user, hours=settings.session_hours)
    response = ui.redirect(_safe_next(next, HOME_FOR_ROLE[user.role]))
    response.delete_cookie(SECOND_FACTOR_COOKIE)
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        max_age=settings.session_hours * 3600,
    )
    return response


def _second_factor_signer(request: Request) -> URLSafeTimedSerializer:
    secret = request.app.state.settings.secret_key.get_secret_value()
    return URLSafeTimedSerializer(secret, salt="prolo-login-second-factor")


def _pending_user_id(request: Request) -> int | None:
    token = request.cookies.get(SECOND_FACTOR_COOKIE, "")
    try:
        value = _second_factor_signer(request).loads(token, max_age=SECOND_FACTOR_SECONDS)
    except BadSignature:
        return None
    return value if isinstance(value, int) else None


@router.get("/login/2fa", response_class=HTMLResponse, dependencies=[policy("public")])
def second_factor_form(request: Request, next: str | None = None) -> Response:  # noqa: A002
    if _pending_user_id(request) is None:
        return ui.redirect("/login")
    return ui.render(request, "login_2fa.html", next=_safe_next(next, ""), errors={})


@router.post("/login/2fa", response_class=HTMLResponse, dependencies=[policy("public")])
def second_factor(
    request: Request,
    session: DbSession,
    code: Annotated[str, Form(max_length=20)] = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=500)] = "",  # noqa: A002
) -> Response:
    """Check the authenticator code, then start the session."""
    cookie_token = request.cookies.get("prolo_csrf", "")
    user_id = _pending_user_id(request)
    if user_id is None or not cookie_token or not hmac.compare_digest(cookie_token, csrf_token):
        return ui.redirect("/login")
    result = service.check_second_factor(
        session=session, user_id=user_id, code=code, source_ip=client_ip(request)
    )
    if result.user is None:
        message = (
            "Too many failed attempts. The account is locked for 15 minutes."
            if result.reason == "locked"
            else "That code is not right. Enter the 6-digit code your app shows now."
        )
        return ui.render(
            request, "login_2fa.html", status_code=401, next=next, errors={"code": message}
        )
    return _start_session(request, session, result.user, next)


@router.post("/logout", dependencies=[policy("public")])
def logout(
    request: Request,
    session: DbSession,
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """End the session on the server, not only in the browser."""
    principal = resolve_principal(request, session)
    if principal is not None and principal.via == "session":
        ui.check_csrf(principal, csrf_token)
        cookie = request.cookies.get(SESSION_COOKIE, "")
        service.end_web_session(session=session, secret=cookie)
    response = ui.redirect("/login")
    response.delete_cookie(SESSION_COOKIE)
    response.delete_cookie("prolo_portal_visit")  # a visit opened from a signed link ends too
    return response
