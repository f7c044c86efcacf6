"""Pages of the patient chart: list with search, registration, chart, edits."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.convertors import Convertor, register_url_convertor
from starlette.datastructures import FormData

from prolo import ui
from prolo.errors import AppError
from prolo.patients import service
from prolo.patients.models import Patient
from prolo.patients.schemas import AllergyIn, DiagnosisIn, MedicationIn, PatientIn
from prolo.security.principal import Principal
from prolo.ui import PostedForm
from prolo.web import DbSession, RowId, policy


class ChartListConvertor(Convertor[str]):
    """Matches only the chart's own lists, so other pages under /patients/{id}/ are reachable."""

    regex = "diagnoses|allergies|medications"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("chartlist", ChartListConvertor())

router = APIRouter(include_in_schema=False)
Staff = Annotated[Principal, policy("admin", "clinician", "front_desk")]
ChartWriter = Annotated[Principal, policy("admin", "clinician")]

PAGE_SIZE = 25


def _form(form: FormData) -> dict[str, str]:
    return {k: v for k, v in form.items() if isinstance(v, str)}


@router.get("/patients", response_class=HTMLResponse)
def patient_list(
    request: Request,
    session: DbSession,
    principal: Staff,
    q: Annotated[str, Query(max_length=100)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> HTMLResponse:
    rows, total = service.list_patients(
        session=session,
        principal=principal,
        query=q,
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
    )
    pages = max(1, -(-total // PAGE_SIZE))
    return ui.render(
        request,
        "patients/list.html",
        principal=principal,
        patients=rows,
        total=total,
        q=q,
        page=page,
        pages=pages,
    )


@router.get("/patients/new", response_class=HTMLResponse)
def new_patient_form(request: Request, principal: Staff) -> HTMLResponse:
    return ui.render(
        request, "patients/form.html", principal=principal, values={}, errors={}, patient=None
    )


def _patient_values(patient: Patient) -> dict[str, Any]:
    return {k: getattr(patient, k) or "" for k in PatientIn.model_fields}


@router.post("/patients/new", response_class=HTMLResponse)
def register_patient(
    request: Request, session: DbSession, principal: Staff, posted_form: PostedForm
) -> Response:
    values = _form(posted_form)
    ui.check_csrf(principal, values.pop("csrf_token", None))
    try:
        data = PatientIn.model_validate(values)
        patient = service.register_patient(session=session, principal=principal, data=data)
    except ValidationError as exc:
        return ui.render(
            request,
            "patients/form.html",
            principal=principal,
            values=values,
            errors=ui.field_errors(exc),
            patient=None,
            status_code=422,
        )
    except AppError as exc:
        return ui.render(
            request,
            "patients/form.html",
            principal=principal,
            values=values,
            errors={exc.field or "form": exc.detail},
            patient=None,
            status_code=exc.http_status,
        )
    return ui.redirect(f"/patients/{patient.id}")


def _chart(
    request: Request,
    session: DbSession,
    principal: Principal,
    patient_id: RowId,
    *,
    errors: dict[str, dict[str, str]] | None = None,
    values: dict[str, dict[str, str]] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    patient = service.access_patient_by_id(
        session=session, principal=principal, patient_id=patient_id
    )
    return ui.render(
        request,
        "patients/chart.html",
        principal=principal,
        patient=patient,
        clinical=principal.role in service.CHART_READERS,
        errors=errors or {},
        values=values or {},
        status_code=status_code,
    )


@router.get("/patients/{patient_id}", response_class=HTMLResponse)
def chart(
    request: Request, session: DbSession, principal: Staff, patient_id: RowId
) -> HTMLResponse:
    return _chart(request, session, principal, patient_id)


@router.get("/patients/{patient_id}/edit", response_class=HTMLResponse)
def edit_patient_form(
    request: Request, session: DbSession, principal: Staff, patient_id: RowId
) -> HTMLResponse:
    patient = service.access_patient_by_id(
        session=session, principal=principal, patient_id=patient_id
    )
    return ui.render(
        request,
        "patients/form.html",
        principal=principal,
        values=_patient_values(patient),
        errors={},
        patient=patient,
    )


@router.post("/patients/{patient_id}/edit", response_class=HTMLResponse)
def edit_patient(
    request: Request,
    session: DbSession,
    principal: Staff,
    patient_id: RowId,
    posted_form: PostedForm,
) -> Response:
    values = _form(posted_form)
    ui.check_csrf(principal, values.pop("csrf_token", None))
    patient = service.access_patient_by_id(
        session=session, principal=principal, patient_id=patient_id
    )
    try:
        data = PatientIn.model_validate(values)
        service.update_patient(
            session=session, principal=principal, patient_id=patient_id, data=data
        )
    except ValidationError as exc:
        return ui.render(
            request,
            "patients/form.html",
            principal=principal,
            values=values,
            errors=ui.field_errors(exc),
            patient=patient,
            status_code=422,
        )
    except AppError as exc:
        return ui.render(
            request,
            "patients/form.html",
            principal=principal,
            values=values,
            errors={exc.field or "form": exc.detail},
            patient=patient,
            status_code=exc.http_status,
        )
    return ui.redirect(f"/patients/{patient_id}")


_ADDERS: dict[str, tuple[type[BaseModel], Any]] = {
    "diagnoses": (DiagnosisIn, service.add_diagnosis),
    "allergies": (AllergyIn, service.add_allergy),
    "medications": (MedicationIn, service.add_medication),
}


@router.post("/patients/{patient_id}/{kind:chartlist}", response_class=HTMLResponse)
def add_chart_entry(
    request: Request,
    session: DbSession,
    principal: ChartWriter,
    patient_id: RowId,
    kind: str,
    posted_form: PostedForm,
) -> Response:
    """Add a diagnosis, allergy or medication from the chart's inline forms."""
    values = _form(posted_form)
    ui.check_csrf(principal, values.pop("csrf_token", None))
    schema, add = _ADDERS[kind]
    try:
        data = schema.model_validate({k: v for k, v in values.items() if v != ""})
        add(session=session, principal=principal, patient_id=patient_id, data=data)
    except ValidationError as exc:
        return _chart(
            request,
            session,
            principal,
            patient_id,
            errors={kind: ui.field_errors(exc)},
            values={kind: values},
            status_code=422,
        )
    except AppError as exc:
        if exc.http_status == 404:
            raise
        return _chart(
            request,
            session,
            principal,
            patient_id,
            errors={kind: {exc.field or "form": exc.detail}},
            values={kind: values},
            status_code=exc.http_status,
        )
    return ui.redirect(f"/patients/{patient_id}#{kind}")


@router.post(
    "/patients/{patient_id}/{kind:chartlist}/{entry_id}/delete", response_class=HTMLResponse
)
def remove_chart_entry(
    request: Request,
    session: DbSession,
    principal: ChartWriter,
    patient_id: RowId,
    kind: str,
    entry_id: RowId,
    posted_form: PostedForm,
) -> Response:
    singular = {"diagnoses": "diagnosis", "allergies": "allergy", "medications": "medication"}
    values = _form(posted_form)
    ui.check_csrf(principal, values.get("csrf_token"))
    service.remove_chart_entry(
        session=session,
        principal=principal,
        patient_id=patient_id,
        kind=singular[kind],
        entry_id=entry_id,
    )
    return ui.redirect(f"/patients/{patient_id}#{kind}")
