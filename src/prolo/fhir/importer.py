"""Import FHIR data from files: Bundles (``.json``) and NDJSON (``.ndjson``), one file or a
directory of them, as ``prolo import-fhir`` does.

What it is for: bringing a clinic's records over from an EHR export or a synthetic
generator (Synthea writes one transaction Bundle per patient, with dozens of resource
types and thousands of entries). It maps what prolo keeps and reports the rest:

- mapped: Patient, Practitioner, Location (rooms), Condition, AllergyIntolerance,
  MedicationStatement, CarePlan (prolotherapy courses), and MedicationRequest, which
  becomes a medication the patient takes (prolo keeps a medication list, not orders);
- resource types prolo serves but never takes from outside (Observation scores are
  computed, Procedures are documented in prolo, ...) are counted as not imported;
- any other resource type (Encounter, Claim, Immunization, ...) is counted and skipped.

Each resource goes in under its own savepoint: one that does not fit prolo (no birth
date, an ICD-10-CM code that is not billable, a reference to something that was not
imported) is reported with the reason and the rest of the file goes on. Work is
committed every ``chunk`` resources, so memory stays flat on large files.

Re-importing is idempotent: each imported resource remembers where it came from (its
``urn:uuid`` full URL, or ``Type/id`` within the named ``source``), and a resource
already imported is reused, not written again. Resources are read as raw JSON and
mapped directly (no pydantic model per resource); the mapping checks what prolo needs.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from prolo.errors import AppError
from prolo.fhir import service
from prolo.fhir.bundle import conditional_resolver
from prolo.fhir.codes import LOCATION_PHYSICAL_TYPE, URI_IDENTIFIER
from prolo.fhir.models import ExternalIdentifier
from prolo.fhir.resources import REGISTRY, WRITE_ORDER
from prolo.fhir.resources.base import CREATE, Context, Resource, preload_patients
from prolo.fhir.resources.medication_statement import medication_values
from prolo.security import audit
from prolo.security.principal import Principal

UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
TRANSLATED = {"MedicationRequest": "MedicationStatement"}
# Served and writable, but not taken from files: a past visit cannot be booked, and a
# calendar is not something to copy from another system; an EHR's Procedures are not
# prolotherapy session records (signed by the injecting clinician after a re-check), and
# a consent is taken in front of the patient with prolo's text.
# A calendar's hours, closures and an outside audit log are not copied from files
# either, and an Observation is taken only as a live reading (prolo's scores are its own).
NOT_FROM_FILES = frozenset(
    {"Appointment", "Procedure", "Consent", "Schedule", "Slot", "Observation", "AuditEvent"}
)
_ORDER = {
    name: i for i, name in enumerate((*WRITE_ORDER[:5], "MedicationRequest", *WRITE_ORDER[5:]))
}

Progress = Callable[[int, int], None]


@dataclass
class ImportReport:
    """What an import did, by resource type, and why things were left out."""

    created: Counter[str] = field(default_factory=Counter)
    already: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    not_imported: Counter[str] = field(default_factory=Counter)  # served, but not taken in
    unknown: Counter[str] = field(default_factory=Counter)  # types prolo has no place for
    reasons: Counter[str] = field(default_factory=Counter)  # "Type: why" -> how often
    files: int = 0

    @property
    def seen(self) -> int:
        return sum(
            c.total()
            for c in (self.created, self.already, self.failed, self.not_imported, self.unknown)
        )


@dataclass
class _Item:
    resource: Resource
    full_url: str | None


def _read_file(path: Path) -> Iterator[_Item]:
    """The resources in one file: a Bundle's entries, one resource, or NDJSON lines."""
    raw = path.read_bytes()
    if path.suffix.lower() in (".ndjson", ".jsonl"):
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                data = orjson.loads(line)
            except orjson.JSONDecodeError:
                yield _Item({"resourceType": "(unreadable)", "line": number}, None)
                continue
            if isinstance(data, dict):
                yield _Item(data, None)
        return
    data = orjson.loads(raw)
    if isinstance(data, dict) and data.get("resourceType") == "Bundle":
        for entry in data.get("entry") or []:
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                full_url = entry.get("fullUrl")
                yield _Item(entry["resource"], full_url if isinstance(full_url, str) else None)
    elif isinstance(data, dict):
        yield _Item(data, None)


def files_in(path: Path) -> list[Path]:
    """The importable files under ``path`` (itself, or a directory's, sorted)."""
    if path.is_file():
        return [path]
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and p.suffix.lower() in (".json", ".ndjson", ".jsonl")
    )


