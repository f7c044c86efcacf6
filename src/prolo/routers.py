"""Every domain's API routes and pages, mounted in one place."""

from __future__ import annotations

from fastapi import FastAPI

from prolo.clinic import pages as clinic_pages
from prolo.patients import pages as patient_pages
from prolo.patients import routes as patient_routes
from prolo.portal import pages as portal_pages
from prolo.security import pages as security_pages


def include_all(app: FastAPI) -> None:
    """Mount API routers first, then pages."""
    app.include_router(patient_routes.router)
    app.include_router(security_pages.router)
    app.include_router(clinic_pages.router)
    app.include_router(patient_pages.router)
    app.include_router(portal_pages.router)
