"""The flare diary after each injection session, and the clinic's alerts.

For seven days after a session (day 1 is the session's day, in the clinic's time
zone) the patient records pain at the treated site, swelling, redness, warmth, fever
and whether normal activity was possible. Answers that match a post-injection
warning sign (:mod:`prolo.portal.flare`) raise a clinic alert in the same
transaction, and the patient is told to call the clinic.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prolo.clinic.models import Clinic
from prolo.db import utcnow
from prolo.errors import AccessDenied, Conflict, Forbidden, ValidationFailed
from prolo.patients.models import Patient
from prolo.portal import flare
from prolo.portal.models import DIARY_DAYS, ClinicAlert, FlareDiaryEntry, Score
from prolo.portal.schemas import DiaryEntryIn
from prolo.portal.service import access_patient_outcomes, clinic_zone
from prolo.scheduling.models import Appointment
from prolo.security import audit
from prolo.security.principal import CLINICAL, Principal

DIARY_SESSION_STATUSES = ("booked", "arrived", "fulfilled")


@dataclass(frozen=True)
class DiarySession:
    """An injection session with its diary so far."""

    appointment: Appointment
    entries: list[FlareDiaryEntry]
    baseline_pain: float | None
    today: int | None  # the diary day it is now (1-7), None outside the window

    @property
    def open(self) -> bool:
        return self.today is not None

    @property
    def missing_today(self) -> bool:
        return self.today is not None and all(e.day != self.today for e in self.entries)


def diary_day(session_start: dt.datetime, at: dt.datetime, tz: ZoneInfo) -> int:
    """The diary day ``at`` falls on: 1 on the session's local date, 2 the next, ...

    Examples
    --------
    >>> utc = ZoneInfo("UTC")
    >>> start = dt.datetime(2026, 3, 2, 15, tzinfo=dt.UTC)
    >>> diary_day(start, start + dt.timedelta(hours=10), utc)
    2
    """
    return (at.astimezone(tz).date() - session_start.astimezone(tz).date()).days + 1


def _hours_after(start: dt.datetime, day: int, recorded_at: dt.datetime, tz: ZoneInfo) -> float:
    # A day filled in later describes that day: count to its end, not to the typing.
    local_start = start.astimezone(tz)
    end_of_day = dt.datetime.combine(
        local_start.date() + dt.timedelta(days=day), dt.time(0, 0), tz
    ).astimezone(dt.UTC)
    return (min(recorded_at, end_of_day) - start).total_seconds() / 3600


def _baseline_pain(session: Session, patient_id: int, before: dt.datetime) -> float | None:
    value = session.scalar(
        select(Score.value)
        .where(
            Score.patient_id == patient_id,
            Score.instrument_id == flare.PAIN_INSTRUMENT,
            Score.score_key == "total",
            Score.effective_at <= before,
        )
        .order_by(Score.effective_at.desc(), Score.id.desc())
        .limit(1)
    )
    return float(value) if value is not None else None


def _session_of(session: Session, patient: Patient, appointment_id: int) -> Appointment:
    appointment = session.get(Appointment, appointment_id)
    if (
        appointment is None
        or appointment.patient_id != patient.id
        or appointment.kind != "injection"
        or appointment.status not in DIARY_SESSION_STATUSES
    ):
        raise AccessDenied(
            "no such injection session", entity_type="Appointment", entity_id=appointment_id
        )
    return appointment


def _as_day(entry: FlareDiaryEntry, start: dt.datetime, tz: ZoneInfo) -> flare.DiaryDay:
    return flare.DiaryDay(
        day=entry.day,
        pain=entry.pain,
        swelling=entry.swelling,
        redness=entry.redness,
        warmth=entry.warmth,
        fever=entry.fever,
        normal_activity=entry.normal_activity,
        hours_after_session=_hours_after(start, entry.day, entry.recorded_at, tz),
    )


@dataclass(frozen=True)
class DiaryResult:
    """A stored diary day, the warning signs it matched and the alert it raised."""

    entry: FlareDiaryEntry
    flags: tuple[flare.RedFlag, ...]
    alert: ClinicAlert | None
    clinic_phone: str | None


def record_day(
    *,
    session: Session,
    principal: Principal,
    patient_id: int,
    data: DiaryEntryIn,
    now: dt.datetime | None = None,
) -> DiaryResult:
    """Record (or correct) one diary day; a warning sign raises a clinic alert at once.

    Only days from the session's day up to today, and at most seven, can be filled.
    """
    if principal.role not in CLINICAL | {"patient"}:
        raise Forbidden("your role may not write the flare diary")
    patient = access_patient_outcomes(
        session=session, principal=principal, patient_id=patient_id, event="flare_diary.write"
    )
    appointment = _session_of(session, patient, data.appointment_id)
    tz = clinic_zone(session, patient.clinic_id)
    moment = now or utcnow()
    today = diary_day(appointment.starts_at, moment, tz)
    if moment < appointment.starts_at or today < 1:
        raise Conflict("the diary opens on the day of the session, after it", field="day")
    if data.day > today:
        raise ValidationFailed("this day has not come yet", field="day")
    if today > DIARY_DAYS + 1:
        raise Conflict("the diary for this session has closed", field="day")
    entries = session.scalars(
        select(FlareDiaryEntry)
        .where(FlareDiaryEntry.appointment_id == appointment.id)
        .order_by(FlareDiaryEntry.day)
    ).all()
    entry = next((e for e in entries if e.day == data.day), None)
    action = "U" if entry is not None else "C"
    if entry is None:
        entry = FlareDiaryEntry(
            clinic_id=patient.clinic_id,
            patient_id=patient.id,
            appointment_id=appointment.id,
            day=data.day,
        )
        session.add(entry)
    previous_flags = set(entry.red_flags or [])
    for key in ("pain", "swelling", "redness", "warmth", "fever", "normal_activity"):
        setattr(entry, key, getattr(data, key))
    entry.recorded_at = moment
    baseline = _baseline_pain(session, patient.id, appointment.starts_at)
    day = _as_day(entry, appointment.starts_at, tz)
    earlier = [_as_day(e, appointment.starts_at, tz) for e in entries if e.day != data.day]
    flags = flare.red_flags(day, earlier=earlier, baseline_pain=baseline)
    entry.red_flags = [f.sign_id for f in flags]
    session.flush()
    audit.record(
        session,
        principal.actor,
        action=action,
        event="flare_diary.write",
        entity_type="FlareDiaryEntry",
        entity_id=entry.id,
        patient_id=patient.id,
    )
    alert = None
    new_signs = [f.sign_id for f in flags if f.sign_id not in previous_flags]
    if new_signs:
        alert = ClinicAlert(
            clinic_id=patient.clinic_id,
            patient_id=patient.id,
            kind="flare_red_flag",
            diary_entry_id=entry.id,
            signs=new_signs,
            created_at=moment,
        )
        session.add(alert)
        session.flush()
        audit.record(
            session,
            principal.actor,
            action="C",
            event="alert.create",
            entity_type="ClinicAlert",
            entity_id=alert.id,
            patient_id=patient.id,
        )
    clinic = session.get(Clinic, patient.clinic_id)
    return DiaryResult(entry, flags, alert, clinic.phone if clinic else None)


def diary_sessions(
    *,
    session: Session,
    principal: Principal,
    patient_id: int,
    now: dt.datetime | None = None,
    limit: int = 20,
) -> list[DiarySession]:
    """The patient's injection sessions (newest first) with their diaries."""
    patient = access_patient_outcomes(
        session=session, principal=principal, patient_id=patient_id, event="flare_diary.read"
    )
    moment = now or utcnow()
    tz = clinic_zone(session, patient.clinic_id)
    appointments = session.scalars(
        select(Appointment)
        .where(
            Appointment.patient_id == patient.id,
            Appointment.kind == "injection",
            Appointment.status.in_(DIARY_SESSION_STATUSES),
            Appointment.starts_at <= moment,
        )
        .order_by(Appointment.starts_at.desc())
        .limit(limit)
    ).all()
    by_session: dict[int, list[FlareDiaryEntry]] = {a.id: [] for a in appointments}
    if appointments:
        for entry in session.scalars(
            select(FlareDiaryEntry)
            .where(FlareDiaryEntry.appointment_id.in_(list(by_session)))
            .order_by(FlareDiaryEntry.day)
        ).all():
            by_session[entry.appointment_id].append(entry)
    found = []
    for appointment in appointments:
        day = diary_day(appointment.starts_at, moment, tz)
        found.append(
            DiarySession(
                appointment=appointment,
                entries=by_session[appointment.id],
                baseline_pain=_baseline_pain(session, patient.id, appointment.starts_at),
                today=day if 1 <= day <= DIARY_DAYS else None,
            )
        )
    return found


