"""What every resource mapping provides, and the shared pieces they are built from.

A mapping (one module per resource type) says:

- which table it reads (``model``) and how a row becomes a FHIR resource
  (:meth:`TableMapping.to_fhir`, a plain dict: the read path never builds pydantic
  models);
- how a resource becomes a row (:meth:`TableMapping.create`,
  :meth:`TableMapping.update`), through the owning domain's service where one exists;
- its search parameters and the references ``_include`` may follow;
- who may read and write it, and how rows are scoped to a clinic and to a patient's
  compartment.

``meta.versionId`` and ``meta.lastUpdated`` come from :class:`prolo.fhir.models.ResourceVersion`,
falling back to the row's own timestamp (``updated_column``) when the row was never
versioned.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

from pydantic import ValidationError
from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Table,
    and_,
    bindparam,
    func,
    literal,
    select,
)
from sqlalchemy.orm import Session

from prolo.db import UTCDateTime
from prolo.errors import AppError, Forbidden
from prolo.fhir.errors import CodeInvalid, InvalidResource, NotAllowed, Unprocessable
from prolo.fhir.models import ExternalIdentifier, ResourceVersion
from prolo.fhir.resources.kept_identifiers import kept_identifier_param
from prolo.fhir.search import Param, SearchQuery, date_param, id_param
from prolo.patients.models import Patient
from prolo.security import audit
from prolo.security.principal import Principal

Resource = dict[str, Any]
# An id in a scope clause: a value, or a bound parameter in a statement built once.
Ident = int | BindParameter[Any]
READ, SEARCH, CREATE, UPDATE = "read", "search-type", "create", "update"


@dataclass
class Context:
    """One request's (or import's) view: who, in which session, at which base URL.

    ``resolved`` maps references made inside a Bundle (``urn:uuid:...`` full URLs)
    to the ``Type/id`` they were given; ``strict`` says whether references to rows
    that do not exist are errors (always) and whether optional fields that do not
    fit prolo are errors (REST) or dropped with a warning (import).
    """

    session: Session
    principal: Principal
    base_url: str = ""
    resolved: dict[str, str] = field(default_factory=dict)
    lenient: bool = False
    foreign_ids: bool = False  # imported references name the source's ids, never ours
    warnings: list[str] = field(default_factory=list)
    resolve_conditional: Callable[[str], str | None] | None = None
    # Rows looked up for a write, kept alive: the session's identity map holds objects
    # only weakly, and the domain service that writes next finds them there instead of
    # querying again.
    held: list[Any] = field(default_factory=list)

    @property
    def clinic_id(self) -> int:
        return self.principal.clinic_id


@dataclass(frozen=True)
class Meta:
    """What ``meta`` says about a row, plus identifiers it was imported with."""

    version: int = 1
    last_updated: dt.datetime | None = None
    identifiers: tuple[tuple[str, str], ...] = ()

    def as_fhir(self) -> dict[str, str]:
        found = {"versionId": str(self.version)}
        if self.last_updated is not None:
            found["lastUpdated"] = instant(self.last_updated)
        return found


def instant(value: dt.datetime) -> str:
    """An aware datetime as a FHIR instant in UTC (``2024-05-01T09:30:00Z``)."""
    text = value.astimezone(dt.UTC).isoformat()
    return text.replace("+00:00", "Z")


def ref(type_name: str, row_id: int | str | None) -> dict[str, str] | None:
    """A relative reference, or None when there is nothing to point at."""
    return None if row_id is None else {"reference": f"{type_name}/{row_id}"}


def put(resource: Resource, key: str, value: Any) -> None:
    """Set ``key`` only when ``value`` is present: FHIR JSON never holds null or empty."""
    if value is not None and value != [] and value != {} and value != "":
        resource[key] = value


class MappingBase:
    """What every resource type says about itself, table-backed or not."""

    type_name: ClassVar[str]
    interactions: ClassVar[frozenset[str]] = frozenset({READ, SEARCH, CREATE, UPDATE})
    readers: ClassVar[frozenset[str]] = frozenset({"admin", "clinician", "patient"})
    writers: ClassVar[frozenset[str]] = frozenset({"admin", "clinician"})
    documentation: ClassVar[str] = ""
    # Why the interactions left out are left out, told to a client that asks for one.
    refusal: ClassVar[str] = ""
    # Why a type that can be created takes no conditional create (If-None-Exist).
    conditional_refusal: ClassVar[str] = (
        "it keeps no identifiers, so an existing resource cannot be found by one"
    )
    params: dict[str, Param]

    def check_reader(self, principal: Principal) -> None:
        if principal.role not in self.readers:
            raise Forbidden(f"your role may not read {self.type_name} resources")

    def check_writer(self, principal: Principal) -> None:
        if principal.role not in self.writers:
            raise Forbidden(f"your role may not write {self.type_name} resources")
        if principal.via == "token" and not ({"write", "admin"} & principal.scopes):
            raise Forbidden("this token lacks the 'write' scope")

    @property
    def keeps_identifiers(self) -> bool:
        """Whether rows of this type can carry identifiers they were created or updated with."""
        return CREATE in self.interactions or UPDATE in self.interactions

    @property
    def conditional_create(self) -> bool:
        """Whether a create honours ``If-None-Exist``: the type is created, keeps the
        identifiers it is written with and finds them with its ``identifier`` parameter.

        The CapabilityStatement says exactly this, and :func:`prolo.fhir.service.create`
        refuses the header (naming :attr:`conditional_refusal`) where it is False.
        """
        return (
            CREATE in self.interactions and self.keeps_identifiers and "identifier" in self.params
        )

    def supports(self, interaction: str) -> bool:
        return interaction in self.interactions

    def require(self, interaction: str) -> None:
        if interaction not in self.interactions:
            why = f": {self.refusal}" if self.refusal else ""
            raise NotAllowed(
                f"{self.type_name} does not support the {interaction} interaction{why}"
            )

    def includable(self, param: str) -> bool:
        found = self.params.get(param)
        return found is not None and found.type == "reference" and found.column is not None


class DataMapping(MappingBase, ABC):
    """A resource type not served row for row from one table: prolo's data files, or
    values the owning domain computes (free Slots).

    Read and search by default; a type that can be written overrides :meth:`create`
    and :meth:`update`, which return the resource as it now reads.
    """

    interactions = frozenset({READ, SEARCH})

    @property
    def keeps_identifiers(self) -> bool:
        return False  # not rows of one table: nothing to keep identifiers against

    def create(self, ctx: Context, resource: Resource) -> Resource:
        """Write ``resource`` through the owning domain; the created resource."""
        raise NotAllowed(f"{self.type_name} cannot be created through this server")

    def update(
        self, ctx: Context, resource_id: str, resource: Resource, *, if_match: str | None
    ) -> Resource:
        """Replace what ``resource_id`` maps to; the updated resource. ``if_match`` is the
        client's ``If-Match`` (PreconditionFailed when stale)."""
        raise NotAllowed(f"{self.type_name} cannot be updated through this server")

    @abstractmethod
    def read(self, ctx: Context, resource_id: str) -> Resource:
        """The resource with this id from the data files."""

    @abstractmethod
    def search(
        self, ctx: Context, items: Sequence[tuple[str, str]], *, strict: bool
    ) -> tuple[list[Resource], int, SearchQuery]:
        """Matching resources, the total, and the query as understood."""


