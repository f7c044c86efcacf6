"""The user's own account: two-factor login for staff, the access log for patients."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from prolo import ui
from prolo.errors import ValidationFailed
from prolo.security import service, totp
from prolo.security.access_log import patient_access_log
from prolo.security.models import User
from prolo.security.principal import Principal
from prolo.web import DbSession, RowId, policy

router = APIRouter(include_in_schema=False)
Anyone = Annotated[Principal, policy("authenticated")]
Staff = Annotated[Principal, policy("admin", "clinician", "front_desk")]
ChartReader = Annotated[Principal, policy("admin", "clinician")]
PatientUser = Annotated[Principal, policy("patient")]


def _enrolment_signer(request: Request) -> URLSafeTimedSerializer:
    secret = request.app.state.settings.secret_key.get_secret_value()
    return URLSafeTimedSerializer(secret, salt="prolo-totp-enrolment")


def _account_page(
    request: Request,
    session: DbSession,
    principal: Principal,
    *,
    errors: dict[str, str],
    status_code: int = 200,
    message: str | None = None,
) -> HTMLResponse:
    user = session.get_one(User, principal.user_id)
    enrolment = None
    if principal.is_staff and user.totp_secret is None:
        secret = totp.new_secret()
        uri = totp.provisioning_uri(secret, account=user.email)
        enrolment = {
            "secret": secret,
            "signed": _enrolment_signer(request).dumps(secret),
            "qr": totp.qr_svg_data_uri(uri),
        }
    return ui.render(
        request,
        "account.html",
        principal=principal,
        user=user,
        enrolment=enrolment,
        errors=errors,
        message=message,
        status_code=status_code,
    )


@router.get("/account", response_class=HTMLResponse)
def account(request: Request, session: DbSession, principal: Anyone) -> HTMLResponse:
    return _account_page(request, session, principal, errors={})


@router.post("/account/2fa/enable", response_class=HTMLResponse)
def enable_2fa(
    request: Request,
    session: DbSession,
    principal: Staff,
    code: Annotated[str, Form(max_length=20)] = "",
    enrolment: Annotated[str, Form(max_length=500)] = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    ui.check_csrf(principal, csrf_token)
    try:
        secret = _enrolment_signer(request).loads(enrolment, max_age=900)
    except BadSignature:
        return _account_page(
            request,
            session,
            principal,
            status_code=422,
            errors={"code": "The set-up expired. Scan the new code and try again."},
        )
    try:
        service.enable_totp(session=session, principal=principal, secret=secret, code=code)
    except ValidationFailed as exc:
        return _account_page(
            request, session, principal, status_code=422, errors={"code": exc.detail}
        )
    return _account_page(
        request,
        session,
        principal,
        errors={},
        message="Two-factor login is on. You will be asked for a code at login.",
    )


@router.post("/account/2fa/disable", response_class=HTMLResponse)
def disable_2fa(
    request: Request,
    session: DbSession,
    principal: Staff,
    code: Annotated[str, Form(max_length=20)] = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    ui.check_csrf(principal, csrf_token)
    try:
        service.disable_totp(session=session, principal=principal, code=code)
    except ValidationFailed as exc:
        return _account_page(
            request, session, principal, status_code=422, errors={"disable_code": exc.detail}
        )
    return _account_page(request, session, principal, errors={}, message="Two-factor login is off.")


@router.get("/patients/{patient_id}/access-log", response_class=HTMLResponse)
def chart_access_log(
    request: Request, session: DbSession, principal: ChartReader, patient_id: RowId
) -> HTMLResponse:
    from prolo.patients.models import Patient

    entries = patient_access_log(session=session, principal=principal, patient_id=patient_id)
    patient = session.get_one(Patient, patient_id)
    return ui.render(
        request, "access_log.html", principal=principal, entries=entries, patient=patient, own=False
    )


@router.get("/portal/access-log", response_class=HTMLResponse)
def my_access_log(request: Request, session: DbSession, principal: PatientUser) -> HTMLResponse:
    assert principal.patient_id is not None  # noqa: S101  (the database guarantees it)
    entries = patient_access_log(
        session=session, principal=principal, patient_id=principal.patient_id
    )
    return ui.render(
        request, "access_log.html", principal=principal, entries=entries, patient=None, own=True
    )
