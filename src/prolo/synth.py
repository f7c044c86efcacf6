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

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from prolo.clinic.models import Clinic, Practitioner, Room
from prolo.courses.models import TreatmentCourse
from prolo.outcomes.mme import OpioidDose, mme_per_day
from prolo.outcomes.models import CourseFollowUp
from prolo.patients.models import Allergy, Diagnosis, Medication, Patient
from prolo.portal.models import FlareDiaryEntry, QuestionnaireResponse, Score
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
# Follow-ups counted from the course start (the first session), as trials count them.
# The pain rating's only item, by its Questionnaire linkId (instruments/data): answers are
# stored keyed by linkId, never by a nickname, so FHIR exports carry the right item.
PAIN_NRS_LINK_ID = "pain-nrs"
FOLLOW_UPS = (("week_6", 42), ("month_3", 91), ("month_6", 182), ("month_12", 365))
OPIOIDS = ("tramadol", "oxycodone", "hydrocodone", "codeine")


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
    clinics: int = 1  # registry mode: patients spread evenly over this many clinics
    calendar: bool = True  # False: sessions get times without the no-double-booking search


@dataclass
class SynthSummary:
    """How many rows of each kind were written."""

    clinic_id: int = 0
    practitioner_ids: list[int] = field(default_factory=list)
    room_ids: list[int] = field(default_factory=list)
    clinic_ids: list[int] = field(default_factory=list)
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
        "flare_diary_entry",
        "questionnaire_response",
        "score",
        "course_follow_up",
    )
    TABLES: dict[str, Any] = {
        "patient": Patient,
        "diagnosis": Diagnosis,
        "allergy": Allergy,
        "medication": Medication,
        "treatment_course": TreatmentCourse,
        "appointment": Appointment,
        "flare_diary_entry": FlareDiaryEntry,
        "questionnaire_response": QuestionnaireResponse,
        "score": Score,
        "course_follow_up": CourseFollowUp,
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

    def finish(self) -> None:
        """Write what is left; on PostgreSQL move each id sequence past the ids written here,
        so rows the app inserts afterwards do not collide with them."""
        self.flush()
        if self.session.get_bind().dialect.name != "postgresql":
            return
        for table in self.ORDER:
            name = self.TABLES[table].__tablename__
            self.session.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "  # noqa: S608
                    f"(SELECT coalesce(max(id), 0) + 1 FROM {name}), false)"
                )
            )

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


