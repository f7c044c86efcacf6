"""JSON API for procedure records: document, sign, amend; the site list and aftercare."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from prolo.courses import procedures
from prolo.courses.procedure_schemas import (
    AmendmentIn,
    ProcedureIn,
    ProcedureOut,
    ProcedureUpdate,
    RegionSitesOut,
    SiteOut,
)
from prolo.knowledge.schema import BodyRegion
from prolo.security.principal import Principal
from prolo.web import DbSession, RowId, policy

router = APIRouter(prefix="/api", tags=["procedures"])
Keeper = Annotated[Principal, policy("admin", "clinician")]


class AftercareOut(BaseModel):
    id: str
    label: str
    text: str
    source: str
    url: str
    locator: str
    grade: str


@router.get("/injection-sites", response_model=list[RegionSitesOut])
def injection_sites(
    principal: Keeper,
    body_region: Annotated[BodyRegion | None, Query(description="one region only")] = None,
) -> list[RegionSitesOut]:
    """The injection site list per body region (``multiple`` lists every site)."""
    catalog = procedures.load_injection_sites()
    regions = [body_region] if body_region else list(catalog.regions)
    out = []
    for region in regions:
        label = catalog.regions[region].label if region in catalog.regions else "Several regions"
        sites = [
            SiteOut(id=s.id, label=s.label, cited=bool(s.cited_in))
            for s in catalog.sites_for(region)
        ]
        out.append(RegionSitesOut(body_region=region, label=label, sites=sites))
    return out


@router.get("/aftercare", response_model=list[AftercareOut])
def aftercare(principal: Keeper) -> list[AftercareOut]:
    """The aftercare advice a record says was given, each item with its source."""
    return [AftercareOut(**vars(item)) for item in procedures.AFTERCARE]


@router.get("/patients/{patient_id}/procedures", response_model=list[ProcedureOut])
def list_procedures(session: DbSession, principal: Keeper, patient_id: RowId) -> list[ProcedureOut]:
    """A patient's procedure records, newest first."""
    rows = procedures.list_procedures(session=session, principal=principal, patient_id=patient_id)
    return [procedures.to_out(session=session, procedure=p) for p in rows]


@router.post("/patients/{patient_id}/procedures", response_model=ProcedureOut, status_code=201)
def create_procedure(
    session: DbSession, principal: Keeper, patient_id: RowId, data: ProcedureIn
) -> ProcedureOut:
    """Start a draft record; the pre-procedure re-check runs and is stored with it."""
    procedure = procedures.create_procedure(
        session=session, principal=principal, patient_id=patient_id, data=data
    )
    return procedures.to_out(session=session, procedure=procedure)


@router.get("/procedures/{procedure_id}", response_model=ProcedureOut)
def read_procedure(session: DbSession, principal: Keeper, procedure_id: RowId) -> ProcedureOut:
    """One record, with the id of the record amending it, if any."""
    procedure = procedures.access_procedure_by_id(
        session=session, principal=principal, procedure_id=procedure_id
    )
    return procedures.to_out(session=session, procedure=procedure)


@router.put("/procedures/{procedure_id}", response_model=ProcedureOut)
def update_procedure(
    session: DbSession, principal: Keeper, procedure_id: RowId, data: ProcedureUpdate
) -> ProcedureOut:
    """Replace a draft's content. A signed record answers 409 and is left unchanged."""
    procedure = procedures.update_procedure(
        session=session, principal=principal, procedure_id=procedure_id, data=data
    )
    return procedures.to_out(session=session, procedure=procedure)


@router.post("/procedures/{procedure_id}/sign", response_model=ProcedureOut)
def sign_procedure(session: DbSession, principal: Keeper, procedure_id: RowId) -> ProcedureOut:
    """Sign a draft (the performing practitioner only); 409 without consent or when the
    re-check refers or rules injection out."""
    procedure = procedures.sign_procedure(
        session=session, principal=principal, procedure_id=procedure_id
    )
    return procedures.to_out(session=session, procedure=procedure)


@router.post("/procedures/{procedure_id}/amendments", response_model=ProcedureOut, status_code=201)
def amend_procedure(
    session: DbSession, principal: Keeper, procedure_id: RowId, data: AmendmentIn
) -> ProcedureOut:
    """Start an amendment of a signed record (a draft to sign); the original is kept."""
    procedure = procedures.amend_procedure(
        session=session, principal=principal, procedure_id=procedure_id, data=data
    )
    return procedures.to_out(session=session, procedure=procedure)


@router.delete("/procedures/{procedure_id}", status_code=204)
def discard_draft(session: DbSession, principal: Keeper, procedure_id: RowId) -> Response:
    """Delete a draft. A signed record answers 409 and is left unchanged."""
    procedures.discard_draft(session=session, principal=principal, procedure_id=procedure_id)
    return Response(status_code=204)