class TableMapping(MappingBase, ABC):
    """A resource type served from one prolo table. Subclasses fill in the details."""

    model: ClassVar[Any]
    in_patient_compartment: ClassVar[bool] = True
    # The ``identifier`` search parameter's documentation in the CapabilityStatement.
    identifier_documentation: ClassVar[str] = "An identifier the resource was written with"

    def __init__(self) -> None:
        self.params: dict[str, Param] = {
            "_id": id_param(self.model.id, self.type_name),
            "_lastUpdated": date_param(
                "_lastUpdated", self.last_updated_expr(), "When the resource last changed"
            ),
        }
        if self.keeps_identifiers:
            # One implementation for every type: kept identifiers and the row's own.
            self.params["identifier"] = kept_identifier_param(
                self.type_name, self.model.id, self.identifier_clause, self.identifier_documentation
            )
        for param in self.search_params():
            if param.name in self.params:
                raise TypeError(f"{self.type_name} defines {param.name!r} twice")
            self.params[param.name] = param

    # -- what subclasses describe -------------------------------------------------------

    def search_params(self) -> Sequence[Param]:
        return ()

    def extra_columns(self) -> Sequence[Any]:
        """Labelled column expressions selected with each row for :meth:`to_fhir` (values
        the resource shows from other tables, as correlated subqueries); none by default."""
        return ()

    def updated_column(self) -> Any:
        """The row's own change or creation time, used when it was never versioned."""
        return None

    @abstractmethod
    def to_fhir(self, row: Any, meta: Meta) -> Resource:
        """The FHIR resource for one row."""

    def patient_of(self, row: Any) -> int | None:
        """The patient whose compartment the row is in (None outside any)."""
        return getattr(row, "patient_id", None)

    def clinic_clause(self, clinic_id: Ident) -> ColumnElement[bool]:
        """Rows of one clinic."""
        if hasattr(self.model, "clinic_id"):
            return self.model.clinic_id == clinic_id  # type: ignore[no-any-return]
        return self.model.patient_id.in_(  # type: ignore[no-any-return]
            select(Patient.id).where(Patient.clinic_id == clinic_id)
        )

    def patient_clause(self, patient_id: Ident) -> ColumnElement[bool]:
        """Rows in one patient's compartment."""
        return self.model.patient_id == patient_id  # type: ignore[no-any-return]

    def patients_clause(self, patient_ids: Any) -> ColumnElement[bool]:
        """Rows in the compartments of the patients a subquery selects."""
        return self.model.patient_id.in_(patient_ids)  # type: ignore[no-any-return]

    def create(self, ctx: Context, resource: Resource) -> Any:
        raise NotAllowed(f"{self.type_name} cannot be created through this server")

    def update(self, ctx: Context, row: Any, resource: Resource) -> Any:
        raise NotAllowed(f"{self.type_name} cannot be updated through this server")

    def identifier_clause(
        self, system: str | None, value: str | None
    ) -> ColumnElement[bool] | None:
        """Rows whose own identifier (MRN, NPI) is ``system|value``; None when the row
        holds none of that system. ``system`` or ``value`` None means any (never both);
        the clause is never NULL, so ``identifier:not`` keeps rows without one."""
        return None

    # -- shared machinery ---------------------------------------------------------------

    @property
    def table_name(self) -> str:
        return str(self.model.__tablename__)

    def last_updated_expr(self) -> Any:
        """``meta.lastUpdated`` in SQL: the version row, else the row's own timestamp."""
        # An alias, so the subquery never correlates with a join on the version table.
        version = cast(Table, ResourceVersion.__table__).alias("fhir_version_lu").c
        fallback = self.updated_column()
        latest = (
            select(version.last_updated)
            .where(version.table_name == self.table_name, version.row_id == self.model.id)
            .correlate(self.model)
            .scalar_subquery()
        )
        if fallback is None:
            return func.coalesce(latest, literal(None, UTCDateTime()), type_=UTCDateTime())
        return func.coalesce(latest, fallback, type_=UTCDateTime())

    def version_join(self) -> tuple[Any, ColumnElement[bool]]:
        version = ResourceVersion.__table__
        on = and_(version.c.table_name == self.table_name, version.c.row_id == self.model.id)
        return version, on

    def scope_clause(self, principal: Principal) -> ColumnElement[bool]:
        """Rows ``principal`` may see of this type (their clinic, or their compartment)."""
        if principal.role == "patient":
            if self.in_patient_compartment:
                # A patient login always has its record (a CHECK constraint); -1 matches nothing.
                return self.patient_clause(principal.patient_id or -1)
        return self.clinic_clause(principal.clinic_id)