class _FreeCalendar(_Calendar):
    """Registry mode: each practitioner works in a room of their own and takes the next
    free half hour of the day, so nothing clashes without searching a set of every slot
    (which would not fit in memory for a million patients)."""

    def __init__(self, tz: ZoneInfo, practitioners: Sequence[int], rooms: Sequence[int]) -> None:
        super().__init__(tz, practitioners, rooms)
        if len(rooms) < len(practitioners):
            raise ValueError("registry mode needs a room per practitioner")
        self.room_of = {p: rooms[i] for i, p in enumerate(practitioners)}
        self.next_slot: dict[tuple[int, dt.date], int] = {}

    def book(
        self, day: dt.date, practitioner: int, patient: int, rng: random.Random
    ) -> tuple[dt.datetime, int]:
        while True:
            if day.weekday() < 5:
                slot = self.next_slot.get((practitioner, day), 0)
                if slot < 16:
                    self.next_slot[(practitioner, day)] = slot + 1
                    start = dt.time(9 + slot // 2, 30 * (slot % 2))
                    when = dt.datetime.combine(day, start, self.tz).astimezone(dt.UTC)
                    return when, self.room_of[practitioner]
            day += dt.timedelta(days=1)


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

    def score(answers: dict[str, Any]) -> float:
        return nrs.score(answers)["total"].value

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
    sites: list[tuple[int, list[int], _Calendar]] = []
    titles = ("MD", "DO", "MD", "NP", "MD", "DO")
    for c in range(max(1, config.clinics)):
        clinic = Clinic(
            name=config.clinic_name if c == 0 else f"{config.clinic_name} {c + 1}",
            timezone=config.timezone,
            phone="+1 555 0100",
            address="12 River Road, Springfield",
        )
        session.add(clinic)
        session.flush()
        practitioner_ids, room_ids = [], []
        for i in range(config.practitioners):
            pr = Practitioner(
                clinic_id=clinic.id,
                given_name=rng.choice(GIVEN),
                family_name=rng.choice(FAMILY),
                credentials=titles[i % len(titles)],
            )
            session.add(pr)
            session.flush()
            practitioner_ids.append(pr.id)
        rooms = config.rooms if config.calendar else max(config.rooms, config.practitioners)
        for i in range(rooms):
            room = Room(clinic_id=clinic.id, name=f"Treatment room {i + 1}")
            session.add(room)
            session.flush()
            room_ids.append(room.id)
        kind = _Calendar if config.calendar else _FreeCalendar
        sites.append((clinic.id, practitioner_ids, kind(tz, practitioner_ids, room_ids)))
        if c == 0:
            summary.clinic_id = clinic.id
            summary.practitioner_ids = practitioner_ids
            summary.room_ids = room_ids
        summary.clinic_ids.append(clinic.id)

    conditions = _conditions()
    nrs_score = _score_function()
    writer = _Writer(session, summary, config.batch)
    written = 0
    for n in range(config.patients):
        clinic_id, practitioner_ids, calendar = sites[n * len(sites) // max(1, config.patients)]
        _patient(
            writer, rng, clinic_id, n, today, conditions, nrs_score, calendar, practitioner_ids
        )
        written += 1
        if writer.full():
            writer.flush()
            if progress:
                progress(written)
    writer.finish()
    if progress:
        progress(written)
    return summary


def _diary(
    w: _Writer,
    rng: random.Random,
    clinic_id: int,
    patient_id: int,
    appointment_id: int,
    when: dt.datetime,
    baseline: float,
    today: dt.date,
) -> None:
    """A few days of the post-injection diary: pain rises, then settles (invented)."""
    for day in range(1, rng.randrange(2, 8)):
        at = when + dt.timedelta(days=day)
        if at.date() >= today:
            return
        pain = int(min(10, max(0, round(baseline + rng.gauss(1.2, 1.5) - 0.5 * day))))
        w.add(
            "flare_diary_entry",
            {
                "clinic_id": clinic_id,
                "patient_id": patient_id,
                "appointment_id": appointment_id,
                "day": day,
                "pain": pain,
                "swelling": "some" if pain > baseline and rng.random() < 0.5 else "none",
                "redness": "at_site" if rng.random() < 0.2 else "none",
                "warmth": False,
                "fever": False,
                "normal_activity": pain <= baseline,
                "red_flags": [],
                "recorded_at": at,
                "created_at": at,
            },
        )


def _patient(
    w: _Writer,
    rng: random.Random,
    clinic_id: int,
    n: int,
    today: dt.date,
    conditions: list[tuple[str, str, str, int, int, str]],
    nrs_score: Callable[[dict[str, Any]], float] | None,
    calendar: _Calendar,
    practitioner_ids: list[int],
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
    practitioner = rng.choice(practitioner_ids)
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
    relapse_day = rng.randrange(120, 420) if responder and rng.random() < 0.3 else None

    def pain_at(days: int) -> float:
        gain = (0.45 if responder else 0.12) * min(1.0, days / 90)
        if relapse_day is not None and days > relapse_day:
            gain *= 0.3  # some responders lose part of the gain later
        return float(min(10, max(0, round(baseline * (1 - gain) + rng.gauss(0, 0.9)))))

    def respond(when: dt.datetime, timepoint: str, pain: float) -> None:
        # Answers are keyed by the Questionnaire's linkId ("pain-nrs"), as the portal
        # stores them, so exported QuestionnaireResponses name the right item.
        answers = {PAIN_NRS_LINK_ID: int(pain)}
        value = nrs_score(answers) if nrs_score else pain
        rid = w.add(
            "questionnaire_response",
            {
                "clinic_id": clinic_id,
                "patient_id": patient_id,
                "course_id": course_id,
                "instrument_id": "pain-nrs",
                "timepoint": timepoint,
                "status": "completed",
                "answers": answers,
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
        appointment_id = w.add(
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
        if appt_status == "fulfilled" and rng.random() < 0.35:
            _diary(w, rng, clinic_id, patient_id, appointment_id, when, baseline, today)
        if past and nrs_score is not None:
            respond(
                when - dt.timedelta(minutes=10),
                "baseline" if s == 0 else "pre_session",
                baseline if s == 0 else pain_at((when.date() - start).days),
            )
    if status == "planned":
        return
    surgery_planned = rng.random() < 0.15
    surgery_day = (
        rng.randrange(42, 400)
        if surgery_planned and rng.random() < (0.1 if responder else 0.4)
        else None
    )

    def facts(timepoint: str, days: int, when: dt.datetime) -> None:
        better = responder and days >= 42
        opioid = rng.random() < (0.07 if better else 0.15)
        doses = (
            [OpioidDose(rng.choice(OPIOIDS), float(rng.choice((10, 15, 20, 30, 40))))]
            if opioid
            else []
        )
        done = None if timepoint == "baseline" else surgery_day is not None and surgery_day <= days
        w.add(
            "course_follow_up",
            {
                "clinic_id": clinic_id,
                "patient_id": patient_id,
                "course_id": course_id,
                "timepoint": timepoint,
                "surgery_planned": surgery_planned and not done,
                "surgery_done": done,
                "pain_medicine_use": opioid or rng.random() < (0.35 if better else 0.65),
                "opioid_use": opioid,
                "opioid_mme_per_day": mme_per_day(doses),
                "opioids": [{"drug": d.drug, "daily_dose": d.daily_dose} for d in doses],
                "recorded_at": when,
            },
        )

    facts("baseline", 0, dt.datetime.combine(start, dt.time(9, 0), calendar.tz).astimezone(dt.UTC))
    if nrs_score is None:
        return
    for timepoint, days in FOLLOW_UPS:
        when_day = start + dt.timedelta(days=days)
        if when_day >= today:
            break  # not yet due
        if rng.random() < 0.15:
            break  # lost to follow-up, and not seen again
        when = dt.datetime.combine(when_day, dt.time(19, 0), calendar.tz).astimezone(dt.UTC)
        respond(when, timepoint, pain_at(days))
        facts(timepoint, days, when)


# --------------------------------------------------------------------------- #
# registry mode: the same kind of invented data, vectorised, straight to Arrow


def registry_tables(
    patients: int,
    *,
    seed: int = 7,
    as_of: dt.date | None = None,
    patients_per_clinic: int = 2000,
    practitioners_per_clinic: int = 4,
    flares: bool = True,
) -> Any:
    """A synthetic registry of ``patients`` courses as :class:`RegistryTables`.

    No database and no calendar: every column is drawn with numpy in one go, so a
    million patients with about ten million scores take seconds. Used by the
    benchmark and by tests that need registry-scale data. The trajectory model is the
    demo's (a responder share, a gain that builds over three months, noise), plus
    relapse among responders, monotone drop-out, surgery plans and pain-medicine use.
    Every number is invented; none is a clinical claim.
    """
    import numpy as np
    import pyarrow as pa

    from prolo.outcomes.report import (
        COURSE_SCHEMA,
        FLARE_SCHEMA,
        FOLLOW_UP_SCHEMA,
        SCORE_SCHEMA,
        RegistryTables,
    )

    rng = np.random.default_rng(seed)
    today = as_of or dt.datetime.now(dt.UTC).date()
    n = int(patients)
    conditions = np.array([c[0] for c in _conditions()] or ["knee-osteoarthritis"], dtype=object)
    injectates = np.array(
        ["Dextrose 15% with lidocaine (synthetic)", "Dextrose 25% (synthetic)"], dtype=object
    )
    course_id = np.arange(1, n + 1, dtype=np.int64)
    clinic = course_id // max(1, patients_per_clinic) + 1
    practitioner = (clinic - 1) * practitioners_per_clinic + rng.integers(
        1, practitioners_per_clinic + 1, n
    )
    condition = conditions[rng.integers(0, len(conditions), n)]
    injectate = injectates[(rng.random(n) < 0.3).astype(np.int64)]
    start_offset = rng.integers(-21, 730, n)  # days before as_of
    started = start_offset >= 0
    planned = rng.integers(3, 7, n).astype(np.int32)
    stopped = started & (rng.random(n) < 0.12)
    course_days = (planned.astype(np.int64) - 1) * 28
    completed = started & ~stopped & (course_days < start_offset)
    status = np.where(
        ~started,
        "planned",
        np.where(stopped, "stopped", np.where(completed, "completed", "active")),
    ).astype(object)
    reasons = np.array(["no_response", "patient_choice", "adverse_event"], dtype=object)
    none: Any = None
    stop_reason = np.where(stopped, reasons[rng.integers(0, 3, n)], none).astype(object)
    elapsed_sessions = np.clip(np.maximum(start_offset, 0) // 28 + 1, 1, planned)
    done = np.where(
        stopped,
        np.maximum(1, (rng.random(n) * np.maximum(planned - 1, 1)).astype(np.int64)),
        np.where(completed, planned, elapsed_sessions),
    )
    done = np.where(started, done, 0).astype(np.int32)
    epoch = np.datetime64(today, "D")
    started_on = np.where(
        started, epoch - start_offset.astype("timedelta64[D]"), np.datetime64("NaT")
    )
    courses = pa.table(
        {
            "course_id": course_id,
            "clinic_id": clinic.astype(np.int64),
            "patient_id": course_id,
            "practitioner_id": practitioner.astype(np.int64),
            "condition_id": pa.array(condition, pa.string()),
            "injectate": pa.array(injectate, pa.string()),
            "status": pa.array(status, pa.string()),
            "stop_reason": pa.array(stop_reason, pa.string()),
            "planned_sessions": planned,
            "sessions_done": done,
            "started_on": pa.array(started_on.astype("datetime64[D]"), pa.date32()),
        },
        schema=COURSE_SCHEMA,
    )

    responder = rng.random(n) < 0.55
    relapse_day = np.where(responder & (rng.random(n) < 0.3), rng.integers(120, 420, n), 10_000)
    baseline = np.clip(np.rint(rng.normal(6.5, 1.4, n)), 3, 10)
    gain = np.where(responder, 0.45, 0.12)

    def pain_at(idx: Any, day: Any) -> Any:
        g = gain[idx] * np.minimum(1.0, day / 90.0)
        g = np.where(day > relapse_day[idx], g * 0.3, g)
        noise = rng.normal(0.0, 0.9, len(idx))
        return np.clip(np.rint(baseline[idx] * (1.0 - g) + noise), 0, 10)

    parts: list[dict[str, Any]] = []
    live = np.flatnonzero(started)
    parts.append({"i": live, "tp": "baseline", "day": np.zeros(len(live)), "v": baseline[live]})
    max_sessions = int(planned.max()) if n else 0
    for k in range(1, max_sessions):
        idx = live[(done[live] > k) & (28 * k <= start_offset[live])]
        day = np.full(len(idx), 28 * k)
        parts.append({"i": idx, "tp": "pre_session", "day": day, "v": pain_at(idx, day)})
    kept = np.ones(n, dtype=bool)
    answered: dict[str, Any] = {}
    for key, days in FOLLOW_UPS:
        kept &= rng.random(n) >= 0.15  # once lost to follow-up, always lost
        idx = live[kept[live] & (start_offset[live] >= days)]
        answered[key] = idx
        day = np.full(len(idx), days)
        parts.append({"i": idx, "tp": key, "day": day, "v": pain_at(idx, day)})
    odi = rng.random(n) < 0.7
    odi_base = np.clip(np.rint(rng.normal(42, 14, n)), 4, 96)
    odi_parts: list[dict[str, Any]] = [{"i": live[odi[live]], "tp": "baseline", "day": None}]
    for key, days in FOLLOW_UPS:
        odi_parts.append({"i": answered[key][odi[answered[key]]], "tp": key, "day": days})

    pgic = rng.random(n) < 0.7
    pgic_parts = [(answered[key][pgic[answered[key]]], key, days) for key, days in FOLLOW_UPS]

    course_col, instr_col, tp_col, day_col, value_col = [], [], [], [], []
    for part in parts:
        course_col.append(course_id[part["i"]])
        instr_col.append(np.zeros(len(part["i"]), dtype=np.int8))
        tp_col.append(np.full(len(part["i"]), part["tp"], dtype=object))
        day_col.append(part["day"].astype(np.int32))
        value_col.append(part["v"].astype(np.float64))
    for part in odi_parts:
        idx = part["i"]
        odi_day = 0 if part["day"] is None else int(part["day"])
        g = gain[idx] * min(1.0, odi_day / 90.0)
        g = np.where(odi_day > relapse_day[idx], g * 0.3, g)
        value = np.clip(np.rint(odi_base[idx] * (1 - g) + rng.normal(0, 6, len(idx))), 0, 100)
        course_col.append(course_id[idx])
        instr_col.append(np.ones(len(idx), dtype=np.int8))
        tp_col.append(np.full(len(idx), part["tp"], dtype=object))
        day_col.append(np.full(len(idx), odi_day, dtype=np.int32))
        value_col.append(value.astype(np.float64))
    for idx, key, days in pgic_parts:
        rating = np.where(
            responder[idx], rng.integers(1, 4, len(idx)), rng.integers(3, 7, len(idx))
        )
        course_col.append(course_id[idx])
        instr_col.append(np.full(len(idx), 2, dtype=np.int8))
        tp_col.append(np.full(len(idx), key, dtype=object))
        day_col.append(np.full(len(idx), days, dtype=np.int32))
        value_col.append(rating.astype(np.float64))
    order = np.argsort(np.concatenate(course_col), kind="stable")
    instrument_names = np.array(["pain-nrs", "odi", "pgic"], dtype=object)
    scores = pa.table(
        {
            "course_id": np.concatenate(course_col)[order],
            "instrument_id": pa.array(
                instrument_names[np.concatenate(instr_col)[order]], pa.string()
            ),
            "timepoint": pa.array(np.concatenate(tp_col)[order], pa.string()),
            "day": np.concatenate(day_col)[order],
            "value": np.concatenate(value_col)[order],
        },
        schema=SCORE_SCHEMA,
    )

    surgery_planned = rng.random(n) < 0.15
    surgery_done = surgery_planned & (rng.random(n) < np.where(responder, 0.1, 0.4))
    surgery_day = rng.integers(42, 366, n)
    f_course, f_tp, f_plan, f_done, f_med, f_op, f_mme = [], [], [], [], [], [], []
    for key, days, idx in [("baseline", 0, live)] + [
        (key, days, answered[key]) for key, days in FOLLOW_UPS
    ]:
        m = len(idx)
        better = responder[idx] & (days >= 42)
        med = rng.random(m) < np.where(better, 0.35, 0.65)
        opioid = rng.random(m) < np.where(better, 0.07, 0.15)
        mme = np.where(opioid, np.round(np.exp(rng.normal(np.log(30), 0.6, m)), 1), np.nan)
        f_course.append(course_id[idx])
        f_tp.append(np.full(m, key, dtype=object))
        f_plan.append(
            np.where(
                key == "baseline",
                surgery_planned[idx],
                surgery_planned[idx] & ~(surgery_done[idx] & (surgery_day[idx] <= days)),
            )
        )
        f_done.append(
            np.where(
                key == "baseline", none, surgery_done[idx] & (surgery_day[idx] <= days)
            ).astype(object)
        )
        f_med.append(med)
        f_op.append(opioid)
        f_mme.append(mme)
    follow_ups = pa.table(
        {
            "course_id": np.concatenate(f_course),
            "timepoint": pa.array(np.concatenate(f_tp), pa.string()),
            "surgery_planned": np.concatenate(f_plan),
            "surgery_done": pa.array(np.concatenate(f_done), pa.bool_()),
            "pain_medicine_use": np.concatenate(f_med),
            "opioid_use": np.concatenate(f_op),
            "opioid_mme_per_day": pa.array(np.concatenate(f_mme), pa.float64(), from_pandas=True),
        },
        schema=FOLLOW_UP_SCHEMA,
    )

    flare_table = None
    if flares:
        counts = done[live].astype(np.int64)
        sess_course = np.repeat(live, counts)
        sess_no = np.arange(len(sess_course)) - np.repeat(np.cumsum(counts) - counts, counts)
        has_diary = rng.random(len(sess_course)) < 0.3
        sess_course, sess_no = sess_course[has_diary], sess_no[has_diary].astype(np.int64)
        session_id = course_id[sess_course] * 16 + sess_no
        days_kept = rng.integers(1, 6, len(sess_course))
        rows = np.repeat(np.arange(len(sess_course)), days_kept)
        day_no = np.arange(len(rows)) - np.repeat(np.cumsum(days_kept) - days_kept, days_kept) + 1
        pain = np.clip(
            np.rint(baseline[sess_course[rows]] + rng.normal(1.0, 1.6, len(rows)) - 0.4 * day_no),
            0,
            10,
        )
        flare_table = pa.table(
            {
                "course_id": course_id[sess_course[rows]],
                "session_id": session_id[rows],
                "day": day_no.astype(np.int32),
                "pain": pain.astype(np.int32),
            },
            schema=FLARE_SCHEMA,
        )
    return RegistryTables(courses=courses, scores=scores, follow_ups=follow_ups, flares=flare_table)
