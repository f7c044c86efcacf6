"""The administrator's pages: the clinic's accounts and their API tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from prolo import ui
from prolo.errors import AppError
from prolo.security import service
from prolo.security.models import User
from prolo.security.principal import Principal
from prolo.ui import PostedForm
from prolo.web import DbSession, RowId, policy

router = APIRouter(include_in_schema=False)
Admin = Annotated[Principal, policy("admin")]


def _admin_page(
    request: Request,
    session: DbSession,
    principal: Principal,
    *,
    errors: dict[str, str],
    created: str | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    users = service.list_clinic_users(session=session, principal=principal)
    return ui.render(
        request,
        "admin.html",
        principal=principal,
        users=users,
        user_options=[("", "Choose…")]
        + [(str(u.id), f"{u.display_name} ({u.email})") for u in users],
        tokens=service.list_clinic_tokens(session=session, principal=principal),
        scopes=service.API_SCOPES,
        errors=errors,
        created=created,
        values=values or {},
        status_code=status_code,
    )


@router.get("/admin", response_class=HTMLResponse)
def admin_home(request: Request, session: DbSession, principal: Admin) -> HTMLResponse:
    return _admin_page(request, session, principal, errors={})


@router.post("/admin/tokens", response_class=HTMLResponse)
def create_token(
    request: Request, session: DbSession, principal: Admin, posted_form: PostedForm
) -> Response:
    form = posted_form
    ui.check_csrf(principal, str(form.get("csrf_token", "")))
    values = {k: str(v) for k, v in form.items() if k != "csrf_token"}
    scopes = tuple(str(s) for s in form.getlist("scopes"))
    errors: dict[str, str] = {}
    try:
        user_id = int(values.get("user_id", ""))
    except ValueError:
        user_id = 0
    user = session.get(User, user_id)
    if user is None or user.clinic_id != principal.clinic_id:
        errors["user_id"] = "Choose an account of this clinic."
    name = values.get("name", "").strip()
    if not name or len(name) > 100:
        errors["name"] = "Say what the token is for (up to 100 characters)."
    try:
        days = int(values.get("days", "30"))
    except ValueError:
        days = 0
    if not scopes:
        errors["scopes"] = "Choose at least one scope."
    if errors:
        return _admin_page(
            request, session, principal, errors=errors, values=values, status_code=422
        )
    try:
        secret, _ = service.create_api_token(
            session=session,
            user_id=user_id,
            name=name,
            scopes=scopes,
            days=days,
            actor=principal.actor,
        )
    except AppError as exc:
        return _admin_page(
            request,
            session,
            principal,
            errors={exc.field or "form": exc.detail},
            values=values,
            status_code=exc.http_status,
        )
    return _admin_page(request, session, principal, errors={}, created=secret)


@router.post("/admin/tokens/{token_id}/revoke", response_class=HTMLResponse)
def revoke_token(
    request: Request, session: DbSession, principal: Admin, token_id: RowId, posted_form: PostedForm
) -> Response:
    form = posted_form
    ui.check_csrf(principal, str(form.get("csrf_token", "")))
    service.revoke_api_token(session=session, principal=principal, token_id=token_id)
    return ui.redirect("/admin#tokens")
