"""Request plumbing shared by every domain's routes and pages.

- :data:`DbSession`: the request's unit of work. It commits after the handler
  returns and *before* the response is sent, so a client never sees success for a
  write that did not commit.
- :func:`policy`: every route declares who may call it. ``policy("clinician",
  "admin")`` resolves the principal (bearer token or session cookie) and refuses
  everyone else; ``policy("public")`` marks a deliberately open route. A test walks
  the route table and fails for any route without one.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import nullcontext
from contextvars import ContextVar
from typing import Annotated, Any

import anyio
from fastapi import Depends, Path, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from prolo.errors import Forbidden, Unauthenticated
from prolo.security import service as security_service
from prolo.security.principal import Principal

SESSION_COOKIE = "prolo_session"
MAX_ROW_ID = 2_147_483_647  # fits every integer key on both databases

# A row id in a URL: positive and within the database's integer range, so a huge
# number is a 422 naming the parameter rather than an overflow inside the driver.
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
PUBLIC = "public"
AUTHENTICATED = "authenticated"
ROLE_NAMES = ("admin", "clinician", "front_desk", "patient", "researcher")


def _commit_and_close(session: Session) -> None:
    with session:
        session.commit()


def _roll_back_and_close(session: Session) -> None:
    with session:
        session.rollback()


# The request's session, for :func:`commit_after` in the endpoint's worker thread
# (context variables follow a request into the thread pool).
_REQUEST_SESSION: ContextVar[Session | None] = ContextVar("prolo_request_session", default=None)


def commit_after(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a plain ``def`` endpoint so its request's transaction commits in its thread.

    The commit then rides on the endpoint's trip to the thread pool instead of taking
    a trip of its own after it; :data:`DbSession` finds nothing left to commit. The
    contract is unchanged: the commit happens after the handler returns and before
    the response is sent, and an error in it is the request's error.
    """

    @functools.wraps(endpoint)
    def run(*args: Any, **kwargs: Any) -> Any:
        result = endpoint(*args, **kwargs)
        session = _REQUEST_SESSION.get()
        if session is not None and session.in_transaction():
            session.commit()
        return result

    run.__prolo_commit_after__ = True  # type: ignore[attr-defined]
    return run


def is_committing(endpoint: Callable[..., Any]) -> bool:
    """Whether ``endpoint`` is already wrapped by :func:`commit_after`."""
    return bool(getattr(endpoint, "__prolo_commit_after__", False))


async def _unit_of_work(request: Request) -> AsyncIterator[Session]:
    # An async generator, so that opening the session (no I/O: it connects on first
    # use) costs no trip to the thread pool. A plain ``def`` endpoint has committed in
    # its own thread already (:func:`commit_after`), so only an ``async def`` one's
    # commit, or a rollback, takes a trip here; a request that never touched the
    # database takes none. Profiling put each trip at 0.1-0.2 ms of CPU.
    #
    # At most ``db_slots`` requests hold a session at once (the connection pool's
    # size); the rest wait here, in the event loop, holding nothing. Without this a
    # burst could fill the thread pool with requests waiting for a connection while
    # the requests holding connections wait for a thread to commit in: a deadlock
    # broken only by the pool timeout.
    factory = request.app.state.request_sessionmaker
    slots: anyio.Semaphore | None = request.app.state.db_slots
    async with slots if slots is not None else nullcontext():
        session: Session = factory()
        _REQUEST_SESSION.set(session)
        request.state.db_session = session  # for error handlers that roll back
        try:
            yield session
        except BaseException:
            await run_in_threadpool(_roll_back_and_close, session)
            raise
        if session.in_transaction():
            await run_in_threadpool(_commit_and_close, session)
        elif security_service.check_is_pending(session):
            # A cached principal not yet confirmed, by a request that never touched
            # the database: confirm it before the response goes out.
            await run_in_threadpool(security_service.confirm_pending, session)
        else:
            session.close()


DbSession = Annotated[Session, Depends(_unit_of_work, scope="function")]


