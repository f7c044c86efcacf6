"""The clinician's outcomes dashboard and the report a clinic can hand out (HTML, PDF).

Handlers are plain ``def`` functions: FastAPI runs them in its thread pool, so the
server keeps answering other requests while a report is computed.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from prolo import ui
from prolo.clinic.models import Clinic
from prolo.outcomes import plots, service
from prolo.outcomes.report import Selection, km_curve
from prolo.outcomes.survival import km_svg
from prolo.security.principal import Principal
from prolo.web import DbSession, policy

router = APIRouter(include_in_schema=False)
Clinical = Annotated[Principal, policy("admin", "clinician")]


class ReportFilter(BaseModel):
    """The dashboard's filter form (query string); blanks mean "any"."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    condition: str | None = None
    practitioner: int | None = None
    injectate: str | None = None
    started_from: dt.date | None = None
    started_to: dt.date | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    def selection(self) -> Selection:
        return Selection(
            condition_id=self.condition,
            practitioner_id=self.practitioner,
            injectate=self.injectate,
            started_from=self.started_from,
            started_to=self.started_to,
        )


def _filters(request: Request) -> tuple[ReportFilter, dict[str, str], dict[str, str]]:
    values = {k: v for k, v in request.query_params.items() if isinstance(v, str)}
    try:
        form = ReportFilter.model_validate(values)
    except ValidationError as exc:
        return ReportFilter(), values, ui.field_errors(exc)
    errors = {}
    if form.started_from and form.started_to and form.started_from > form.started_to:
        errors["started_to"] = "must not be before the start of the range"
        form = ReportFilter()
    return form, values, errors


def pictures(report: dict[str, Any]) -> dict[str, Any]:
    """Every SVG of a report, keyed for the templates."""
    out: dict[str, Any] = {
        "trajectories": [
            plots.trajectory_svg(inst, id_prefix=f"traj-{inst['id']}")
            for inst in report["instruments"]
            if inst["baseline"]["n"]
        ]
    }
    ttr, dur = report.get("time_to_response"), report.get("durability")
    out["time_to_response"] = (
        km_svg(
            km_curve([tuple(r) for r in ttr["counts"]]),
            title="Time to first response (pain, MCID reached)",
            x_label="Days since the first session",
            y_label="Share not yet responding",
            id_prefix="km-response",
        )
        if ttr
        else None
    )
    out["durability"] = (
        km_svg(
            km_curve([tuple(r) for r in dur["counts"]]),
            title="Durability: still responding after the first response",
            x_label="Days since the first response",
            y_label="Share still responding",
            id_prefix="km-durability",
        )
        if dur
        else None
    )
    w = report["waterfall"]
    out["waterfall"] = (
        plots.waterfall_svg(
            w["values"],
            n=w["n"],
            percent=w["percent"],
            mcid=report.get("primary_mcid"),
            sampled=w["sampled"],
        )
        if w["n"]
        else None
    )
    return out


def _context(session: DbSession, principal: Principal, request: Request) -> dict[str, Any]:
    form, values, errors = _filters(request)
    report = service.outcome_report(
        session=session, principal=principal, selection=form.selection()
    )
    options = service.selection_options(session=session, principal=principal)
    clinic = session.get(Clinic, principal.clinic_id)
    names = {
        "condition_id": dict(options["conditions"]),
        "practitioner_id": dict(options["practitioners"]),
    }
    query = request.url.query
    return {
        "report": report,
        "pics": pictures(report),
        "options": options,
        "values": values,
        "errors": errors,
        "clinic": clinic,
        "names": names,
        "query": query,
        "generated": dt.datetime.now(dt.UTC),
    }


@router.get("/outcomes", response_class=HTMLResponse)
def dashboard(request: Request, session: DbSession, principal: Clinical) -> HTMLResponse:
    """The clinic's outcomes: filters, figures with their n, pictures, evidence."""
    context = _context(session, principal, request)
    status = 422 if context["errors"] else 200
    return ui.render(
        request, "outcomes/dashboard.html", principal=principal, status_code=status, **context
    )


@router.get("/outcomes/report.html")
def report_html(request: Request, session: DbSession, principal: Clinical) -> Response:
    """The report as one self-contained HTML file to save or print."""
    context = _context(session, principal, request)
    html = ui.TEMPLATES.get_template("outcomes/export.html").render(**context)
    return Response(
        html,
        media_type="text/html; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="outcome-report.html"'},
    )