def diary_session(
    *,
    session: Session,
    principal: Principal,
    patient_id: int,
    appointment_id: int,
    now: dt.datetime | None = None,
) -> DiarySession:
    """One session's diary; AccessDenied when it is not the patient's injection session."""
    patient = access_patient_outcomes(
        session=session, principal=principal, patient_id=patient_id, event="flare_diary.read"
    )
    appointment = _session_of(session, patient, appointment_id)
    moment = now or utcnow()
    day = diary_day(appointment.starts_at, moment, clinic_zone(session, patient.clinic_id))
    entries = list(
        session.scalars(
            select(FlareDiaryEntry)
            .where(FlareDiaryEntry.appointment_id == appointment.id)
            .order_by(FlareDiaryEntry.day)
        ).all()
    )
    return DiarySession(
        appointment=appointment,
        entries=entries,
        baseline_pain=_baseline_pain(session, patient.id, appointment.starts_at),
        today=day if 1 <= day <= DIARY_DAYS and moment >= appointment.starts_at else None,
    )


# --- alerts -------------------------------------------------------------------------


def open_alerts(
    *, session: Session, principal: Principal, limit: int = 50
) -> list[tuple[ClinicAlert, Patient]]:
    """The clinic's unacknowledged alerts, newest first (clinicians and admins)."""
    if principal.role not in CLINICAL:
        raise Forbidden("only clinicians and admins see alerts")
    rows = session.execute(
        select(ClinicAlert, Patient)
        .join(Patient, Patient.id == ClinicAlert.patient_id)
        .where(ClinicAlert.clinic_id == principal.clinic_id, ClinicAlert.acknowledged_at.is_(None))
        .order_by(ClinicAlert.created_at.desc(), ClinicAlert.id.desc())
        .limit(limit)
    ).all()
    audit.record(
        session,
        principal.actor,
        action="R",
        event="alert.list",
        entity_type="ClinicAlert",
        detail=f"{len(rows)} open alerts shown",
    )
    return [(alert, patient) for alert, patient in rows]


