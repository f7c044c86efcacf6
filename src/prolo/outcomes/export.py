"""De-identified research export (HIPAA Safe Harbor) as CSV or Parquet, with a REDCap
data dictionary.

Safe Harbor (45 CFR 164.514(b)(2)) removes 18 kinds of identifiers of the patient and
of their relatives, employers or household members. How this export meets each one:

(A) names, (D) telephone, (E) fax, (F) email, (G) SSN, (H) medical record numbers,
(I) health plan numbers, (J) account numbers, (K) certificate/licence numbers,
(L) vehicle ids, (M) device ids, (N) URLs, (O) IP addresses, (P) biometrics,
(Q) photographs: never read from the database, so never written.
(B) geography smaller than a state: street, city and postal code are not exported
(not even the three-digit ZIP that the rule allows in some areas).
(C) dates: every date is shifted by a random number of days drawn once per patient for
this export (so intervals within a patient stay true) and the offset is never stored
or written; ages are computed from the true dates and every age over 89 is written as
"90+"; birth dates are not exported.
(R) any other unique number or code: record ids are random study numbers assigned per
export; clinics and practitioners become "site 1", "practitioner 3" in random order.
Free text is not exported, except the injectate description, which is a product name
and strength entered by staff; anything in it that looks like a number with five or
more digits, an email address or a URL is removed.

Sources: 45 CFR 164.514(b)(2) as quoted by Bricker Graydon's HHS regulation page
(https://brickergraydon.com/insights/resources/key/HIPAA-Privacy-Regulations-Other-Requirements-Relating-to-Uses-and-Disclosures-of-Protected-Health-Information-Requirements-for-De-Identification-of-Protected-Health-Information-164-514-b),
"(C) All elements of dates (except year) ... and all ages over 89 ... aggregated into a
single category of age 90 or older"; the 18-item list also at
https://www.johndcook.com/blog/hipaa-identifiers-explained/ (secondary). The REDCap data
dictionary's 18 columns follow https://bdeveer.github.io/REDCap_KB_RAG/RC-FD-08_Data-Dictionary-Column-Reference-and-Advanced-Techniques/
("18 aspects (columns A through R)").

A strict reading of Safe Harbor keeps only the year of a date; shifted dates are a
transformation the issue asks for, documented in docs/analytics.md. A researcher who
needs the strict form uses the ``*_day`` columns (days since the course start) and
``start_year_shifted`` only.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import secrets
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from prolo.courses.models import TreatmentCourse
from prolo.errors import Forbidden, ValidationFailed
from prolo.outcomes.models import FOLLOW_UP_TIMEPOINTS, CourseFollowUp
from prolo.outcomes.report import instrument_rules, primary_score_key
from prolo.patients.models import Patient
from prolo.portal.models import QuestionnaireResponse, Score
from prolo.security import audit
from prolo.security.audit import Actor
from prolo.security.principal import Principal

__all__ = ["REDCAP_COLUMNS", "ExportFile", "research_export"]

REDCAP_COLUMNS = (
    "Variable / Field Name",
    "Form Name",
    "Section Header",
    "Field Type",
    "Field Label",
    "Choices, Calculations, OR Slider Labels",
    "Field Note",
    "Text Validation Type OR Show Slider Number",
    "Text Validation Min",
    "Text Validation Max",
    "Identifier?",
    "Branching Logic (Show field only if...)",
    "Required Field?",
    "Custom Alignment",
    "Question Number (surveys only)",
    "Matrix Group Name",
    "Matrix Ranking?",
    "Field Annotation",
)
FORM = "prolotherapy_registry"
MAX_SHIFT_DAYS = 365
_SCRUB = re.compile(r"\S+@\S+|https?://\S+|www\.\S+|\d{5,}")
TIMEPOINTS = FOLLOW_UP_TIMEPOINTS  # baseline and the four follow-ups


@dataclass(frozen=True)
class Field:
    """One exported column and its REDCap data-dictionary row."""

    name: str
    label: str
    kind: str  # text | dropdown | yesno
    validation: str = ""  # integer | number | date_ymd
    choices: tuple[tuple[str, str], ...] = ()
    minimum: str = ""
    maximum: str = ""
    note: str = ""

    def dictionary_row(self) -> list[str]:
        choices = " | ".join(f"{code}, {label}" for code, label in self.choices)
        return [
            self.name,
            FORM,
            "",
            self.kind,
            self.label,
            choices,
            self.note,
            self.validation,
            self.minimum,
            self.maximum,
            "",  # Identifier?: nothing exported identifies a person
            "",
            "",
            "",
            "",
            "",
            "",
            "",
        ]


@dataclass(frozen=True)
class ExportFile:
    """A finished export: a zip archive's bytes and its file name."""

    filename: str
    content: bytes
    records: int


