"""Deterministic synthetic clinic data for the demo, the tests and the benchmarks.

Everything here is invented and labelled so: names come from short generic lists,
trajectories from a simple random model (a responder share, a mean improvement,
noise and drop-out). None of these numbers is a clinical claim; they only make the
product look and behave like a working clinic. The generator streams rows in
batches with Core inserts, so the same code fills a demo of 60 patients or a
registry of a million.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from prolo.clinic.models import Clinic, Practitioner, Room
from prolo.courses.models import TreatmentCourse
from prolo.patients.models import Allergy, Diagnosis, Medication, Patient
from prolo.portal.models import QuestionnaireResponse, Score
from prolo.scheduling.models import Appointment

GIVEN = (
    "Olivia Liam Emma Noah Ava Elijah Sophia James Isabella Lucas Mia Mateo Amelia Ethan Harper "
    "Daniel Evelyn Henry Abigail Jack Emily Owen Ella Samuel Grace Leo Chloe Wyatt Nora Julian "
    "Aria Levi Hazel Isaac Layla Gabriel Zoe Anthony Lily Maya Omar Priya Wei Yuki Fatima Diego"
).split()
FAMILY = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
    "Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris "
    "Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill "
    "Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Patel Chen Kim"
).split()
CITIES = ("Springfield", "Riverton", "Lakeside", "Fairview", "Greenville", "Oakdale")
STREETS = ("Maple", "Oak", "Cedar", "Elm", "Pine", "Birch", "Willow", "Lake", "Hill", "Park")
ALLERGENS = (
    ("Penicillin", "Rash"),
    ("Latex", "Hives"),
    ("Sulfonamides", "Rash"),
    ("Shellfish", "Swelling"),
    ("Codeine", "Nausea"),
)
MEDICATIONS = (
    ("Ibuprofen", "400 mg as needed"),
    ("Acetaminophen", "500 mg as needed"),
    ("Lisinopril", "10 mg daily"),
    ("Metformin", "500 mg twice daily"),
    ("Atorvastatin", "20 mg daily"),
    ("Levothyroxine", "50 mcg daily"),
    ("Naproxen", "250 mg twice daily"),
)
FOLLOW_UPS = (("week_6", 42), ("month_3", 91), ("month_6", 182), ("month_12", 365))


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. The same seed always gives the same data."""

    patients: int = 60
    seed: int = 7
    practitioners: int = 4
    rooms: int = 3
    clinic_name: str = "Riverside Musculoskeletal Clinic"
    timezone: str = "America/New_York"
    batch: int = 2000
    today: dt.date | None = None  # defaults to the current UTC date


@dataclass
class SynthSummary:
    """How many rows of each kind were written."""

    clinic_id: int = 0
    practitioner_ids: list[int] = field(default_factory=list)
    room_ids: list[int] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, table: str, n: int) -> None:
        self.counts[table] = self.counts.get(table, 0) + n


class _Writer:
    """Buffers rows per table and inserts them in batches, parents first."""

    ORDER = (
        "patient",
        "diagnosis",
        "allergy",
        "medication",
        "treatment_course",
        "appointment",
        "questionnaire_response",
        "score",
    )
    TABLES: dict[str, Any] = {
        "patient": Patient,
        "diagnosis": Diagnosis,
        "allergy": Allergy,
        "medication": Medication,
        "treatment_course": TreatmentCourse,
        "appointment": Appointment,
        "questionnaire_response": QuestionnaireResponse,
        "score": Score,
    }

    def __init__(self, session: Session, summary: SynthSummary, batch: int) -> None:
        self.session = session
        self.summary = summary
        self.batch = batch
        self.rows: dict[str, list[dict[str, Any]]] = {t: [] for t in self.ORDER}
        self.next_id = {t: self._max_id(t) + 1 for t in self.ORDER}

    def _max_id(self, table: str) -> int:
        model = self.TABLES[table]
        return int(self.session.scalar(select(func.coalesce(func.max(model.id), 0))) or 0)

    def add(self, table: str, row: dict[str, Any]) -> int:
        row_id = self.next_id[table]
        self.next_id[table] += 1
        row["id"] = row_id
        self.rows[table].append(row)
        return row_id

    def full(self) -> bool:
        return len(self.rows["patient"]) >= self.batch

    def flush(self) -> None:
        for table in self.ORDER:
            rows = self.rows[table]
            if rows:
                self.session.execute(insert(self.TABLES[table]), rows)
                self.summary.add(table, len(rows))
                rows.clear()


