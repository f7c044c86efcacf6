"""Server-rendered pages: templates, the layout's context, form errors, CSRF."""

from __future__ import annotations

import datetime as dt
import hmac
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.datastructures import FormData

from prolo.errors import Forbidden
from prolo.security.principal import Principal

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

ROLE_LABELS = {
    "admin": "Administrator",
    "clinician": "Clinician",
    "front_desk": "Front desk",
    "patient": "Patient",
    "researcher": "Researcher",
}


def _local(value: dt.datetime | None, fmt: str = "%a %d %b %Y, %H:%M") -> str:
    if value is None:
        return ""
    zone = TEMPLATES.env.globals["clinic_tz"]
    assert isinstance(zone, dt.tzinfo)  # noqa: S101  (set by create_app)
    return value.astimezone(zone).strftime(fmt)


TEMPLATES.env.filters["local"] = _local
TEMPLATES.env.globals["role_labels"] = ROLE_LABELS


def nav_for(principal: Principal | None) -> list[tuple[str, str]]:
    """The navigation links a role sees, as (label, href)."""
    if principal is None:
        return [("Conditions", "/conditions"), ("Self-check", "/self-check")]
    if principal.role == "patient":
        return [
            ("My home", "/portal"),
            ("Appointments", "/my/appointments"),
            ("My scores", "/portal/scores"),
            ("Flare diary", "/portal/diary"),
            ("Conditions", "/conditions"),
        ]
    if principal.role == "researcher":
        return [("Research", "/research"), ("Conditions", "/conditions")]
    if principal.role == "front_desk":
        return [("Home", "/home"), ("Calendar", "/calendar"), ("Patients", "/patients")]
    links = [
        ("Home", "/home"),
        ("Patients", "/patients"),
        ("Calendar", "/calendar"),
        ("Courses", "/courses"),
        ("Outcomes", "/outcomes"),
        ("Alerts", "/alerts"),
        ("Conditions", "/conditions"),
    ]
    if principal.role == "admin":
        links.append(("Admin", "/admin"))
    return links


def render(
    request: Request,
    template: str,
    *,
    principal: Principal | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render ``template`` inside the layout, with navigation for the principal."""
    context.update(
        principal=principal,
        nav=nav_for(principal),
        path=request.url.path,
        csrf_token=principal.csrf_token if principal else request.state.login_csrf,
    )
    return TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)


def redirect(url: str) -> RedirectResponse:
    """After a successful POST: go to the result with GET (303 See Other)."""
    return RedirectResponse(url, status_code=303)


def field_errors(exc: ValidationError) -> dict[str, str]:
    """Pydantic errors as {field: message}, the first message per field."""
    errors: dict[str, str] = {}
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "form"
        message = err["msg"].removeprefix("Value error, ")
        errors.setdefault(field, message)
    return errors


def check_csrf(principal: Principal, submitted: str | None) -> None:
    """Refuse a form post whose CSRF token does not match the session's."""
    expected = principal.csrf_token or ""
    if not submitted or not expected or not hmac.compare_digest(expected, submitted):
        raise Forbidden("the form expired or did not come from this site: reload and try again")


async def _posted_form(request: Request) -> FormData:
    return await request.form()


# A posted form, parsed before the handler runs, so that page handlers can be plain
# ``def`` functions: FastAPI runs those in its thread pool, where their database work
# belongs (an ``async def`` handler would do it on the event loop and stall every other
# request meanwhile).
PostedForm = Annotated[FormData, Depends(_posted_form)]
