"""The researcher's page: what the de-identified export holds, and the downloads."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from prolo import ui
from prolo.outcomes.export import REDCAP_COLUMNS, research_export
from prolo.security.principal import Principal
from prolo.web import DbSession, policy

router = APIRouter(include_in_schema=False)
Researcher = Annotated[Principal, policy("researcher")]


@router.get("/research", response_class=HTMLResponse)
def research_home(request: Request, principal: Researcher) -> HTMLResponse:
    return ui.render(
        request, "outcomes/research.html", principal=principal, redcap_columns=REDCAP_COLUMNS
    )


@router.get("/research/export")
def research_download(
    session: DbSession, principal: Researcher, format: Literal["csv", "parquet"] = "csv"
) -> Response:
    result = research_export(
        session=session, principal=principal, clinic_id=principal.clinic_id, fmt=format
    )
    return Response(
        result.content,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{result.filename}"'},
    )