def _file_rank(path: Path) -> int:
    """NDJSON files of referenced types first (a Patient file before a Condition file)."""
    if path.suffix.lower() not in (".ndjson", ".jsonl"):
        return len(_ORDER) + 1
    with path.open("rb") as handle:
        first = handle.readline()
    try:
        kind = orjson.loads(first).get("resourceType")
    except (orjson.JSONDecodeError, AttributeError):
        return len(_ORDER) + 1
    return _ORDER.get(str(kind), len(_ORDER))


def _source_key(item: _Item, source: str) -> tuple[str, str] | None:
    """Where a resource came from, as an identifier that stays the same on re-import."""
    if item.full_url and item.full_url.startswith("urn:uuid:"):
        return URI_IDENTIFIER, item.full_url
    rid = item.resource.get("id")
    if isinstance(rid, str) and UUID.match(rid):
        return URI_IDENTIFIER, f"urn:uuid:{rid.lower()}"
    if isinstance(rid, str) and rid:
        return f"urn:prolo:import:{source}", f"{item.resource.get('resourceType')}/{rid}"
    return None


def _handles(item: _Item) -> list[str]:
    """The strings other resources in the same import may use to refer to this one."""
    kind, rid = item.resource.get("resourceType"), item.resource.get("id")
    found = [item.full_url] if item.full_url else []
    if isinstance(rid, str) and rid:
        found.append(f"{kind}/{rid}")
        if UUID.match(rid):
            found.append(f"urn:uuid:{rid}")
    return found


def _kept_identifiers(resource: Resource) -> list[dict[str, Any]]:
    return [
        ident
        for ident in resource.get("identifier") or []
        if isinstance(ident, dict) and not service.is_private_identifier(ident)
    ]


def _is_room(resource: Resource) -> bool:
    physical = resource.get("physicalType") or {}
    return any(
        isinstance(c, dict) and c.get("system") == LOCATION_PHYSICAL_TYPE and c.get("code") == "ro"
        for c in physical.get("coding") or []
    )


def _translate(resource: Resource) -> Resource:
    """A MedicationRequest as the MedicationStatement prolo keeps for it."""
    values = medication_values(
        resource, concept_key="medicationCodeableConcept", dosage_key="dosageInstruction"
    )
    statement: Resource = {
        "resourceType": "MedicationStatement",
        "status": "active" if values["status"] == "active" else values["status"],
        "medicationCodeableConcept": resource.get("medicationCodeableConcept"),
        "subject": resource.get("subject"),
    }
    if values["dose"]:
        statement["dosage"] = [{"text": values["dose"]}]
    return statement