def core_rows(session: Session, statement: Any, params: dict[str, Any] | None = None) -> Any:
    """The rows of a Core statement (one that loads no ORM entities), on the session's
    connection in its transaction.

    Skips the ORM's execution machinery, which costs about as much again as the query
    on the read path. Pending changes are flushed first, as ``Session.execute`` would
    (a flush with nothing pending returns at once).
    """
    session.flush()
    return session.connection().execute(statement, params or {}).all()


# Built once: SQLAlchemy computes a statement's cache key once per statement object, so
# reusing it saves that walk on every search page and export batch.
_IDENTIFIERS = (
    select(ExternalIdentifier.resource_id, ExternalIdentifier.system, ExternalIdentifier.value)
    .where(
        ExternalIdentifier.resource_type == bindparam("type_name"),
        ExternalIdentifier.resource_id.in_(bindparam("ids", expanding=True)),
    )
    .order_by(ExternalIdentifier.id)
)


def identifiers_for(
    session: Session, type_name: str, ids: Sequence[int]
) -> Mapping[int, tuple[tuple[str, str], ...]]:
    """Imported identifiers of many rows of one type, in one query (none when no ids).

    Types that cannot be created or updated never have any (identifiers are kept only
    by :func:`prolo.fhir.service.create` and ``update``), so they cost no query.
    """
    from prolo.fhir.resources import REGISTRY

    mapping = REGISTRY.get(type_name)
    if not ids or (mapping is not None and not mapping.keeps_identifiers):
        return {}
    rows = core_rows(session, _IDENTIFIERS, {"type_name": type_name, "ids": list(ids)})
    found: dict[int, list[tuple[str, str]]] = {}
    for resource_id, system, value in rows:
        found.setdefault(resource_id, []).append((system, value))
    return {k: tuple(v) for k, v in found.items()}


