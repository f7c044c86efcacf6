"""The de-identified research export over the API (researcher role only)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Response

from prolo.outcomes.export import research_export
from prolo.security.principal import Principal
from prolo.web import DbSession, policy

router = APIRouter(prefix="/api/research", tags=["research"])
Researcher = Annotated[Principal, policy("researcher")]


@router.get("/export", response_class=Response)
def export(
    session: DbSession, principal: Researcher, format: Literal["csv", "parquet"] = "csv"
) -> Response:
    """A zip of de-identified records (CSV or Parquet) with a REDCap data dictionary."""
    result = research_export(
        session=session, principal=principal, clinic_id=principal.clinic_id, fmt=format
    )
    return Response(
        result.content,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{result.filename}"'},
    )
