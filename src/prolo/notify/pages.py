"""The practitioner's page for their private calendar feed: make, copy, revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from prolo import ui
from prolo.errors import AppError
from prolo.notify import feeds
from prolo.notify.routes import feed_url
from prolo.security.principal import Principal
from prolo.ui import PostedForm
from prolo.web import DbSession, RowId, policy

router = APIRouter(include_in_schema=False)
Owner = Annotated[Principal, policy("admin", "clinician")]


def _page(
    request: Request,
    session: DbSession,
    principal: Principal,
    *,
    new_url: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return ui.render(
        request,
        "notify/calendar_feed.html",
        principal=principal,
        feeds=feeds.list_feeds(session=session, principal=principal),
        new_url=new_url,
        error=error,
        linked=principal.practitioner_id is not None,
        status_code=status_code,
    )


@router.get("/calendar-feed", response_class=HTMLResponse)
def calendar_feed_page(request: Request, session: DbSession, principal: Owner) -> HTMLResponse:
    return _page(request, session, principal)


@router.post("/calendar-feed", response_class=HTMLResponse)
def create_calendar_feed(
    request: Request, session: DbSession, principal: Owner, posted_form: PostedForm
) -> HTMLResponse:
    form = posted_form
    token_field = form.get("csrf_token")
    ui.check_csrf(principal, token_field if isinstance(token_field, str) else None)
    try:
        _, token = feeds.create_feed(session=session, principal=principal)
    except AppError as exc:
        return _page(request, session, principal, error=exc.detail, status_code=exc.http_status)
    return _page(request, session, principal, new_url=feed_url(request, token), status_code=201)


@router.post("/calendar-feed/{feed_id}/revoke", response_class=HTMLResponse)
def revoke_calendar_feed(
    request: Request, session: DbSession, principal: Owner, feed_id: RowId, posted_form: PostedForm
) -> Response:
    form = posted_form
    token_field = form.get("csrf_token")
    ui.check_csrf(principal, token_field if isinstance(token_field, str) else None)
    feeds.revoke_feed(session=session, principal=principal, feed_id=feed_id)
    return ui.redirect("/calendar-feed")