def client_ip(request: Request) -> str | None:
    """The peer address (a reverse proxy's X-Forwarded-For is trusted only via uvicorn)."""
    return request.client.host if request.client else None


def resolve_principal(request: Request, session: Session) -> Principal | None:
    """The caller from a bearer token or a session cookie; None when anonymous."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    ip = client_ip(request)
    principal: Principal | None = None
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
        principal = security_service.principal_for_token(
            session=session,
            secret=credentials.strip(),
            source_ip=ip,
            cache=request.app.state.principal_cache,
        )
        if principal is None:
            raise Unauthenticated("the bearer token is unknown, expired or revoked")
    else:
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            principal = security_service.principal_for_cookie(
                session=session, secret=cookie, source_ip=ip
            )
    request.state.principal = principal
    return principal


def _cached_principal(request: Request, session: Session) -> Principal | None:
    """A bearer token's principal from the cache, without I/O; None to look it up.

    On SQLite (checked mode) the hit is confirmed by the request's own transaction
    when it begins, before any of its statements run (see
    :mod:`prolo.security.principal_cache`).
    """
    cache = request.app.state.principal_cache
    if cache is None:
        return None
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    secret = credentials.strip()
    hit = security_service.cached_token_principal(
        cache, secret=secret, source_ip=client_ip(request)
    )
    if hit is None:
        return None
    if cache.checked and not security_service.defer_check(session, cache, secret, hit):
        return None
    request.state.principal = hit.principal
    return hit.principal


def policy(*roles: str, scope: str | None = None) -> Any:
    """A dependency that admits only ``roles`` (or anyone for ``"public"``).

    The returned ``Depends`` carries ``__prolo_policy__`` so the route table can be
    checked for routes without a policy. ``scope`` is the API-token scope required
    when the caller uses a bearer token ("read" for GET, "write" for changes).
    """
    if not roles:
        raise ValueError("policy() needs at least one role, 'public' or 'authenticated'")
    unknown = set(roles) - {PUBLIC, AUTHENTICATED, *ROLE_NAMES}
    if unknown:
        raise ValueError(f"unknown role(s) in policy: {sorted(unknown)}")

    if roles == (PUBLIC,):

        async def public(request: Request) -> None:  # no I/O: no thread-pool trip
            request.state.policy = PUBLIC

        public.__prolo_policy__ = (PUBLIC,)  # type: ignore[attr-defined]
        return Depends(public)

    async def guard(request: Request, session: DbSession) -> Principal:
        # A cached bearer token resolves without I/O, so without a thread-pool trip.
        principal = _cached_principal(request, session)
        if principal is None:
            principal = await run_in_threadpool(resolve_principal, request, session)
        if principal is None:
            raise Unauthenticated("log in or send a bearer token")
        if AUTHENTICATED not in roles and principal.role not in roles:
            raise Forbidden("your role may not use this")
        if principal.via == "token":
            needed = scope or ("read" if request.method in ("GET", "HEAD") else "write")
            if needed not in principal.scopes and "admin" not in principal.scopes:
                raise Forbidden(f"this token lacks the {needed!r} scope")
        return principal

    guard.__prolo_policy__ = roles  # type: ignore[attr-defined]
    return Depends(guard)


def route_policy(dependencies: list[Any]) -> tuple[str, ...] | None:
    """The policy a route's dependency tree declares, or None (used by the route test)."""
    for dep in dependencies:
        found = getattr(dep.call, "__prolo_policy__", None)
        if found is not None:
            return tuple(found)
        nested = route_policy(dep.dependencies)
        if nested is not None:
            return nested
    return None


Guard = Callable[..., Principal]


def api_routes(routes: list[Any]) -> list[Any]:
    """Every ``APIRoute`` under ``routes``, looking inside included routers.

    FastAPI may keep an included router as one lazy entry; the route table test and
    the authorization matrix need the routes themselves.
    """
    from fastapi.routing import APIRoute

    found: list[Any] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):
            found.extend(api_routes(route.original_router.routes))
    return found
