"""FHIR errors: the extra error kinds FHIR needs, and their rendering as OperationOutcome.

Under ``/fhir`` every error is an OperationOutcome with the HTTP status FHIR expects
(https://hl7.org/fhir/R4/http.html#2.21.0.6). The one table that says which status
and issue code each error gets is :func:`status_for`. prolo's own error tree
(``prolo.errors``) is reused; FHIR adds::

    AppError
     └── FhirError                    an issue FHIR names with a code
          ├── InvalidResource (400)    malformed JSON, breaks FHIR's structure rules
          │    └── CodeInvalid (400)   a code outside a required value set
          ├── UnknownType (404)        a resource type this server does not serve
          ├── NotAllowed (405)         an interaction this type does not support
          ├── NotAcceptable (406)      a format other than JSON was asked for
          ├── PreconditionFailed (412) If-Match mismatch, several conditional matches
          ├── UnsupportedMedia (415)   a body that is not FHIR JSON
          └── Unprocessable (422)      valid FHIR that breaks a prolo rule

``FhirRoute`` is the route class of the FHIR router: it turns whatever a handler (or
its dependencies, such as the access policy) raises into an OperationOutcome, so the
app-wide problem+json handlers never see a FHIR request. Diagnostics name the
problem, never health data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar

import orjson
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException

from prolo.errors import (
    AccessDenied,
    AppError,
    Conflict,
    Forbidden,
    Gone,
    NotFound,
    TooManyRequests,
    Unauthenticated,
    ValidationFailed,
    database_refusal,
)
from prolo.security import audit

log = logging.getLogger("prolo.fhir")
FHIR_JSON = "application/fhir+json"


class FhirError(AppError):
    """An error with a FHIR issue code; ``expression`` lists the FHIRPath of the culprit."""

    issue_code: ClassVar[str] = "processing"

    def __init__(self, detail: str, *, expression: list[str] | None = None) -> None:
        super().__init__(detail)
        self.expression = expression or []


class InvalidResource(FhirError):
    code = "fhir_invalid"
    http_status = 400
    title = "Invalid resource"
    issue_code = "invalid"


class CodeInvalid(InvalidResource):
    """A code outside the value set FHIR binds the element to (required binding)."""

    issue_code = "code-invalid"


class ConditionUnsupported(InvalidResource):
    """A condition the server cannot evaluate for this type (``If-None-Exist`` where
    conditional create is not offered): 400 ``not-supported``. Creating anyway would
    ignore it, and 412 would say its criteria matched too much."""

    issue_code = "not-supported"


class UnknownType(FhirError):
    code = "fhir_unknown_type"
    http_status = 404
    title = "Unknown resource type"
    issue_code = "not-supported"


class NotAllowed(FhirError):
    code = "fhir_not_allowed"
    http_status = 405
    title = "Interaction not supported"
    issue_code = "not-supported"


class NotAcceptable(FhirError):
    code = "fhir_not_acceptable"
    http_status = 406
    title = "Format not supported"
    issue_code = "not-supported"


class PreconditionFailed(FhirError):
    code = "fhir_precondition_failed"
    http_status = 412
    title = "Precondition failed"
    issue_code = "conflict"


class MultipleMatches(PreconditionFailed):
    issue_code = "multiple-matches"


class UnsupportedMedia(FhirError):
    code = "fhir_unsupported_media"
    http_status = 415
    title = "Unsupported media type"
    issue_code = "not-supported"


class Unprocessable(FhirError):
    code = "fhir_unprocessable"
    http_status = 422
    title = "Unprocessable resource"
    issue_code = "business-rule"


# prolo's own errors, as FHIR sees them: (HTTP status, issue code).
_STATUS: tuple[tuple[type[BaseException], int, str], ...] = (
    (AccessDenied, 404, "not-found"),
    (NotFound, 404, "not-found"),
    (Unauthenticated, 401, "login"),
    (Forbidden, 403, "forbidden"),
    (Conflict, 409, "conflict"),
    (Gone, 410, "deleted"),
    (TooManyRequests, 429, "throttled"),
    (ValidationFailed, 422, "invalid"),
)


def status_for(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and OperationOutcome issue code for an error."""
    if isinstance(exc, FhirError):
        return exc.http_status, exc.issue_code
    for kind, status, code in _STATUS:
        if isinstance(exc, kind):
            return status, code
    if isinstance(exc, AppError):
        return exc.http_status, "invalid"
    if isinstance(exc, RequestValidationError):
        return 400, "invalid"
    if isinstance(exc, StarletteHTTPException):
        code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
        return exc.status_code, code
    return 500, "exception"


