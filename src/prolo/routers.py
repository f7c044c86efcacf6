"""Every domain's API routes and pages, mounted in one place.

A domain's ``routes.py`` (or ``<name>_routes.py``) and ``pages.py`` (or
``<name>_pages.py``) modules that define ``router`` are found and mounted: API
routers first, then pages.

The routes are added to the application's own route list rather than through
``include_router``. FastAPI keeps an included router as a lazy branch that is
matched twice per request (once to find it, once to dispatch into it) with
per-candidate bookkeeping; with some thirty domain routers that cost about
0.3 ms per request before any handler ran, more than the framework's whole bare
request. Our routers carry everything on their routes (prefix, tags and router
dependencies are applied when a route is declared), so adding the routes
themselves is equivalent; a router that relies on include-time behaviour
(lifespan or startup handlers) is still included the ordinary way.
"""

from __future__ import annotations

import inspect

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from prolo.discovery import domain_modules
from prolo.web import commit_after, is_committing


def _self_contained(router: APIRouter) -> bool:
    # _DefaultLifespan is what a router without a lifespan of its own carries.
    default_lifespan = type(router.lifespan_context).__name__ == "_DefaultLifespan"
    return not (router.on_startup or router.on_shutdown) and default_lifespan


def include_all(app: FastAPI) -> None:
    """Mount API routers first, then pages; plain ``def`` endpoints commit in their thread."""
    for suffix in ("routes", "pages"):
        for module in domain_modules(suffix):
            router = getattr(module, "router", None)
            if not isinstance(router, APIRouter):
                continue
            if _self_contained(router):
                app.router.routes.extend(router.routes)
            else:
                app.include_router(router)
    # FastAPI calls ``dependant.call`` at request time (the declared endpoint stays as
    # it was for the schema); tests/test_routes.py checks every plain endpoint is wrapped.
    for route in app.router.routes:
        if not isinstance(route, APIRoute):
            continue
        call = route.dependant.call
        # The domain routers' route objects are shared by every app built in this
        # process (tests build many): wrap once, or each app would add a layer.
        if call is None or inspect.iscoroutinefunction(call) or is_committing(call):
            continue
        route.dependant.call = commit_after(call)
