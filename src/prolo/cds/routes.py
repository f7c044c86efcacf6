"""CDS Hooks endpoints: discovery (open) and the candidacy service (bearer token).

See: https://cds-hooks.hl7.org/2.0/#discovery and #calling-a-cds-service

The EHR calls the service with a prolo bearer token of a clinician or admin holding
the ``fhir`` scope. The call is audited (the EHR's patient id is not a prolo record,
so the entry names the hook instance, not a patient).
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response

from prolo.cds import service
from prolo.errors import NotFound, ValidationFailed
from prolo.security import audit
from prolo.security.principal import Principal
from prolo.web import DbSession, policy

router = APIRouter(prefix="/cds-services", tags=["cds-hooks"])
Caller = Annotated[Principal, policy("admin", "clinician", scope="fhir")]


async def json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValidationFailed("the request body is not valid JSON", field="body") from None


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get("", dependencies=[policy("public")])
def discovery() -> Response:
    """The services this CDS server offers."""
    return Response(orjson.dumps(service.discovery()), media_type="application/json")


@router.post("/{service_id}")
def call_service(
    request: Request,
    session: DbSession,
    principal: Caller,
    service_id: str,
    body: Annotated[Any, Depends(json_body)],
) -> Response:
    """Run the candidacy service on the hook's context and prefetch; returns cards."""
    if service_id != service.SERVICE_ID:
        raise NotFound(f"no CDS service {service_id!r}")
    answer = service.patient_view(body, base_url=_base_url(request))
    audit.record(
        session,
        principal.actor,
        action="E",
        event="cds.patient-view",
        entity_type="CdsHook",
        entity_id=str(body.get("hookInstance"))[:64],
        detail=f"{len(answer['cards'])} cards",
    )
    return Response(orjson.dumps(answer), media_type="application/json")