class Importer:
    """Imports files for one principal (their clinic); see the module docstring."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        principal: Principal,
        *,
        source: str = "default",
        chunk: int = 500,
        progress: Progress | None = None,
        validate: bool = False,
    ) -> None:
        self.factory = factory
        self.principal = principal
        self.source = source
        self.chunk = chunk
        self.progress = progress
        self.validate = validate  # check each resource with the R4B models first (slower)
        self.report = ImportReport()
        self.resolved: dict[str, str] = {}

    def run(self, path: Path) -> ImportReport:
        files = sorted(files_in(path), key=lambda p: (_file_rank(p), str(p)))
        total = sum(p.stat().st_size for p in files) or 1
        done_bytes = 0
        for file in files:
            size = file.stat().st_size
            offset = done_bytes
            self._import_file(
                file,
                lambda frac, offset=offset, size=size: self._tick(  # type: ignore[misc]
                    offset + int(size * frac), total
                ),
            )
            done_bytes += size
            self.report.files += 1
            self._tick(done_bytes, total)
        return self.report

    def _tick(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(done, total)

    def _import_file(self, path: Path, tick: Callable[[float], None]) -> None:
        items = list(_read_file(path))
        items.sort(key=lambda it: _ORDER.get(str(it.resource.get("resourceType")), len(_ORDER)))
        for start in range(0, len(items), self.chunk):
            batch = items[start : start + self.chunk]
            with self.factory() as session, session.begin():
                ctx = Context(
                    session=session,
                    principal=self.principal,
                    resolved=self.resolved,
                    lenient=True,
                    foreign_ids=True,
                )
                ctx.resolve_conditional = conditional_resolver(ctx)
                known = self._already_imported(ctx, batch)
                preload_patients(ctx, self._patients_named(batch))
                for item in batch:
                    self._import_one(ctx, item, known)
                if start == 0:
                    audit.record(
                        session,
                        self.principal.actor,
                        action="C",
                        event="fhir.import",
                        entity_type="File",
                        detail=f"{path.name[:200]}: {len(items)} resources",
                    )
            tick(min(1.0, (start + len(batch)) / max(1, len(items))))

    def _patients_named(self, batch: list[_Item]) -> set[int]:
        """Ids of the patients imported before that the batch's resources refer to."""
        found: set[int] = set()
        for item in batch:
            for key in ("subject", "patient"):
                reference = item.resource.get(key)
                if not isinstance(reference, dict):
                    continue
                local = self.resolved.get(str(reference.get("reference")), "")
                kind, _, row_id = local.partition("/")
                if kind == "Patient" and row_id.isdigit():
                    found.add(int(row_id))
        return found

    def _already_imported(
        self, ctx: Context, batch: list[_Item]
    ) -> dict[tuple[str, str, str], int]:
        """(type, system, value) -> row id for the batch's source keys imported before."""
        keys = [
            (self._type_of(item), key)
            for item in batch
            if (key := _source_key(item, self.source)) is not None
        ]
        values = sorted({key[1] for _kind, key in keys})
        found: dict[tuple[str, str, str], int] = {}
        for start in range(0, len(values), 500):
            rows = ctx.session.execute(
                select(
                    ExternalIdentifier.resource_type,
                    ExternalIdentifier.system,
                    ExternalIdentifier.value,
                    ExternalIdentifier.resource_id,
                ).where(
                    ExternalIdentifier.clinic_id == ctx.clinic_id,
                    ExternalIdentifier.value.in_(values[start : start + 500]),
                )
            ).all()
            for kind, system, value, resource_id in rows:
                found[(kind, system, value)] = resource_id
        return found

    @staticmethod
    def _type_of(item: _Item) -> str:
        kind = str(item.resource.get("resourceType"))
        return TRANSLATED.get(kind, kind)

    def _import_one(
        self, ctx: Context, item: _Item, known: dict[tuple[str, str, str], int]
    ) -> None:
        resource = item.resource
        kind = str(resource.get("resourceType"))
        mapping = REGISTRY.get(TRANSLATED.get(kind, kind))
        if mapping is None:
            self.report.unknown[kind] += 1
            return
        if not mapping.supports(CREATE) or mapping.type_name in NOT_FROM_FILES:
            self.report.not_imported[kind] += 1
            return
        key = _source_key(item, self.source)
        if key is not None:
            existing = known.get((mapping.type_name, *key))
            if existing is not None:
                self._remember(item, f"{mapping.type_name}/{existing}")
                self.report.already[kind] += 1
                return
        if kind == "Location" and not _is_room(resource):
            # A file's Locations are facilities (Synthea writes hospitals and practices),
            # not treatment rooms; only a Location that says it is a room comes in.
            self.report.failed[kind] += 1
            self.report.reasons[
                "Location: only treatment rooms (physicalType ro) are imported"
            ] += 1
            return
        try:
            mapped = _translate(resource) if kind in TRANSLATED else dict(resource)
            mapped["identifier"] = _kept_identifiers(resource) if kind not in TRANSLATED else []
            if self.validate:
                service.validate_structure(resource, served_only=False)
            _status, created = service.create(
                ctx,
                mapped,
                validate=False,
                source_identifiers=[key] if key else [],
                read_back=False,
            )
        except AppError as exc:
            self.report.failed[kind] += 1
            self.report.reasons[f"{kind}: {_reason(exc)}"] += 1
            return
        self._remember(item, f"{created['resourceType']}/{created['id']}")
        if key is not None:  # a second copy later in the batch is then "already"
            known[(mapping.type_name, *key)] = int(created["id"])
        self.report.created[kind] += 1

    def _remember(self, item: _Item, local: str) -> None:
        for handle in _handles(item):
            self.resolved[handle] = local


def _reason(exc: AppError) -> str:
    """The reason with record ids left out, so the same problem counts once (codes stay)."""
    text = re.sub(r"urn:uuid:[0-9a-fA-F-]{36}", "urn:uuid:…", exc.detail)
    text = re.sub(r"/[0-9a-fA-F-]{36}", "/…", text)
    text = re.sub(r"(identifier \S+)\|\S+", r"\1|…", text)  # identifier values (MRNs)
    return re.sub(r"\b([A-Z][A-Za-z]+)/[A-Za-z0-9.-]{1,64}\b", r"\1/…", text)[:200]
