"""Every domain's API routes and pages, mounted in one place.

A domain's ``routes.py`` (or ``<name>_routes.py``) and ``pages.py`` (or
``<name>_pages.py``) modules that define ``router`` are found and mounted: API
routers first, then pages.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from prolo.discovery import domain_modules


def include_all(app: FastAPI) -> None:
    """Mount API routers first, then pages."""
    for suffix in ("routes", "pages"):
        for module in domain_modules(suffix):
            router = getattr(module, "router", None)
            if isinstance(router, APIRouter):
                app.include_router(router)