class _Calendar:
    """Hands out 30-minute slots so that no practitioner, room or patient is double-booked."""

    def __init__(self, tz: ZoneInfo, practitioners: Sequence[int], rooms: Sequence[int]) -> None:
        self.tz = tz
        self.practitioners = practitioners
        self.rooms = rooms
        self.taken: set[tuple[str, int, dt.datetime]] = set()

    def book(
        self, day: dt.date, practitioner: int, patient: int, rng: random.Random
    ) -> tuple[dt.datetime, int]:
        for offset in range(0, 60):
            date = day + dt.timedelta(days=offset)
            if date.weekday() >= 5:
                continue
            starts = [dt.time(9 + h // 2, 30 * (h % 2)) for h in range(16)]
            rng.shuffle(starts)
            for start in starts:
                when = dt.datetime.combine(date, start, self.tz).astimezone(dt.UTC)
                if ("p", practitioner, when) in self.taken or ("pt", patient, when) in self.taken:
                    continue
                for room in self.rooms:
                    if ("r", room, when) not in self.taken:
                        self.taken.update(
                            {("p", practitioner, when), ("r", room, when), ("pt", patient, when)}
                        )
                        return when, room
        raise RuntimeError("the synthetic calendar is full; use fewer patients per clinic")


def _conditions() -> list[tuple[str, str, str, int, int, str]]:
    """(condition id, ICD-10-CM code, display, sessions, interval weeks, injectate) to draw from."""
    from prolo.knowledge.loader import load_conditions

    found = []
    for cond in load_conditions().values():
        if not cond.codes.icd10cm:
            continue
        code = cond.codes.icd10cm[0]
        protocol = cond.protocol
        sessions, interval, injectate = 4, 4, "Dextrose 15% with lidocaine (synthetic)"
        if protocol is not None and protocol.status == "published":
            if protocol.sessions is not None:
                sessions = int(protocol.sessions.high)
            if protocol.interval_weeks is not None:
                interval = int(protocol.interval_weeks.low)
            if protocol.injectate:
                injectate = protocol.injectate[:200]
        found.append((cond.id, code.code, code.display, sessions, max(1, interval), injectate))
    return sorted(found)


def _score_function() -> Callable[[dict[str, Any]], float] | None:
    from prolo.instruments.catalog import instruments

    nrs = instruments().get("pain-nrs")
    if nrs is None:
        return None
    item = nrs.item_ids[0]

    def score(answers: dict[str, Any]) -> float:
        return nrs.score({item: answers["pain"]})["total"].value

    return score


def generate(
    session: Session,
    config: SynthConfig,
    *,
    progress: Callable[[int], None] | None = None,
) -> SynthSummary:
    """Write a synthetic clinic with ``config.patients`` patients into ``session``.

    Runs inside the caller's transaction; rows are flushed in batches of
    ``config.batch`` patients. ``progress`` is called with the number of patients
    written so far after each batch.
    """
    rng = random.Random(config.seed)  # noqa: S311  (reproducible fake data, not security)
    tz = ZoneInfo(config.timezone)
    today = config.today or dt.datetime.now(dt.UTC).date()
    summary = SynthSummary()
    clinic = Clinic(
        name=config.clinic_name,
        timezone=config.timezone,
        phone="+1 555 0100",
        address="12 River Road, Springfield",
    )
    session.add(clinic)
    session.flush()
    summary.clinic_id = clinic.id
    titles = ("MD", "DO", "MD", "NP", "MD", "DO")
    for i in range(config.practitioners):
        pr = Practitioner(
            clinic_id=clinic.id,
            given_name=rng.choice(GIVEN),
            family_name=rng.choice(FAMILY),
            credentials=titles[i % len(titles)],
        )
        session.add(pr)
        session.flush()
        summary.practitioner_ids.append(pr.id)
    for i in range(config.rooms):
        room = Room(clinic_id=clinic.id, name=f"Treatment room {i + 1}")
        session.add(room)
        session.flush()
        summary.room_ids.append(room.id)

    conditions = _conditions()
    nrs_score = _score_function()
    calendar = _Calendar(tz, summary.practitioner_ids, summary.room_ids)
    writer = _Writer(session, summary, config.batch)
    written = 0
    for n in range(config.patients):
        _patient(writer, rng, clinic.id, n, today, conditions, nrs_score, calendar, summary)
        written += 1
        if writer.full():
            writer.flush()
            if progress:
                progress(written)
    writer.flush()
    if progress:
        progress(written)
    return summary


def _patient(
    w: _Writer,
    rng: random.Random,
    clinic_id: int,
    n: int,
    today: dt.date,
    conditions: list[tuple[str, str, str, int, int, str]],
    nrs_score: Callable[[dict[str, Any]], float] | None,
    calendar: _Calendar,
    summary: SynthSummary,
) -> None:
    given, family = rng.choice(GIVEN), rng.choice(FAMILY)
    age = int(min(88, max(22, rng.gauss(56, 13))))
    birth = today - dt.timedelta(days=age * 365 + rng.randrange(365))
    patient_id = w.add(
        "patient",
        {
            "clinic_id": clinic_id,
            "mrn": f"MRN{n + 1:07d}",
            "given_name": given,
            "family_name": family,
            "birth_date": birth,
            "sex": rng.choice(("female", "male")),
            "email": f"{given.lower()}.{family.lower()}{n}@example.com",
            "phone": f"+1 555 {rng.randrange(1000, 9999)}",
            "address_line": f"{rng.randrange(1, 999)} {rng.choice(STREETS)} Street",
            "city": rng.choice(CITIES),
            "postal_code": f"{rng.randrange(10000, 99999)}",
            "created_at": dt.datetime.now(dt.UTC),
            "updated_at": dt.datetime.now(dt.UTC),
        },
    )
    if rng.random() < 0.25:
        substance, reaction = rng.choice(ALLERGENS)
        w.add(
            "allergy",
            {
                "patient_id": patient_id,
                "substance": substance,
                "reaction": reaction,
                "criticality": rng.choice(("low", "high")),
                "recorded_at": dt.datetime.now(dt.UTC),
            },
        )
    for name, dose in rng.sample(MEDICATIONS, k=rng.randrange(0, 3)):
        w.add(
            "medication",
            {
                "patient_id": patient_id,
                "name": name,
                "dose": dose,
                "status": "active",
                "recorded_at": dt.datetime.now(dt.UTC),
            },
        )
    if not conditions:
        return
    cond_id, code, display, sessions, interval, injectate = rng.choice(conditions)
    onset = today - dt.timedelta(days=rng.randrange(120, 2000))
    diagnosis_id = w.add(
        "diagnosis",
        {
            "patient_id": patient_id,
            "code_system": "icd10cm",
            "code": code,
            "display": display,
            "onset_date": onset,
            "clinical_status": "active",
            "condition_id": cond_id,
            "recorded_at": dt.datetime.now(dt.UTC),
        },
    )
    practitioner = rng.choice(summary.practitioner_ids)
    start = today - dt.timedelta(days=rng.randrange(-21, 400))
    course_end = start + dt.timedelta(weeks=interval * (sessions - 1))
    stopped = rng.random() < 0.12
    if start > today:
        status, ended = "planned", None
    elif stopped:
        status, ended = "stopped", min(today, start + dt.timedelta(weeks=interval))
    elif course_end < today:
        status, ended = "completed", course_end
    else:
        status, ended = "active", None
    course_id = w.add(
        "treatment_course",
        {
            "clinic_id": clinic_id,
            "patient_id": patient_id,
            "practitioner_id": practitioner,
            "diagnosis_id": diagnosis_id,
            "condition_id": cond_id,
            "status": status,
            "stop_reason": rng.choice(("no_response", "patient_choice", "adverse_event"))
            if status == "stopped"
            else None,
            "planned_sessions": sessions,
            "interval_weeks_min": interval,
            "interval_weeks_max": interval + 2,
            "injectate": injectate,
            "started_on": start if status != "planned" else None,
            "ended_on": ended,
            "created_at": dt.datetime.now(dt.UTC),
        },
    )
    responder = rng.random() < 0.55
    baseline = min(10.0, max(3.0, round(rng.gauss(6.5, 1.4))))
    held = sessions if status != "stopped" else rng.randrange(1, sessions)

    def pain_at(days: int) -> float:
        gain = (0.45 if responder else 0.12) * min(1.0, days / 90)
        return float(min(10, max(0, round(baseline * (1 - gain) + rng.gauss(0, 0.9)))))

    def respond(when: dt.datetime, timepoint: str, pain: float) -> None:
        value = nrs_score({"pain": int(pain)}) if nrs_score else pain
        rid = w.add(
            "questionnaire_response",
            {
                "clinic_id": clinic_id,
                "patient_id": patient_id,
                "course_id": course_id,
                "instrument_id": "pain-nrs",
                "timepoint": timepoint,
                "status": "completed",
                "answers": {"pain": int(pain)},
                "authored_at": when,
                "idempotency_key": None,
                "created_at": dt.datetime.now(dt.UTC),
            },
        )
        w.add(
            "score",
            {
                "response_id": rid,
                "patient_id": patient_id,
                "instrument_id": "pain-nrs",
                "score_key": "total",
                "value": value,
                "effective_at": when,
            },
        )

    for s in range(held):
        day = start + dt.timedelta(weeks=interval * s)
        when, room = calendar.book(day, practitioner, patient_id, rng)
        past = when.date() < today
        appt_status = ("noshow" if rng.random() < 0.04 else "fulfilled") if past else "booked"
        w.add(
            "appointment",
            {
                "clinic_id": clinic_id,
                "patient_id": patient_id,
                "practitioner_id": practitioner,
                "room_id": room,
                "course_id": course_id,
                "kind": "injection",
                "status": appt_status,
                "starts_at": when,
                "ends_at": when + dt.timedelta(minutes=30),
                "created_at": dt.datetime.now(dt.UTC),
            },
        )
        if past and nrs_score is not None:
            respond(
                when - dt.timedelta(minutes=10),
                "baseline" if s == 0 else "pre_session",
                baseline if s == 0 else pain_at((when.date() - start).days),
            )
    if nrs_score is None or status == "planned":
        return
    for timepoint, days in FOLLOW_UPS:
        when_day = (ended or course_end) + dt.timedelta(days=days)
        if when_day >= today or rng.random() < 0.15:  # not yet due, or lost to follow-up
            continue
        when = dt.datetime.combine(when_day, dt.time(19, 0), calendar.tz).astimezone(dt.UTC)
        respond(when, timepoint, pain_at((when_day - start).days))