def identifier_list(meta: Meta) -> list[dict[str, str]]:
    return [{"system": s, "value": v} for s, v in meta.identifiers]


# -- reading resources sent to us -------------------------------------------------------------


def require_field(resource: Resource, path: str) -> Any:
    """The value at a top-level ``path``; Unprocessable naming it when absent."""
    value = resource.get(path)
    if value in (None, "", [], {}):
        raise Unprocessable(
            f"{resource.get('resourceType')}.{path} is required by prolo",
            expression=[f"{resource.get('resourceType')}.{path}"],
        )
    return value


def referenced_id(ctx: Context, reference: Any, target: str, *, path: str) -> int:
    """The row id a Reference points at: ``Type/id``, an absolute URL, or a Bundle's urn:uuid."""
    if not isinstance(reference, dict) or not isinstance(reference.get("reference"), str):
        raise Unprocessable(f"{path} must be a reference to a {target}", expression=[path])
    text: str = reference["reference"]
    if text in ctx.resolved:
        text = ctx.resolved[text]
    elif "?" in text and ctx.resolve_conditional is not None:
        found = ctx.resolve_conditional(text)
        if found is None:
            raise Unprocessable(f"{path}: no {target} matches {text}", expression=[path])
        text = found
    elif ctx.foreign_ids:
        raise Unprocessable(
            f"{path} refers to {text}, which was not imported (yet)", expression=[path]
        )
    if text.startswith("urn:"):
        raise Unprocessable(
            f"{path} refers to {text}, which is not in this Bundle", expression=[path]
        )
    parts = text.rstrip("/").split("/")
    if len(parts) < 2 or parts[-2] != target or not parts[-1].isdigit() or len(parts[-1]) > 10:
        raise Unprocessable(f"{path} must refer to a {target} on this server", expression=[path])
    return int(parts[-1])


def optional_reference(ctx: Context, resource: Resource, key: str, target: str) -> int | None:
    value = resource.get(key)
    if value is None:
        return None
    return referenced_id(ctx, value, target, path=f"{resource['resourceType']}.{key}")


def fhir_date(value: Any, *, path: str) -> dt.date | None:
    """A FHIR date or dateTime string as a date (None when absent)."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) < 10:
        raise Unprocessable(f"{path} must be a full date (YYYY-MM-DD)", expression=[path])
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        raise InvalidResource(f"{path}: {value!r} is not a date", expression=[path]) from None


def fhir_datetime(value: Any, *, path: str) -> dt.datetime | None:
    """A FHIR dateTime/instant with a zone as an aware datetime (None when absent)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidResource(f"{path} must be a dateTime", expression=[path])
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidResource(f"{path}: {value!r} is not a dateTime", expression=[path]) from None
    if parsed.tzinfo is None:
        raise Unprocessable(f"{path} needs a time zone", expression=[path])
    return parsed.astimezone(dt.UTC)


def first_coding(concept: Any, system: str) -> dict[str, Any] | None:
    """The first coding of ``system`` in a CodeableConcept, or None."""
    if not isinstance(concept, dict):
        return None
    for item in concept.get("coding") or []:
        if isinstance(item, dict) and item.get("system") == system and item.get("code"):
            return item
    return None


def concept_text(concept: Any) -> str | None:
    """A CodeableConcept's text, else its first coding's display."""
    if not isinstance(concept, dict):
        return None
    if isinstance(concept.get("text"), str) and concept["text"].strip():
        return str(concept["text"]).strip()
    for item in concept.get("coding") or []:
        if isinstance(item, dict) and isinstance(item.get("display"), str):
            return str(item["display"]).strip()
    return None


