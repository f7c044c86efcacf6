"""The ASGI application: mounts each domain's routers and pages, renders errors.

Errors are rendered in one place: problem+json (RFC 9457) for the API, a page with
the message for browsers, and (later) OperationOutcome under ``/fhir``. A stack
trace never reaches a user, and no request body or health data reaches the log.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.telemetry import TelemetryConfig
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from prolo import ui
from prolo.db import (
    create_db_engine,
    make_sessionmaker,
    make_writer_sessionmaker,
    sqlalchemy_url,
)
from prolo.errors import (
    AccessDenied,
    AppError,
    NotFound,
    Unauthenticated,
    ValidationFailed,
    database_refusal,
)
from prolo.middleware import SecurityHeaders
from prolo.security import audit
from prolo.security import service as security_service
from prolo.security.principal_cache import PrincipalCache, SecurityListener
from prolo.security.throttle import LoginThrottle
from prolo.settings import Settings
from prolo.web import policy

log = logging.getLogger("prolo")
PROBLEM_JSON = "application/problem+json"


def _wants_json(request: Request) -> bool:
    path = request.url.path
    if path.startswith(("/api", "/fhir", "/cds-services", "/health")):
        return True
    accept = request.headers.get("accept", "")
    return "json" in accept and "text/html" not in accept


def _problem(request: Request, error: AppError) -> Response:
    if _wants_json(request):
        return JSONResponse(
            error.problem(instance=request.url.path),
            status_code=error.http_status,
            media_type=PROBLEM_JSON,
        )
    if isinstance(error, Unauthenticated):
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    principal = getattr(request.state, "principal", None)
    return ui.render(
        request,
        "error.html",
        principal=principal,
        status_code=error.http_status,
        error=error,
    )


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


def install_error_handlers(app: FastAPI) -> None:
    """Render AppError, validation errors, HTTP errors and crashes consistently."""

    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError) -> Response:
        if isinstance(exc, AccessDenied):
            _audit_denied(request, exc)
        return _problem(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        errors = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
            errors.append(
                {
                    "field": ".".join(loc) or "body",
                    "message": err["msg"].removeprefix("Value error, "),
                }
            )
        first = errors[0] if errors else {"field": "body", "message": "invalid"}
        error = ValidationFailed(
            f"{first['field']}: {first['message']}"
            + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
            errors=errors,
        )
        return _problem(request, error)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return _problem(request, NotFound("no such page or resource"))
        error = AppError(str(exc.detail))
        error.http_status = exc.status_code  # type: ignore[misc]
        return _problem(request, error)

    @app.exception_handler(IntegrityError)
    async def refused(request: Request, exc: IntegrityError) -> Response:
        # A constraint the service's own checks did not foresee: almost always a
        # concurrent request that won a race (the request's work was rolled back).
        log.warning("database refused a write on %s %s", request.method, request.url.path)
        return _problem(request, database_refusal(exc))

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> Response:
        # Log the type and where, never the request body or the values (health data).
        log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path)
        error = AppError("something went wrong on our side; the error was logged")
        error.http_status = 500  # type: ignore[misc]
        error.code = "internal_error"  # type: ignore[misc]
        return _problem(request, error)


# FastAPI's built-in OpenTelemetry, off: its logs record exception messages and stack
# traces (which could carry health data), FASTAPI_OTEL_AUTO_CONFIGURE would add
# exporters that send data off the machine, and its per-request provider checks cost
# CPU on every request. A deployment that wants tracing adds it deliberately.
NO_TELEMETRY: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
    "auto_configure": False,
}


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Run the security listener beside the app when principals are cached."""
    listener = None
    if app.state.principal_cache is not None and not app.state.principal_cache.checked:
        url = make_url(sqlalchemy_url(app.state.settings.database_url))
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        listener = SecurityListener(app.state.principal_cache, dsn)
        listener.start()
    try:
        yield
    finally:
        if listener is not None:
            await run_in_threadpool(listener.stop)
        if app.state.engine is not None:  # the app's own connections close with it
            app.state.engine.dispose()


def create_app(settings: Settings | None = None, *, session_factory: Any = None) -> FastAPI:
    """Build the app for ``settings``; tests may hand in their own session factory."""
    settings = settings or Settings()
    app = FastAPI(
        lifespan=_lifespan,
        title="prolo",
        version="0.1.0",
        description="Clinical platform for prolotherapy practices.",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
        telemetry=NO_TELEMETRY,
    )
    app.state.settings = settings
    own_engine = session_factory is None
    app.state.engine = None
    if session_factory is None:
        engine = app.state.engine = create_db_engine(settings)
        session_factory = make_sessionmaker(engine)
        request_factory = make_writer_sessionmaker(engine)
    else:
        request_factory = session_factory
    app.state.sessionmaker = session_factory
    # Requests write (at least their audit entry), so their transactions begin as
    # writers; see prolo.db.make_writer_sessionmaker.
    app.state.request_sessionmaker = request_factory
    app.state.db_slots = anyio.Semaphore(settings.request_pool_size) if own_engine else None
    # Bearer-token principals are cached where a revocation reaches every process:
    # announced by NOTIFY on PostgreSQL, checked by each request's own transaction
    # against a trigger-kept counter on SQLite (prolo.security.principal_cache).
    checked = settings.database_kind == "sqlite"
    app.state.principal_cache = PrincipalCache(checked=checked) if own_engine else None
    if own_engine and checked:
        security_service.check_cached_principals(request_factory)
    app.state.login_throttle = LoginThrottle()
    ui.TEMPLATES.env.globals["clinic_tz"] = settings.tz

    app.add_middleware(SecurityHeaders, secure_cookies=settings.secure_cookies)
    install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")

    @app.get("/health", tags=["ops"], dependencies=[policy("public")])
    def health(request: Request) -> dict[str, str]:
        """Liveness and database reachability; no health data."""
        factory = request.app.state.sessionmaker
        with factory() as session:
            session.execute(text("SELECT 1"))
        return {"status": "ok", "database": settings.database_kind}

    from prolo.routers import include_all

    include_all(app)
    return app