@router.get("/outcomes/report.pdf")
def report_pdf(request: Request, session: DbSession, principal: Clinical) -> Response:
    """The report as a PDF (figures in words, then every picture)."""
    from prolo.outcomes.pdf import report_pdf as render_pdf

    context = _context(session, principal, request)
    clinic = context["clinic"]
    title = f"Outcome report: {clinic.name}" if clinic else "Outcome report"
    return Response(
        render_pdf(context["report"], title=title),
        media_type="application/pdf",
        headers={"Content-Disposition": 'attachment; filename="outcome-report.pdf"'},
    )


_YES_NO = [("", "Not asked"), ("yes", "Yes"), ("no", "No")]
_TIMEPOINTS = [
    ("baseline", "Baseline"),
    ("week_6", "6 weeks"),
    ("month_3", "3 months"),
    ("month_6", "6 months"),
    ("month_12", "12 months"),
]


def _tristate(value: str | None) -> bool | None:
    return {"yes": True, "no": False}.get(value or "")


def _follow_up_page(
    request: Request,
    session: DbSession,
    principal: Principal,
    course_id: int,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    from prolo.outcomes.mme import CONVERSION_FACTORS, DRUG_LABELS

    rows = service.list_follow_ups(session=session, principal=principal, course_id=course_id)
    return ui.render(
        request,
        "outcomes/follow_ups.html",
        principal=principal,
        status_code=status_code,
        course_id=course_id,
        rows=rows,
        values=values or {},
        errors=errors or {},
        yes_no=_YES_NO,
        timepoints=_TIMEPOINTS,
        drugs=[("", "None")]
        + [(d, f"{DRUG_LABELS[d]} (x{f.factor:g})") for d, f in CONVERSION_FACTORS.items()],
    )


@router.get("/outcomes/courses/{course_id}/follow-ups", response_class=HTMLResponse)
def follow_ups(
    request: Request, session: DbSession, principal: Clinical, course_id: int
) -> HTMLResponse:
    """A course's surgery and pain-medicine facts, with a form to record a timepoint."""
    return _follow_up_page(request, session, principal, course_id)


@router.post("/outcomes/courses/{course_id}/follow-ups", response_class=HTMLResponse)
async def record_follow_up(
    request: Request, session: DbSession, principal: Clinical, course_id: int
) -> Response:
    """Record one timepoint's facts from the form; errors are shown next to the field."""
    from starlette.concurrency import run_in_threadpool

    from prolo.errors import AppError
    from prolo.outcomes.mme import OpioidDose

    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    ui.check_csrf(principal, values.pop("csrf_token", None))
    errors: dict[str, str] = {}
    timepoint = values.get("timepoint", "")
    if timepoint not in dict(_TIMEPOINTS):
        errors["timepoint"] = "choose a timepoint"
    doses = []
    for i in (1, 2):
        drug, dose = values.get(f"drug_{i}", ""), values.get(f"dose_{i}", "").strip()
        if not drug and not dose:
            continue
        try:
            amount = float(dose)
        except ValueError:
            errors[f"dose_{i}"] = "enter the total daily dose as a number"
            continue
        if not drug:
            errors[f"drug_{i}"] = "choose the opioid"
            continue
        if not 0 <= amount <= 10_000:
            errors[f"dose_{i}"] = "must be between 0 and 10000"
            continue
        doses.append(OpioidDose(drug, amount))
    if not errors:
        facts = service.FollowUpFacts(
            timepoint=timepoint,
            surgery_planned=_tristate(values.get("surgery_planned")),
            surgery_done=_tristate(values.get("surgery_done")),
            pain_medicine_use=_tristate(values.get("pain_medicine_use")),
            opioid_use=_tristate(values.get("opioid_use")),
            opioids=tuple(doses),
        )
        try:
            await run_in_threadpool(
                service.record_follow_up,
                session=session,
                principal=principal,
                course_id=course_id,
                facts=facts,
            )
        except AppError as exc:
            if exc.http_status == 404:
                raise
            errors[exc.field or "form"] = exc.detail
    if errors:
        return await run_in_threadpool(
            _follow_up_page,
            request,
            session,
            principal,
            course_id,
            values=values,
            errors=errors,
            status_code=422,
        )
    return ui.redirect(f"/outcomes/courses/{course_id}/follow-ups")
