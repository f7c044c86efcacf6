"""The private calendar feed (public URL, secret token) and the API that manages feeds."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, Field

from prolo.notify import feeds
from prolo.security.principal import Principal
from prolo.web import DbSession, RowId, policy

router = APIRouter(tags=["calendar feeds"])
Owner = Annotated[Principal, policy("admin", "clinician")]
Token = Annotated[str, Path(min_length=20, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")]


class FeedIn(BaseModel):
    practitioner_id: int | None = Field(default=None, ge=1, le=2_147_483_647)


class FeedOut(BaseModel):
    id: int
    practitioner_id: int
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


class NewFeedOut(FeedOut):
    url: str = Field(description="shown once: keep it private, it needs no login")


def feed_url(request: Request, token: str) -> str:
    base = request.app.state.settings.base_url.rstrip("/")
    return f"{base}/calendar/{token}.ics"


@router.post("/api/calendar-feeds", response_model=NewFeedOut, status_code=201)
def create_feed(
    request: Request, session: DbSession, principal: Owner, data: FeedIn | None = None
) -> NewFeedOut:
    """A new private feed URL for the practitioner; any earlier one stops working."""
    row, token = feeds.create_feed(
        session=session,
        principal=principal,
        practitioner_id=data.practitioner_id if data else None,
    )
    return NewFeedOut(
        id=row.id,
        practitioner_id=row.practitioner_id,
        created_at=row.created_at,
        revoked_at=None,
        last_used_at=None,
        url=feed_url(request, token),
    )


@router.get("/api/calendar-feeds", response_model=list[FeedOut])
def list_feeds(session: DbSession, principal: Owner) -> list[FeedOut]:
    """Feeds the caller manages (without their URLs, which are not stored)."""
    return [
        FeedOut(
            id=f.id,
            practitioner_id=f.practitioner_id,
            created_at=f.created_at,
            revoked_at=f.revoked_at,
            last_used_at=f.last_used_at,
        )
        for f in feeds.list_feeds(session=session, principal=principal)
    ]


@router.delete("/api/calendar-feeds/{feed_id}", status_code=204)
def revoke_feed(session: DbSession, principal: Owner, feed_id: RowId) -> Response:
    """Revoke a feed: its URL answers 404 from now on."""
    feeds.revoke_feed(session=session, principal=principal, feed_id=feed_id)
    return Response(status_code=204)


@router.get(
    "/calendar/{token}.ics",
    dependencies=[policy("public")],
    response_class=Response,
    responses={200: {"content": {"text/calendar": {}}}},
)
def calendar_feed(request: Request, session: DbSession, token: Token) -> Response:
    """The practitioner's visits as iCalendar (RFC 5545); the token is the credential."""
    domain = request.app.state.settings.mail_from.rpartition("@")[2] or "prolo.invalid"
    body = feeds.render_feed(session=session, token=token, domain=domain)
    return Response(
        body,
        media_type="text/calendar; charset=utf-8",
        headers={"Cache-Control": "private, no-store"},
    )