def count_open_alerts(*, session: Session, clinic_id: int) -> int:
    """How many alerts wait for the clinic (no health data: a number)."""
    return (
        session.scalar(
            select(func.count(ClinicAlert.id)).where(
                ClinicAlert.clinic_id == clinic_id, ClinicAlert.acknowledged_at.is_(None)
            )
        )
        or 0
    )


def patient_alerts(
    *, session: Session, principal: Principal, patient_id: int
) -> Sequence[ClinicAlert]:
    """All alerts of one patient, newest first (clinicians and admins)."""
    if principal.role not in CLINICAL:
        raise Forbidden("your role may not see clinical alerts")
    patient = access_patient_outcomes(
        session=session, principal=principal, patient_id=patient_id, event="alert.read"
    )
    return session.scalars(
        select(ClinicAlert)
        .where(ClinicAlert.patient_id == patient.id)
        .order_by(ClinicAlert.created_at.desc(), ClinicAlert.id.desc())
    ).all()


def acknowledge_alert(*, session: Session, principal: Principal, alert_id: int) -> ClinicAlert:
    """Mark an alert as seen and handled by this clinician; idempotent."""
    if principal.role not in CLINICAL:
        raise Forbidden("only clinicians and admins may acknowledge an alert")
    alert = session.get(ClinicAlert, alert_id)
    if alert is None or alert.clinic_id != principal.clinic_id:
        raise AccessDenied("no such alert", entity_type="ClinicAlert", entity_id=alert_id)
    if alert.acknowledged_at is None:
        alert.acknowledged_at = utcnow()
        alert.acknowledged_by = principal.user_id
        session.flush()
        audit.record(
            session,
            principal.actor,
            action="U",
            event="alert.acknowledge",
            entity_type="ClinicAlert",
            entity_id=alert.id,
            patient_id=alert.patient_id,
        )
    return alert