def operation_outcome(
    diagnostics: str,
    *,
    code: str = "processing",
    severity: str = "error",
    expression: list[str] | None = None,
) -> dict[str, Any]:
    """An OperationOutcome with one issue.

    See: https://hl7.org/fhir/R4/operationoutcome.html
    """
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def outcome_for(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The status and OperationOutcome that report ``exc`` to a FHIR client."""
    status, code = status_for(exc)
    expression: list[str] | None = None
    if isinstance(exc, FhirError):
        diagnostics, expression = exc.detail, exc.expression
    elif isinstance(exc, AppError):
        diagnostics = exc.detail
        fields = [e["field"] for e in exc.errors if e.get("field")]
        expression = fields or None
    elif isinstance(exc, RequestValidationError):
        parts = []
        for err in exc.errors()[:5]:
            loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path"))
            parts.append(f"{loc}: {err.get('msg', 'invalid')}")
        diagnostics = "; ".join(parts) or "invalid request"
    elif isinstance(exc, StarletteHTTPException):
        diagnostics = str(exc.detail)
    else:
        diagnostics = "something went wrong on our side; the error was logged"
    return status, operation_outcome(diagnostics, code=code, expression=expression)


def remember_session(request: Request, session: Session) -> None:
    """Let :func:`error_response` roll back this request's unit of work on an error.

    A session from :data:`prolo.web.DbSession` is registered already; this is for a
    route that opens its own.
    """
    request.state.db_session = session


class FhirResponse(Response):
    """``application/fhir+json`` serialised with orjson (fast, and dicts only)."""

    media_type = FHIR_JSON

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _audit_denied(request: Request, error: AccessDenied) -> None:
    """Record a refused access in its own transaction (the request's was rolled back)."""
    principal = getattr(request.state, "principal", None)
    actor = principal.actor if principal else audit.Actor(None, None, None, None)
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    try:
        with factory() as session, session.begin():
            audit.record(
                session,
                actor,
                action="R",
                event="access.denied",
                entity_type=error.entity_type,
                entity_id=error.entity_id,
                outcome="4",
            )
    except Exception:  # an audit failure must not turn a 404 into a 500
        log.exception("could not record a denied access")


def error_response(request: Request, exc: BaseException) -> Response:
    """Render any error raised while serving a FHIR request as an OperationOutcome.

    The request's unit of work is rolled back first: the error is caught here, inside
    the dependency stack, so the session would otherwise commit what was written
    before the error (half a transaction Bundle).
    """
    session: Session | None = getattr(request.state, "db_session", None)
    if session is not None:
        session.rollback()
    if isinstance(exc, AccessDenied):
        _audit_denied(request, exc)
    if isinstance(exc, IntegrityError):  # a race the service did not foresee: 409
        exc = database_refusal(exc)
    status, body = outcome_for(exc)
    if status == 500:
        log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path)
    headers = {"WWW-Authenticate": 'Bearer realm="prolo"'} if status == 401 else None
    return FhirResponse(body, status_code=status, headers=headers)


class FhirRoute(APIRoute):
    """A route whose errors, from the handler or its dependencies, are OperationOutcomes.

    The request's session (:data:`prolo.web.DbSession` registers it on
    ``request.state``, :func:`remember_session` any other) is rolled back on an error.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except Exception as exc:  # every error under /fhir is an OperationOutcome
                return error_response(request, exc)

        return handler