def pydantic_problem(
    type_name: str, exc: ValidationError, fields: Mapping[str, str], *, default: str | None = None
) -> Unprocessable:
    """A prolo schema's validation error, named by the FHIR element it came from.

    A whole-model check has no field location; its message names the field first
    ("onset_date must not be ..."), or it is about ``default``.
    """
    first = exc.errors(include_url=False)[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    loc = str(first["loc"][0]) if first["loc"] else message.split(" ", 1)[0]
    element = fields.get(loc, default or type_name)
    return Unprocessable(f"{element}: {message}", expression=[element])


@contextmanager
def named_fields(fields: Mapping[str, str]) -> Iterator[None]:
    """Rename the fields a domain service's ValidationFailed names to FHIR element paths."""
    try:
        yield
    except AppError as exc:
        for error in exc.errors:
            error["field"] = _fhir_path(error.get("field"), fields) or error.get("field", "")
        exc.field = _fhir_path(exc.field, fields) or exc.field
        raise


def _fhir_path(field: str | None, fields: Mapping[str, str]) -> str | None:
    """``answers.pain-nrs`` -> the element ``answers`` maps to; None when unmapped."""
    if field is None:
        return None
    return fields.get(field) or fields.get(field.split(".")[0])


def check_code(value: Any, allowed: Sequence[str], *, path: str) -> None:
    """CodeInvalid (400) when a code is outside the value set FHIR requires for ``path``."""
    if value is not None and value not in allowed:
        raise CodeInvalid(
            f"{path}: {value!r} is not one of {', '.join(allowed)}", expression=[path]
        )


def required_concept_code(
    concept: Any, system: str, allowed: Sequence[str], *, path: str
) -> str | None:
    """The code of a CodeableConcept FHIR binds to a required value set of ``system``'s
    ``allowed`` codes; None when the element is absent. CodeInvalid (400) when it has no
    coding of ``system`` or its code is not allowed."""
    if concept is None:
        return None
    found = first_coding(concept, system)
    if found is None:
        # R4 asks for a coding from the value set; text, or codings of other systems,
        # alone do not meet a required binding:
        # https://hl7.org/fhir/R4/terminologies.html#required
        raise CodeInvalid(
            f"{path} needs a coding from {system} (one of {', '.join(allowed)}); text or "
            "codings of other systems alone do not meet FHIR's required binding",
            expression=[path],
        )
    code = str(found["code"])
    check_code(code, allowed, path=path)
    return code


def check_supported(value: Any, supported: Sequence[str], *, path: str, why: str) -> None:
    """Unprocessable (422) when a code FHIR allows at ``path`` (call :func:`check_code`
    first) is not one prolo has a state for; ``why`` says what prolo records instead."""
    if value is not None and value not in supported:
        raise Unprocessable(f"{path} {value!r} is not supported by prolo: {why}", expression=[path])


def check_patient_writable(ctx: Context, patient_id: int, *, path: str) -> Patient:
    """The patient a written resource belongs to, in the writer's clinic; 422 otherwise."""
    patient = ctx.session.get(Patient, patient_id)
    if patient is None or patient.clinic_id != ctx.clinic_id:
        raise Unprocessable(
            f"{path} refers to a Patient that does not exist here", expression=[path]
        )
    ctx.held.append(patient)
    return patient


def preload_patients(ctx: Context, patient_ids: set[int]) -> None:
    """Load the clinic's patients among ``patient_ids`` in one query, held by ``ctx``.

    :func:`check_patient_writable` and the domain services then find them in the
    session's identity map instead of querying one by one.
    """
    if patient_ids:
        ctx.held.extend(
            ctx.session.scalars(
                select(Patient).where(
                    Patient.id.in_(sorted(patient_ids)), Patient.clinic_id == ctx.clinic_id
                )
            ).all()
        )


def audit_write(
    ctx: Context,
    *,
    action: str,
    event: str,
    entity_type: str,
    entity_id: object,
    patient_id: int | None = None,
) -> None:
    """The audit row of a write the mapping makes itself (no domain service exists for it)."""
    audit.record(
        ctx.session,
        ctx.principal.actor,
        action=action,
        event=event,
        entity_type=entity_type,
        entity_id=entity_id,
        patient_id=patient_id,
    )


def audit_unchanged(ctx: Context, type_name: str, event: str, row: Any) -> None:
    """A PUT that says what is already stored writes nothing; it is audited as a read
    of that record, saying so."""
    audit.record(
        ctx.session,
        ctx.principal.actor,
        action="R",
        event=event,
        entity_type=type_name,
        entity_id=row.id,
        patient_id=row.patient_id,
        detail="FHIR update with the stored content: nothing written",
    )
