"""The FHIR R4 REST API under ``/fhir``: JSON only (``application/fhir+json``).

Every route but ``/fhir/metadata`` needs a bearer token with the ``fhir`` scope (bulk
export: ``bulk``); a browser session is not enough. Errors from the handlers and the
access policy alike are OperationOutcomes (:class:`prolo.fhir.errors.FhirRoute`).
Route order matters: the fixed paths come before ``/fhir/{type}``.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, BackgroundTasks, Depends, Header, Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from prolo.db import holds_write_lock
from prolo.errors import Unauthenticated
from prolo.fhir import bulk, bundle, service
from prolo.fhir.capability import capability_statement
from prolo.fhir.errors import (
    FhirResponse,
    FhirRoute,
    InvalidResource,
    NotAcceptable,
    NotAllowed,
    UnknownType,
    UnsupportedMedia,
    operation_outcome,
)
from prolo.fhir.resources.base import Context, Resource
from prolo.security.principal import Principal
from prolo.web import DbSession, policy


def _begin_as_writer(session: Session) -> None:
    session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})


async def _as_writer(session: Session) -> None:
    """Make sure the request's transaction begins as a writer.

    Every FHIR interaction writes (at least its audit row), and a SQLite transaction
    that starts as a reader cannot always become a writer when another connection has
    written meanwhile: it fails at once instead of waiting. The platform's request
    sessions already begin with the write lock (``prolo.db.make_writer_sessionmaker``:
    BEGIN IMMEDIATE, queued on the engine's lock in this process), so this costs
    nothing; only a session from another factory is made to begin so, in a worker
    thread because beginning may wait for the lock. (A session from another factory
    that a token lookup has begun already is left as it began: only tests hand the
    app such a factory, bound to one connection, where there is no other writer.)
    """
    if not holds_write_lock(session) and not session.in_transaction():
        await run_in_threadpool(_begin_as_writer, session)


async def _writer_session(session: DbSession) -> None:
    await _as_writer(session)


# Errors roll the request's session back (FhirRoute; DbSession registers it). Routes
# reach the session through FhirContext, whose dependency also makes it a writer, so
# the common request solves as few dependencies as it can; the bulk routes, which
# take the session directly, declare _writer_session.
router = APIRouter(prefix="/fhir", tags=["fhir"], route_class=FhirRoute)
WriterSession = Depends(_writer_session)

FHIR_ROLES = ("admin", "clinician", "front_desk", "patient")
JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
XML_FORMATS = ("xml", "text/xml", "application/xml", "application/fhir+xml", "application/xml+fhir")
FhirPrincipal = Annotated[Principal, policy(*FHIR_ROLES, scope="fhir")]
BulkPrincipal = Annotated[Principal, policy("admin", "clinician", "patient", scope="bulk")]


# Starlette rebuilds the URL from the scope on every call; the few distinct bases a
# server sees are remembered (bounded: the Host header comes from the client).
_BASES: dict[tuple[Any, ...], str] = {}


def base_url(request: Request) -> str:
    """The FHIR base URL as the client sees it (``http://host/fhir``)."""
    scope = request.scope
    key = (
        scope.get("scheme"),
        request.headers.get("host"),
        str(scope.get("server")),  # a list under some servers: not hashable
        scope.get("root_path", ""),
        scope.get("app_root_path", ""),
    )
    found = _BASES.get(key)
    if found is None:
        found = str(request.base_url).rstrip("/") + "/fhir"
        if len(_BASES) < 64:
            _BASES[key] = found
    return found


def _json_only(request: Request) -> None:
    fmt = request.query_params.get("_format")
    if fmt and fmt.split(";")[0].strip() in XML_FORMATS:
        raise NotAcceptable("this server speaks FHIR JSON only")
    accept = request.headers.get("accept", "")
    if accept and "xml" in accept and "json" not in accept and "*/*" not in accept:
        raise NotAcceptable("this server speaks FHIR JSON only")


def _token_only(principal: Principal) -> None:
    if principal.via != "token":
        raise Unauthenticated("the FHIR API needs a bearer token (Authorization: Bearer ...)")


async def fhir_context(request: Request, session: DbSession, principal: FhirPrincipal) -> Context:
    """The request's FHIR context: token-authenticated, JSON, researchers refused.

    Async on purpose: it touches no database, so it need not cost a thread hop.
    """
    _token_only(principal)
    _json_only(request)
    await _as_writer(session)
    return service.principal_context(session, principal, base_url(request))


FhirContext = Annotated[Context, Depends(fhir_context)]


async def json_body(request: Request) -> Any:
    """The request body as JSON; 415 for another media type, 400 when it does not parse."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media and media not in JSON_TYPES:
        raise UnsupportedMedia(f"send the resource as application/fhir+json, not {media}")
    raw = await request.body()
    if not raw.strip():
        raise InvalidResource("the request has no body")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidResource(
            f"the body is not valid JSON ({exc.msg} at position {exc.pos})"
        ) from None


Body = Annotated[Any, Depends(json_body)]


def _prefer(request: Request) -> str:
    return request.headers.get("prefer", "").lower()


def _strict(request: Request) -> bool:
    return "handling=strict" in _prefer(request)


def _written(request: Request, resource: Resource, status: int, base: str) -> Response:
    meta = resource.get("meta", {})
    version = meta.get("versionId", "1")
    headers = {
        "ETag": f'W/"{version}"',
        "Location": f"{base}/{resource['resourceType']}/{resource['id']}/_history/{version}",
    }
    prefer = _prefer(request)
    if "return=minimal" in prefer:
        return Response(status_code=status, headers=headers)
    if "return=operationoutcome" in prefer:
        body = operation_outcome(
            f"{resource['resourceType']}/{resource['id']} saved",
            code="informational",
            severity="information",
        )
        return FhirResponse(body, status_code=status, headers=headers)
    return FhirResponse(resource, status_code=status, headers=headers)


# -- fixed paths -------------------------------------------------------------------------


@router.get("/metadata", dependencies=[policy("public")])
def metadata(request: Request) -> Response:
    """The CapabilityStatement (open to anyone, as FHIR clients expect)."""
    _json_only(request)
    return FhirResponse(capability_statement(base_url(request)))


@router.post("")
def transaction(ctx: FhirContext, body: Body) -> Response:
    """A transaction (all or nothing) or batch (entry by entry) Bundle."""
    return FhirResponse(bundle.process(ctx, body))


def _kick_off(
    request: Request,
    background: BackgroundTasks,
    session: DbSession,
    principal: Principal,
    *,
    level: str,
    group_id: str | None = None,
) -> Response:
    _token_only(principal)
    job = bulk.kick_off(
        session,
        principal,
        level=level,
        group_id=group_id,
        params=list(request.query_params.multi_items()),
        prefer=_prefer(request),
        request_url=str(request.url),
        base_url=base_url(request),
    )
    background.add_task(bulk.run, request.app.state.sessionmaker, job.id)
    return Response(
        status_code=202,
        headers={"Content-Location": f"{base_url(request)}/bulk-status/{job.id}"},
    )


@router.get("/$export", dependencies=[WriterSession])
def export_system(
    request: Request, background: BackgroundTasks, session: DbSession, principal: BulkPrincipal
) -> Response:
    """System-level Bulk Data export (every exportable type of the clinic)."""
    return _kick_off(request, background, session, principal, level="system")


@router.get("/Patient/$export", dependencies=[WriterSession])
def export_patients(
    request: Request, background: BackgroundTasks, session: DbSession, principal: BulkPrincipal
) -> Response:
    """Patient-level export: the compartments of every patient the caller may see."""
    return _kick_off(request, background, session, principal, level="patient")


@router.get("/Group/{group_id}/$export", dependencies=[WriterSession])
def export_group(
    request: Request,
    background: BackgroundTasks,
    session: DbSession,
    principal: BulkPrincipal,
    group_id: str,
) -> Response:
    """Group-level export: patients with a diagnosis or course for one knowledge condition."""
    return _kick_off(request, background, session, principal, level="group", group_id=group_id)


@router.get("/bulk-status/{job_id}", dependencies=[WriterSession])
def export_status(session: DbSession, principal: BulkPrincipal, job_id: str) -> Response:
    """202 with X-Progress while running; the manifest when complete."""
    _token_only(principal)
    job = bulk.access_job(session, principal, job_id)
    if job.status in ("accepted", "in-progress"):
        return Response(
            status_code=202,
            headers={"X-Progress": job.progress or job.status, "Retry-After": "2"},
        )
    if job.status == "failed":
        return FhirResponse(
            operation_outcome(job.error or "the export failed", code="exception"),
            status_code=500,
        )
    return Response(
        orjson.dumps(bulk.manifest(session, job)),
        media_type="application/json",
        headers={"Expires": job.expires_at.strftime("%a, %d %b %Y %H:%M:%S GMT")},
    )


@router.delete("/bulk-status/{job_id}", dependencies=[WriterSession])
def export_cancel(session: DbSession, principal: BulkPrincipal, job_id: str) -> Response:
    """Cancel an export and delete its files."""
    _token_only(principal)
    bulk.cancel(session, principal, job_id)
    return Response(status_code=202)


@router.get("/bulk-files/{job_id}/{file_id}", dependencies=[WriterSession])
def export_file(
    session: DbSession, principal: BulkPrincipal, job_id: str, file_id: int
) -> Response:
    """One NDJSON output file."""
    _token_only(principal)
    found = bulk.read_file(session, principal, job_id, file_id)
    return Response(found.content, media_type="application/fhir+ndjson")


# -- resource types ------------------------------------------------------------------------


@router.get("/{type_name}")
def search_type(request: Request, ctx: FhirContext, type_name: str) -> Response:
    """Search: a searchset Bundle with total and paging links."""
    items = [(k, v) for k, v in request.query_params.multi_items() if k != "_format"]
    return FhirResponse(service.search(ctx, type_name, items, strict=_strict(request)))


@router.post("/{type_name}")
def create(
    request: Request,
    ctx: FhirContext,
    type_name: str,
    body: Body,
    if_none_exist: Annotated[str | None, Header()] = None,
) -> Response:
    """Create (conditional on ``If-None-Exist``)."""
    service.mapping_for(type_name)
    # The request is one unit of work, rolled back whole on any error: no savepoint.
    status, resource = service.create(
        ctx, body, type_name=type_name, if_none_exist=if_none_exist, isolated=False
    )
    return _written(request, resource, status, ctx.base_url)


@router.get("/{type_name}/{resource_id}")
def read(ctx: FhirContext, type_name: str, resource_id: str) -> Response:
    """Read one resource."""
    resource = service.read(ctx, type_name, resource_id)
    version = resource.get("meta", {}).get("versionId")
    headers = {"ETag": f'W/"{version}"'} if version else None
    return FhirResponse(resource, headers=headers)


@router.put("/{type_name}/{resource_id}")
def update(
    request: Request,
    ctx: FhirContext,
    type_name: str,
    resource_id: str,
    body: Body,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Update (replace the mapped fields); ``If-Match`` guards against lost updates."""
    resource = service.update(ctx, type_name, resource_id, body, if_match=if_match, isolated=False)
    return _written(request, resource, 200, ctx.base_url)


@router.delete("/{type_name}/{resource_id}")
def delete(ctx: FhirContext, type_name: str, resource_id: str) -> Response:
    """Delete is not offered: clinical records are corrected, not removed."""
    service.mapping_for(type_name)
    raise NotAllowed(f"{type_name} does not support delete on this server")


@router.patch("/{type_name}/{resource_id}")
def patch(ctx: FhirContext, type_name: str, resource_id: str) -> Response:
    """Patch is not offered: send the whole resource with PUT."""
    service.mapping_for(type_name)
    raise NotAllowed(f"{type_name} does not support patch on this server; use PUT")


@router.api_route(
    "/{path:path}",
    methods=["GET", "POST", "PUT", "DELETE", "PATCH"],
    dependencies=[policy("public")],
    include_in_schema=False,
)
def unknown(path: str) -> Response:
    """Anything else under /fhir: an OperationOutcome, not an HTML page."""
    raise UnknownType(f"this server has no FHIR endpoint at /fhir/{path}")
