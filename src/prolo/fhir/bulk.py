"""FHIR Bulk Data ``$export``: kick-off, the job, status polling and the NDJSON files.

See: https://hl7.org/fhir/uv/bulkdata/export.html (Bulk Data Access IG, v2)

- Kick-off at ``[base]/$export`` (system), ``[base]/Patient/$export`` (every patient
  the caller may see; a patient's own token exports only their compartment) and
  ``[base]/Group/<id>/$export``, where a Group is a knowledge-base condition: every
  patient of the clinic with a diagnosis or a treatment course for it. It needs
  ``Prefer: respond-async`` and answers 202 with ``Content-Location`` (the status URL).
- ``_type`` limits the resource types, ``_since`` to resources changed after an
  instant (rows whose change time is unknown are included rather than missed),
  ``_outputFormat`` may name NDJSON only. Other kick-off parameters are refused,
  or ignored when the client sends ``Prefer: handling=lenient``.
- The job runs after the kick-off response, in its own transactions, and stores one
  NDJSON file per type and part in the database, so any server process can answer
  the status poll and serve the files. Resources are built as plain dicts from the
  rows (the same mapping as REST reads) and serialised with orjson: no pydantic
  models on this path.
- Status: 202 with ``X-Progress`` while running, 200 with the manifest when done, an
  OperationOutcome with 500 when the job failed; DELETE cancels and removes the
  files. Files and manifest are for the requester only (``requiresAccessToken``).
- Every exported patient gets an audit row (``fhir.export``) when the job completes;
  each file download is audited too.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Iterator, Sequence
from typing import Any, cast

import orjson
from sqlalchemy import Table, delete, func, or_, select, union
from sqlalchemy.orm import Session, sessionmaker

from prolo.courses.models import TreatmentCourse
from prolo.db import utcnow
from prolo.errors import AccessDenied, Forbidden
from prolo.fhir.errors import InvalidResource
from prolo.fhir.models import ExportFile, ExportJob, ResourceVersion
from prolo.fhir.resources import REGISTRY
from prolo.fhir.resources.base import Meta, TableMapping, identifiers_for
from prolo.fhir.search import parse_instant
from prolo.patients.models import Diagnosis, Patient
from prolo.security import audit
from prolo.security.models import User
from prolo.security.principal import Principal

log = logging.getLogger("prolo.fhir.bulk")

NDJSON_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
PART_SIZE = 10_000  # resources per NDJSON file
BATCH = 2_000  # rows fetched per round trip
JOB_LIFETIME = dt.timedelta(days=1)
EXPORTERS = frozenset({"admin", "clinician", "patient"})
UNSUPPORTED = ("_elements", "_typeFilter", "patient", "includeAssociatedData")
# Left out of a system export unless _type names it: the log is not clinical data.
SYSTEM_DEFAULT_EXCLUDED = frozenset({"AuditEvent"})


def exportable(level: str, principal: Principal) -> list[TableMapping]:
    """The table-backed types ``principal`` may export at ``level``, in registry order."""
    found = []
    for mapping in REGISTRY.values():
        if not isinstance(mapping, TableMapping) or principal.role not in mapping.readers:
            continue
        if level != "system" and not mapping.in_patient_compartment:
            continue
        found.append(mapping)
    return found


def kick_off(
    session: Session,
    principal: Principal,
    *,
    level: str,
    group_id: str | None,
    params: Sequence[tuple[str, str]],
    prefer: str,
    request_url: str,
    base_url: str,
) -> ExportJob:
    """Check an ``$export`` request and record the job; the caller runs it after commit."""
    if principal.role not in EXPORTERS:
        raise Forbidden("your role may not export clinical data")
    if principal.role == "patient" and level != "patient":
        raise Forbidden("a patient may export only their own record (Patient/$export)")
    if "respond-async" not in prefer:
        raise InvalidResource("$export needs the header Prefer: respond-async")
    lenient = "handling=lenient" in prefer
    allowed = {m.type_name: m for m in exportable(level, principal)}
    types: list[str] | None = None
    since: dt.datetime | None = None
    for key, value in params:
        if key == "_outputFormat":
            if value not in NDJSON_FORMATS:
                raise InvalidResource(f"_outputFormat {value!r} is not supported (NDJSON only)")
        elif key == "_type":
            for name in (v.strip() for v in value.split(",") if v.strip()):
                if name not in allowed:
                    raise InvalidResource(f"_type: {name} cannot be exported at {level} level")
                types = [*(types or []), name]
        elif key == "_since":
            since = parse_instant(value, name="_since")[0]
        elif key in UNSUPPORTED and not lenient:
            raise InvalidResource(
                f"{key} is not supported (send Prefer: handling=lenient to ignore it)"
            )
    if group_id is not None and not _known_group(group_id):
        raise AccessDenied("no such Group", entity_type="Group", entity_id=group_id)
    if types is None:
        types = [
            name for name in allowed if level != "system" or name not in SYSTEM_DEFAULT_EXCLUDED
        ]
    job = ExportJob(
        id=secrets.token_urlsafe(24),
        clinic_id=principal.clinic_id,
        user_id=principal.user_id,
        level=level,
        group_id=group_id,
        patient_id=principal.patient_id if principal.role == "patient" else None,
        types=list(dict.fromkeys(types)),
        since=since,
        status="accepted",
        request_url=request_url[:2000],
        base_url=base_url[:500],
        progress="accepted",
        expires_at=utcnow() + JOB_LIFETIME,
    )
    session.add(job)
    session.flush()
    audit.record(
        session,
        principal.actor,
        action="E",
        event="fhir.export.kickoff",
        entity_type="ExportJob",
        entity_id=job.id,
        detail=f"{level} export of {len(job.types)} types",
    )
    return job


def _known_group(group_id: str) -> bool:
    from prolo.knowledge.loader import load_conditions

    return group_id in load_conditions()


def _patients(job: ExportJob) -> Any:
    """A subquery of the patient ids the job covers (patient and group levels)."""
    if job.patient_id is not None:
        return select(Patient.id).where(Patient.id == job.patient_id)
    in_clinic = select(Patient.id).where(Patient.clinic_id == job.clinic_id)
    if job.level != "group":
        return in_clinic
    with_diagnosis = select(Diagnosis.patient_id).where(Diagnosis.condition_id == job.group_id)
    with_course = select(TreatmentCourse.patient_id).where(
        TreatmentCourse.condition_id == job.group_id, TreatmentCourse.clinic_id == job.clinic_id
    )
    members = union(with_diagnosis, with_course).subquery()
    return in_clinic.where(Patient.id.in_(select(members.c[0])))


def export_rows(
    session: Session, mapping: TableMapping, job: ExportJob
) -> Iterator[tuple[dict[str, Any], int | None]]:
    """(resource, patient id) for every row of one type the job covers, streamed."""
    table = cast(Table, mapping.model.__table__)
    version = cast(Table, ResourceVersion.__table__)
    fallback = mapping.updated_column()
    last = (
        func.coalesce(version.c.last_updated, fallback)
        if fallback is not None
        else version.c.last_updated
    )
    stmt = (
        select(
            table,
            version.c.version.label("fhir_version"),
            last.label("fhir_last_updated"),
            *mapping.extra_columns(),
        )
        .outerjoin(
            version,
            (version.c.table_name == mapping.table_name) & (version.c.row_id == table.c.id),
        )
        .where(mapping.clinic_clause(job.clinic_id))
        .order_by(table.c.id)
    )
    if job.level != "system":
        stmt = stmt.where(mapping.patients_clause(_patients(job)))
    if job.since is not None:
        changed = mapping.last_updated_expr()
        stmt = stmt.where(or_(changed > job.since, changed.is_(None)))
    result = session.execute(stmt.execution_options(yield_per=BATCH))
    for rows in result.partitions(BATCH):
        ids = identifiers_for(session, mapping.type_name, [r.id for r in rows])
        for row in rows:
            meta = Meta(
                version=row.fhir_version or 1,
                last_updated=row.fhir_last_updated,
                identifiers=ids.get(row.id, ()),
            )
            yield mapping.to_fhir(row, meta), mapping.patient_of(row)


def run(factory: sessionmaker[Session], job_id: str) -> None:
    """Run an accepted job to completion (or failure); each step commits on its own."""
    with factory() as session, session.begin():
        job = session.get(ExportJob, job_id)
        if job is None or job.status != "accepted":
            return
        job.status = "in-progress"
        job.transaction_time = utcnow()
        job.progress = "started"
    try:
        with factory() as session, session.begin():
            job = session.get_one(ExportJob, job_id)
            patients: set[int] = set()
            for done, name in enumerate(job.types):
                mapping = REGISTRY[name]
                if not isinstance(mapping, TableMapping):
                    continue
                _write_files(session, job, mapping, patients)
                job.progress = f"{done + 1} of {len(job.types)} resource types written"
            user = session.get(User, job.user_id)
            actor = audit.Actor(job.user_id, user.role if user else None, job.clinic_id)
            for patient_id in sorted(patients):
                audit.record(
                    session,
                    actor,
                    action="R",
                    event="fhir.export",
                    entity_type="ExportJob",
                    entity_id=job.id,
                    patient_id=patient_id,
                )
            job.status = "completed"
            job.finished_at = utcnow()
            job.progress = "completed"
    except Exception as exc:  # the client learns of the failure from the status poll
        log.error("bulk export %s failed: %s", job_id, type(exc).__name__)
        with factory() as session, session.begin():
            failed = session.get(ExportJob, job_id)
            if failed is not None:
                session.execute(delete(ExportFile).where(ExportFile.job_id == job_id))
                failed.status = "failed"
                failed.error = f"the export failed ({type(exc).__name__}); it was logged"
                failed.finished_at = utcnow()


def _write_files(
    session: Session, job: ExportJob, mapping: TableMapping, patients: set[int]
) -> None:
    part, lines, count = 1, [], 0
    for resource, patient_id in export_rows(session, mapping, job):
        lines.append(orjson.dumps(resource))
        count += 1
        if patient_id is not None:
            patients.add(patient_id)
        if count == PART_SIZE:
            _store(session, job, mapping.type_name, part, lines)
            part, lines, count = part + 1, [], 0
    if lines:
        _store(session, job, mapping.type_name, part, lines)


def _store(session: Session, job: ExportJob, type_name: str, part: int, lines: list[bytes]) -> None:
    content = (b"\n".join(lines) + b"\n").decode()
    session.add(
        ExportFile(
            job_id=job.id, resource_type=type_name, part=part, count=len(lines), content=content
        )
    )
    session.flush()


def access_job(session: Session, principal: Principal, job_id: str) -> ExportJob:
    """The requester's own job; AccessDenied (404) for anyone else's or an expired one."""
    job = session.get(ExportJob, job_id)
    if (
        job is None
        or job.user_id != principal.user_id
        or job.status == "cancelled"
        or job.expires_at <= utcnow()
    ):
        raise AccessDenied("no such export job", entity_type="ExportJob", entity_id=job_id)
    return job


def manifest(session: Session, job: ExportJob) -> dict[str, Any]:
    """The completed job's manifest (Bulk Data v2 shape)."""
    files = session.execute(
        select(ExportFile.id, ExportFile.resource_type, ExportFile.count)
        .where(ExportFile.job_id == job.id)
        .order_by(ExportFile.id)
    ).all()
    assert_time = job.transaction_time or job.created_at
    return {
        "transactionTime": assert_time.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "request": job.request_url,
        "requiresAccessToken": True,
        "output": [
            {
                "type": kind,
                "url": f"{job.base_url}/bulk-files/{job.id}/{file_id}",
                "count": count,
            }
            for file_id, kind, count in files
        ],
        "error": [],
    }


def cancel(session: Session, principal: Principal, job_id: str) -> None:
    """Cancel a job and delete its files (DELETE on the status URL)."""
    job = access_job(session, principal, job_id)
    session.execute(delete(ExportFile).where(ExportFile.job_id == job.id))
    job.status = "cancelled"
    audit.record(
        session,
        principal.actor,
        action="D",
        event="fhir.export.cancel",
        entity_type="ExportJob",
        entity_id=job.id,
    )


def read_file(session: Session, principal: Principal, job_id: str, file_id: int) -> ExportFile:
    """One output file of the requester's completed job; audited."""
    job = access_job(session, principal, job_id)
    found = session.get(ExportFile, file_id)
    if job.status != "completed" or found is None or found.job_id != job.id:
        raise AccessDenied("no such export file", entity_type="ExportFile", entity_id=file_id)
    audit.record(
        session,
        principal.actor,
        action="R",
        event="fhir.export.download",
        entity_type="ExportFile",
        entity_id=found.id,
        detail=f"{found.count} {found.resource_type} resources",
    )
    return found