def _var(text: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", text.lower()).strip("_")


def _age_group(birth: dt.date, on: dt.date) -> str:
    age = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    return "90+" if age > 89 else str(age)


def _fields(instrument_ids: Sequence[str]) -> list[Field]:
    from prolo.courses.models import COURSE_STATUSES, STOP_REASONS

    rules = instrument_rules(list(instrument_ids)) if instrument_ids else {}
    fields = [
        Field("record_id", "Study record number (random, per export)", "text", "integer"),
        Field("site", "Clinic (pseudonymous site code)", "text"),
        Field("practitioner", "Practitioner (pseudonymous code)", "text"),
        Field("condition", "Condition (prolo knowledge-base id)", "text"),
        Field("injectate", "Injectate as recorded (identifying text removed)", "text"),
        Field(
            "sex",
            "Sex",
            "dropdown",
            choices=tuple((s, s.capitalize()) for s in ("female", "male", "other", "unknown")),
        ),
        Field(
            "age_at_start",
            "Age at the course start in years; over 89 written as 90+",
            "text",
            note="HIPAA Safe Harbor: ages over 89 are grouped as 90+",
        ),
        Field(
            "start_date_shifted",
            "Course start date, shifted per patient",
            "text",
            "date_ymd",
            note="Shifted by a random number of days per patient; "
            "intervals within a patient are true",
        ),
        Field("start_year_shifted", "Year of the shifted course start", "text", "integer"),
        Field(
            "status",
            "Course status",
            "dropdown",
            choices=tuple((s, s.capitalize()) for s in COURSE_STATUSES),
        ),
        Field(
            "stop_reason",
            "Why the course stopped",
            "dropdown",
            choices=tuple((s, s.replace("_", " ").capitalize()) for s in STOP_REASONS),
        ),
        Field(
            "planned_sessions",
            "Planned injection sessions",
            "text",
            "integer",
            minimum="1",
            maximum="20",
        ),
    ]
    for instrument_id in instrument_ids:
        rule = rules[instrument_id]
        for tp in TIMEPOINTS:
            base = _var(f"{instrument_id}_{tp}")
            fields.append(Field(base, f"{rule.name} at {tp.replace('_', ' ')}", "text", "number"))
            fields.append(
                Field(
                    f"{base}_day",
                    f"{rule.name} at {tp.replace('_', ' ')}: days since the course start",
                    "text",
                    "integer",
                )
            )
    for tp in TIMEPOINTS:
        fields.append(
            Field(f"surgery_planned_{tp}", f"Surgery planned ({tp.replace('_', ' ')})", "yesno")
        )
        if tp != "baseline":
            fields.append(
                Field(
                    f"surgery_done_{tp}",
                    f"Surgery done since baseline ({tp.replace('_', ' ')})",
                    "yesno",
                )
            )
        fields.append(
            Field(f"pain_medicine_{tp}", f"Takes pain medicine ({tp.replace('_', ' ')})", "yesno")
        )
        fields.append(Field(f"opioid_{tp}", f"Takes opioids ({tp.replace('_', ' ')})", "yesno"))
        fields.append(
            Field(
                f"mme_{tp}",
                f"Opioid dose in morphine milligram equivalents per day ({tp.replace('_', ' ')})",
                "text",
                "number",
                minimum="0",
                note="CDC 2022 conversion factors",
            )
        )
    return fields


def _yesno(value: bool | None) -> int | None:
    return None if value is None else int(bool(value))


def research_export(
    *,
    session: Session,
    principal: Principal | None,
    clinic_id: int,
    fmt: str,
    actor: Actor | None = None,
) -> ExportFile:
    """The de-identified registry of ``clinic_id`` as a zip (data + REDCap dictionary).

    Only the researcher role may call this from the app (``principal``); the CLI passes
    ``principal=None`` with its own ``actor``. Audited with the number of records.
    """
    if fmt not in ("csv", "parquet"):
        raise ValidationFailed("format must be csv or parquet", field="format")
    if principal is not None and principal.role != "researcher":
        raise Forbidden("the research export is for the researcher role only")
    rows = session.execute(
        select(TreatmentCourse, Patient.birth_date, Patient.sex)
        .join(Patient, Patient.id == TreatmentCourse.patient_id)
        .where(TreatmentCourse.clinic_id == clinic_id)
        .order_by(TreatmentCourse.id)
    ).all()
    keys = [(i, primary_score_key(i)) for i in instrument_rules()]
    from sqlalchemy import tuple_

    scores = session.execute(
        select(
            QuestionnaireResponse.course_id,
            Score.instrument_id,
            QuestionnaireResponse.timepoint,
            Score.effective_at,
            Score.value,
        )
        .join(QuestionnaireResponse, QuestionnaireResponse.id == Score.response_id)
        .where(
            QuestionnaireResponse.clinic_id == clinic_id,
            QuestionnaireResponse.status == "completed",
            QuestionnaireResponse.course_id.is_not(None),
            QuestionnaireResponse.timepoint.in_(TIMEPOINTS),
            tuple_(Score.instrument_id, Score.score_key).in_(keys),
        )
        .order_by(Score.effective_at)
    ).all()
    facts = session.scalars(
        select(CourseFollowUp).where(CourseFollowUp.clinic_id == clinic_id)
    ).all()

    rng = secrets.SystemRandom()
    shift: dict[int, int] = {}
    by_course: dict[int, dict[str, Any]] = {}
    instrument_ids = sorted({row[1] for row in scores})
    fields = _fields(instrument_ids)
    study_numbers = list(range(1, len(rows) + 1))
    rng.shuffle(study_numbers)
    sites: dict[int, str] = {}
    practitioners: dict[int, str] = {}
    practitioner_ids = sorted(
        {c.practitioner_id for c, _, _ in rows if c.practitioner_id is not None}
    )
    order = list(practitioner_ids)
    rng.shuffle(order)
    practitioners = {pid: f"practitioner {i + 1}" for i, pid in enumerate(order)}
    sites[clinic_id] = "site 1"
    for number, (course, birth, sex) in zip(study_numbers, rows, strict=True):
        offset = shift.setdefault(course.patient_id, rng.randint(-MAX_SHIFT_DAYS, MAX_SHIFT_DAYS))
        start = course.started_on
        shifted = start + dt.timedelta(days=offset) if start else None
        by_course[course.id] = {
            "record_id": number,
            "site": sites[clinic_id],
            "practitioner": practitioners.get(course.practitioner_id or -1, ""),
            "condition": course.condition_id,
            "injectate": " ".join(_SCRUB.sub("", course.injectate).split()),
            "sex": sex,
            "age_at_start": _age_group(birth, start or dt.datetime.now(dt.UTC).date()),
            "start_date_shifted": shifted.isoformat() if shifted else None,
            "start_year_shifted": shifted.year if shifted else None,
            "status": course.status,
            "stop_reason": course.stop_reason,
            "planned_sessions": course.planned_sessions,
            "_start": start,
        }
    for course_id, instrument_id, timepoint, effective_at, value in scores:
        record = by_course.get(course_id)
        if record is None:
            continue
        base = _var(f"{instrument_id}_{timepoint}")
        record[base] = value  # the latest answer at a timepoint wins (ordered by time)
        if record["_start"] is not None:
            record[f"{base}_day"] = (effective_at.astimezone(dt.UTC).date() - record["_start"]).days
    for fact in facts:
        record = by_course.get(fact.course_id)
        if record is None:
            continue
        tp = fact.timepoint
        record[f"surgery_planned_{tp}"] = _yesno(fact.surgery_planned)
        if tp != "baseline":
            record[f"surgery_done_{tp}"] = _yesno(fact.surgery_done)
        record[f"pain_medicine_{tp}"] = _yesno(fact.pain_medicine_use)
        record[f"opioid_{tp}"] = _yesno(fact.opioid_use)
        record[f"mme_{tp}"] = fact.opioid_mme_per_day
    records = sorted(by_course.values(), key=lambda r: r["record_id"])
    names = [f.name for f in fields]
    table = [[record.get(name) for name in names] for record in records]

    dictionary = io.StringIO()
    writer = csv.writer(dictionary, lineterminator="\r\n")
    writer.writerow(REDCAP_COLUMNS)
    for field in fields:
        writer.writerow(field.dictionary_row())

    archive = io.BytesIO()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d")
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("data_dictionary.csv", dictionary.getvalue())
        zf.writestr("README.txt", README)
        if fmt == "csv":
            data = io.StringIO()
            out = csv.writer(data, lineterminator="\r\n")
            out.writerow(names)
            for row in table:
                out.writerow(["" if v is None else v for v in row])
            zf.writestr("records.csv", data.getvalue())
        else:
            columns = {name: [row[i] for row in table] for i, name in enumerate(names)}
            arrow = pa.table(
                {
                    name: pa.array(values, type=_arrow_type(f))
                    for (name, values), f in zip(columns.items(), fields, strict=True)
                }
            )
            buffer = io.BytesIO()
            pq.write_table(arrow, buffer)
            zf.writestr("records.parquet", buffer.getvalue())
    audit.record(
        session,
        principal.actor if principal is not None else (actor or audit.SYSTEM),
        action="E",
        event="research.export",
        entity_type="ResearchExport",
        detail=f"{len(records)} de-identified records as {fmt}",
    )
    return ExportFile(f"prolo-registry-{stamp}-{fmt}.zip", archive.getvalue(), len(records))


def _arrow_type(field: Field) -> pa.DataType:
    if field.kind == "yesno" or field.validation == "integer":
        return pa.int64()
    if field.validation == "number":
        return pa.float64()
    return pa.string()


README = """De-identified prolotherapy registry export (HIPAA Safe Harbor)

records.csv / records.parquet: one row per treatment course.
data_dictionary.csv: the REDCap data dictionary of every column.

Names, contact details, addresses, medical record numbers and every other direct
identifier are not exported. Dates are shifted by a random number of days per patient
(intervals within a patient are true; the offset is not kept). Ages over 89 are written
as 90+. Record, site and practitioner numbers are random for each export, so two
exports cannot be linked.
"""
