"""The FHIR interactions as use cases: read, search, create, update. Each runs in the
caller's transaction, checks access, and writes its audit row there.

Reads build plain dicts from the domain rows; writes go through the mapping, which
calls the owning domain's service where one exists (and that service audits), or
writes and audits itself. Structure is checked with the ``fhir.resources`` R4B
models on the REST write path only: that is where a client's mistake must be named
precisely, and it costs a fraction of a millisecond per resource.

See: https://hl7.org/fhir/R4/http.html
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any, cast
from urllib.parse import urlencode

from pydantic import ValidationError
from sqlalchemy import Table, and_, bindparam, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from prolo.errors import AccessDenied, Conflict, Forbidden, database_refusal
from prolo.fhir import codes
from prolo.fhir.errors import (
    ConditionUnsupported,
    InvalidResource,
    MultipleMatches,
    PreconditionFailed,
    UnknownType,
    operation_outcome,
)
from prolo.fhir.models import ExternalIdentifier, ResourceVersion
from prolo.fhir.resources import REGISTRY, Mapping
from prolo.fhir.resources.base import (
    CREATE,
    READ,
    SEARCH,
    UPDATE,
    Context,
    Meta,
    Resource,
    TableMapping,
    core_rows,
    identifiers_for,
)
from prolo.fhir.search import SearchQuery, parse_search
from prolo.security import audit
from prolo.security.principal import Principal


def mapping_for(type_name: str) -> Mapping:
    """The mapping of a resource type; UnknownType (404) when the server does not serve it."""
    found = REGISTRY.get(type_name)
    if found is None:
        raise UnknownType(f"this server does not serve {type_name!r} resources")
    return found


def validate_structure(
    resource: Any, type_name: str | None = None, *, served_only: bool = True
) -> Resource:
    """Check a resource against FHIR's structure rules (R4B models).

    Raises InvalidResource naming the first element that breaks them.
    """
    from fhir.resources.R4B import get_fhir_model_class

    if not isinstance(resource, dict):
        raise InvalidResource("the body must be a JSON object (a FHIR resource)")
    kind = resource.get("resourceType")
    if not isinstance(kind, str):
        raise InvalidResource("resourceType is missing", expression=["resourceType"])
    if type_name is not None and kind != type_name:
        raise InvalidResource(
            f"the body is a {kind}, but the URL names {type_name}", expression=["resourceType"]
        )
    if served_only:
        mapping_for(kind)
    try:
        get_fhir_model_class(kind).model_validate(resource)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        path = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
        message = str(first["msg"]).removeprefix("Value error, ")
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InvalidResource(
            f"{kind}.{path}: {message}{more}" if path else f"{kind}: {message}{more}",
            expression=[f"{kind}.{path}" if path else kind],
        ) from None
    return resource


def _row_id(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) <= 10 else None


@cache
def _load_statement(type_name: str, by_patient: bool) -> Any:
    """The ORM row of one id with its version, for an update; built once per type and scope.

    An update changes the ORM object (and the domain services find it in the identity
    map), so this loads the entity, unlike the Core read. Reusing the statement object
    saves SQLAlchemy's cache-key walk on every update.
    """
    mapping = REGISTRY[type_name]
    if not isinstance(mapping, TableMapping):
        raise TypeError(type_name)
    version, on = mapping.version_join()
    fallback = mapping.updated_column()
    last = (
        func.coalesce(version.c.last_updated, fallback)
        if fallback is not None
        else version.c.last_updated
    )
    scope = (
        mapping.patient_clause(bindparam("scope_id"))
        if by_patient
        else mapping.clinic_clause(bindparam("scope_id"))
    )
    return (
        select(mapping.model, version.c.version, last.label("last_updated"))
        .outerjoin(version, on)
        .where(mapping.model.id == bindparam("row_id"), scope)
    )


def _scope_id(ctx: Context, mapping: TableMapping) -> tuple[bool, int]:
    """Whether rows are scoped by patient (a patient's token) and the id to scope by."""
    principal = ctx.principal
    by_patient = principal.role == "patient" and mapping.in_patient_compartment
    return by_patient, (principal.patient_id or -1) if by_patient else principal.clinic_id


def _meta(row: Any, version: int | None, last: Any, ids: Sequence[tuple[str, str]] = ()) -> Meta:
    return Meta(version=version or 1, last_updated=last, identifiers=tuple(ids))


def load(ctx: Context, mapping: TableMapping, resource_id: str) -> tuple[Any, Meta]:
    """The ORM row behind ``Type/id`` and its version, if the principal may see it.

    The meta carries no identifiers (an update needs the version only; the response is
    read back with :func:`fast_load`). AccessDenied (404, audited) when the row is
    absent or out of the principal's scope.
    """
    row_id = _row_id(resource_id)
    found = None
    if row_id is not None:
        by_patient, scope_id = _scope_id(ctx, mapping)
        found = ctx.session.execute(
            _load_statement(mapping.type_name, by_patient),
            {"row_id": row_id, "scope_id": scope_id},
        ).first()
    if found is None:
        raise AccessDenied(
            f"no such {mapping.type_name}", entity_type=mapping.type_name, entity_id=resource_id
        )
    row, version, last = found
    return row, _meta(row, version, last)


def read(ctx: Context, type_name: str, resource_id: str) -> Resource:
    """``GET [base]/Type/id``: the resource, audited as a read."""
    mapping = mapping_for(type_name)
    mapping.require(READ)
    mapping.check_reader(ctx.principal)
    if not isinstance(mapping, TableMapping):
        resource = mapping.read(ctx, resource_id)
        audit.record(
            ctx.session,
            ctx.principal.actor,
            action="R",
            event="fhir.read",
            entity_type=type_name,
            entity_id=resource_id,
        )
        return resource
    row, meta = fast_load(ctx, mapping, resource_id)
    audit.record(
        ctx.session,
        ctx.principal.actor,
        action="R",
        event="fhir.read",
        entity_type=type_name,
        entity_id=row.id,
        patient_id=mapping.patient_of(row),
    )
    return mapping.to_fhir(row, meta)


@cache
def _read_statement(type_name: str, by_patient: bool) -> Any:
    """The read of one row with its version and imported identifiers, built once.

    The statement is reused across requests, so SQLAlchemy computes its cache key
    once; rows come back as Core rows (no ORM objects), identifiers by an outer join.
    """
    mapping = REGISTRY[type_name]
    if not isinstance(mapping, TableMapping):
        raise TypeError(type_name)
    table = cast(Table, mapping.model.__table__)
    version = cast(Table, ResourceVersion.__table__)
    idents = cast(Table, ExternalIdentifier.__table__)
    fallback = mapping.updated_column()
    last = (
        func.coalesce(version.c.last_updated, fallback)
        if fallback is not None
        else version.c.last_updated
    )
    scope = (
        mapping.patient_clause(bindparam("scope_id"))
        if by_patient
        else mapping.clinic_clause(bindparam("scope_id"))
    )
    return (
        select(
            table,
            version.c.version.label("fhir_version"),
            last.label("fhir_last_updated"),
            idents.c.system.label("fhir_identifier_system"),
            idents.c.value.label("fhir_identifier_value"),
            *mapping.extra_columns(),
        )
        .outerjoin(
            version,
            and_(version.c.table_name == mapping.table_name, version.c.row_id == table.c.id),
        )
        .outerjoin(
            idents,
            and_(idents.c.resource_type == mapping.type_name, idents.c.resource_id == table.c.id),
        )
        .where(table.c.id == bindparam("row_id"), scope)
        .order_by(idents.c.id)
    )


def fast_load(ctx: Context, mapping: TableMapping, resource_id: str) -> tuple[Any, Meta]:
    """Like :func:`load`, as a Core row in one round trip (the read path)."""
    row_id = _row_id(resource_id)
    rows: Sequence[Any] = []
    if row_id is not None:
        by_patient, scope_id = _scope_id(ctx, mapping)
        rows = core_rows(
            ctx.session,
            _read_statement(mapping.type_name, by_patient),
            {"row_id": row_id, "scope_id": scope_id},
        )
    if not rows:
        raise AccessDenied(
            f"no such {mapping.type_name}", entity_type=mapping.type_name, entity_id=resource_id
        )
    first = rows[0]
    identifiers = tuple(
        (r.fhir_identifier_system, r.fhir_identifier_value)
        for r in rows
        if r.fhir_identifier_system is not None
    )
    return first, _meta(first, first.fhir_version, first.fhir_last_updated, identifiers)


def search(
    ctx: Context,
    type_name: str,
    items: Sequence[tuple[str, str]],
    *,
    strict: bool = False,
) -> Resource:
    """``GET [base]/Type?params``: a searchset Bundle with total and paging links."""
    mapping = mapping_for(type_name)
    mapping.require(SEARCH)
    mapping.check_reader(ctx.principal)
    included: list[Resource] = []
    if isinstance(mapping, TableMapping):
        query = parse_search(
            type_name, mapping.params, items, strict=strict, includable=mapping.includable
        )
        matches, total, rows = _search_rows(ctx, mapping, query)
        patients = {mapping.patient_of(r) for r in rows}
        included = _includes(ctx, mapping, query, rows)
    else:
        matches, total, query = mapping.search(ctx, items, strict=strict)
        patients = {None}
    audit.record(
        ctx.session,
        ctx.principal.actor,
        action="R",
        event="fhir.search",
        entity_type=type_name,
        patient_id=next(iter(patients)) if len(patients) == 1 else None,
        detail=f"{len(matches)} of {'?' if total is None else total} shown, "
        f"{len(included)} included",
    )
    return searchset(ctx.base_url, type_name, query, matches, included, total)


def _core_rows(mapping: TableMapping, *extra: Any) -> Any:
    """Core rows of a mapped table with ``fhir_version`` and ``fhir_last_updated``."""
    table = cast(Table, mapping.model.__table__)
    version = cast(Table, ResourceVersion.__table__)
    fallback = mapping.updated_column()
    last = (
        func.coalesce(version.c.last_updated, fallback)
        if fallback is not None
        else version.c.last_updated
    )
    return select(
        table,
        version.c.version.label("fhir_version"),
        last.label("fhir_last_updated"),
        *mapping.extra_columns(),
        *extra,
    ).outerjoin(
        version, and_(version.c.table_name == mapping.table_name, version.c.row_id == table.c.id)
    )


def _search_rows(
    ctx: Context, mapping: TableMapping, query: SearchQuery
) -> tuple[list[Resource], int | None, list[Any]]:
    """The page of matches, the total (None for ``_total=none``) and the rows.

    With a total, it rides along with the page as a window count (one round trip);
    without one, the page is read one row long, to know whether a next page exists,
    and the database never counts the matches beyond it.
    """
    where = [mapping.scope_clause(ctx.principal), *query.clauses]

    def count() -> int:
        return (
            ctx.session.scalar(select(func.count()).select_from(mapping.model).where(*where)) or 0
        )

    if query.summary_count or query.count == 0:
        return [], count(), []
    order = []
    for name, descending in query.sort:
        column = mapping.model.id if name == "_id" else mapping.last_updated_expr()
        order.append(column.desc() if descending else column.asc())
    order.append(mapping.model.id.asc())
    total: int | None
    if query.with_total:
        rows = core_rows(
            ctx.session,
            _core_rows(mapping, func.count().over().label("fhir_total"))
            .where(*where)
            .order_by(*order)
            .limit(query.count)
            .offset(query.offset),
        )
        total = rows[0].fhir_total if rows else (count() if query.offset else 0)
    else:
        rows = core_rows(
            ctx.session,
            _core_rows(mapping)
            .where(*where)
            .order_by(*order)
            .limit(query.count + 1)
            .offset(query.offset),
        )
        query.more = len(rows) > query.count
        rows, total = rows[: query.count], None
    ids = identifiers_for(ctx.session, mapping.type_name, [r.id for r in rows])
    resources = [
        mapping.to_fhir(
            row, _meta(row, row.fhir_version, row.fhir_last_updated, ids.get(row.id, ()))
        )
        for row in rows
    ]
    return resources, total, list(rows)


def _includes(
    ctx: Context, mapping: TableMapping, query: SearchQuery, rows: Sequence[Any]
) -> list[Resource]:
    """Resources the ``_include`` parameters name, that the principal may read."""
    found: list[Resource] = []
    seen: set[tuple[str, str]] = set()
    for _source, param_name in query.includes:
        param = mapping.params[param_name]
        target = REGISTRY.get(param.target or "")
        if param.column is None or not isinstance(target, TableMapping):
            continue
        if ctx.principal.role not in target.readers:
            continue
        attribute = param.column.key
        wanted = sorted({getattr(r, attribute) for r in rows if getattr(r, attribute) is not None})
        wanted = [w for w in wanted if (target.type_name, str(w)) not in seen]
        if not wanted:
            continue
        result = core_rows(
            ctx.session,
            _core_rows(target).where(
                target.model.id.in_(wanted), target.scope_clause(ctx.principal)
            ),
        )
        ids = identifiers_for(ctx.session, target.type_name, [r.id for r in result])
        for row in result:
            seen.add((target.type_name, str(row.id)))
            meta = _meta(row, row.fhir_version, row.fhir_last_updated, ids.get(row.id, ()))
            found.append(target.to_fhir(row, meta))
    return found


def searchset(
    base_url: str,
    type_name: str,
    query: SearchQuery,
    matches: Sequence[Resource],
    included: Sequence[Resource],
    total: int | None,
) -> Resource:
    """A searchset Bundle with ``self``/``first``/``previous``/``next``/``last`` links.

    See: https://hl7.org/fhir/R4/bundle.html#searchset and https://hl7.org/fhir/R4/http.html#paging
    """

    def link(relation: str, offset: int) -> dict[str, str]:
        params = [*query.applied, ("_count", str(query.count)), ("_offset", str(offset))]
        return {"relation": relation, "url": f"{base_url}/{type_name}?{urlencode(params)}"}

    links = [link("self", query.offset)]
    if not query.summary_count and query.count > 0:
        links.append(link("first", 0))
        if query.offset > 0:
            links.append(link("previous", max(0, query.offset - query.count)))
        if query.more if total is None else query.offset + query.count < total:
            links.append(link("next", query.offset + query.count))
        if total is not None:  # without a total there is no knowing the last page
            last_page = ((max(total, 1) - 1) // query.count) * query.count
            links.append(link("last", last_page))
    entries: list[Resource] = [
        {
            "fullUrl": f"{base_url}/{r['resourceType']}/{r['id']}",
            "resource": r,
            "search": {"mode": "match"},
        }
        for r in matches
    ]
    entries.extend(
        {
            "fullUrl": f"{base_url}/{r['resourceType']}/{r['id']}",
            "resource": r,
            "search": {"mode": "include"},
        }
        for r in included
    )
    if query.ignored:
        entries.append(
            {
                "resource": operation_outcome(
                    "ignored search parameters: " + ", ".join(sorted(set(query.ignored))),
                    code="not-supported",
                    severity="warning",
                ),
                "search": {"mode": "outcome"},
            }
        )
    bundle: Resource = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links
    if entries:
        bundle["entry"] = entries
    return bundle


# -- writes -------------------------------------------------------------------------------


def conditional_matches(ctx: Context, mapping: Mapping, criteria: str) -> list[Any]:
    """Rows matching an ``If-None-Exist`` query (``identifier=system|value`` and friends)."""
    from urllib.parse import parse_qsl

    if not isinstance(mapping, TableMapping):
        return []
    items = parse_qsl(criteria.removeprefix("?").split("?", 1)[-1], keep_blank_values=True)
    if not items:
        raise InvalidResource("the conditional-create criteria are empty")
    query = parse_search(
        mapping.type_name, mapping.params, items, strict=True, includable=lambda _p: False
    )
    return list(
        ctx.session.scalars(
            select(mapping.model)
            .where(mapping.scope_clause(ctx.principal), *query.clauses)
            .order_by(mapping.model.id)
            .limit(2)
        ).all()
    )


def remember_identifiers(
    ctx: Context,
    type_name: str,
    row_id: int,
    pairs: Sequence[tuple[str, str]],
    *,
    unchecked: Sequence[tuple[str, str]] = (),
) -> None:
    """Keep the identifiers a resource arrived with (for conditional create and re-import).

    ``pairs`` are looked up first, all in one query: one that belongs to another row is
    a Conflict, one this row has already is left as it is. ``unchecked`` pairs are ones
    the caller has found free in this clinic (the importer's source keys, looked up a
    batch at a time); they are kept without a lookup, and the table's unique
    constraint still refuses a clash among them.
    """
    own_mrn = codes.mrn_system(ctx.clinic_id)

    def kept(items: Sequence[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, str]]:
        return {
            (system[:255], value[:255]): (system, value)
            for system, value in items
            if system and value and system not in (own_mrn, codes.NPI, codes.QR_IDEMPOTENCY)
        }

    free = kept(unchecked)
    check = {key: pair for key, pair in kept(pairs).items() if key not in free}
    owners: dict[tuple[str, str], int] = {}
    if check:
        table = ExternalIdentifier
        rows = ctx.session.execute(
            select(table.system, table.value, table.resource_id).where(
                table.clinic_id == ctx.clinic_id,
                table.resource_type == type_name,
                or_(*(and_(table.system == s, table.value == v) for s, v in check)),
            )
        ).all()
        owners = {(system, value): owner for system, value, owner in rows}
    for key, (system, value) in check.items():
        owner = owners.get(key)
        if owner is not None and owner != row_id:
            # A patient writes within their own compartment (their pain readings); the
            # identifier's owner may be another patient's record, so its id is not named.
            holder = (
                f"{type_name}/{owner}"
                if ctx.principal.role != "patient"
                else f"another {type_name}"
            )
            raise Conflict(f"the identifier {system}|{value} already belongs to {holder}")
    for system, value in [*(k for k in check if k not in owners), *free]:
        ctx.session.add(
            ExternalIdentifier(
                clinic_id=ctx.clinic_id,
                resource_type=type_name,
                resource_id=row_id,
                system=system,
                value=value,
            )
        )


# Identifiers prolo never keeps: national ids, driver's licences, passports, tax and
# benefit numbers. They identify a person far beyond the clinic and do nothing for
# matching a record that an EHR's own identifiers do not. Identifier types are HL7 v2
# table 0203 (http://terminology.hl7.org/CodeSystem/v2-0203, see
# https://build.fhir.org/ig/HL7/UTG/ValueSet-v2-0203.json.html).
PRIVATE_IDENTIFIER_TYPES = frozenset({"SS", "DL", "PPN", "TAX", "SB", "DR"})
PRIVATE_IDENTIFIER_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/us-ssn"})


def is_private_identifier(identifier: Any) -> bool:
    """Whether an Identifier is one prolo does not keep (see above)."""
    if not isinstance(identifier, dict):
        return False
    coding = (identifier.get("type") or {}).get("coding") or []
    types = {c.get("code") for c in coding if isinstance(c, dict)}
    return bool(types & PRIVATE_IDENTIFIER_TYPES) or (
        identifier.get("system") in PRIVATE_IDENTIFIER_SYSTEMS
    )


def identifier_pairs(resource: Resource) -> list[tuple[str, str]]:
    """The (system, value) identifiers a resource arrived with that prolo keeps."""
    idents = resource.get("identifier")
    if isinstance(idents, dict):  # QuestionnaireResponse.identifier is a single Identifier
        idents = [idents]
    return [
        (str(i["system"]), str(i["value"]))
        for i in idents or []
        if isinstance(i, dict)
        and i.get("system")
        and i.get("value")
        and not is_private_identifier(i)
    ]


def create(
    ctx: Context,
    resource: Resource,
    *,
    type_name: str | None = None,
    if_none_exist: str | None = None,
    validate: bool = True,
    source_identifiers: Sequence[tuple[str, str]] = (),
    read_back: bool = True,
    isolated: bool = True,
) -> tuple[int, Resource]:
    """``POST [base]/Type``: (201, created), or (200, existing) when a conditional create matches.

    Several matches are a 412; ``If-None-Exist`` on a type without conditional create
    (``Mapping.conditional_create``) a 400 saying why. The write is audited by the domain
    service or the mapping.
    ``isolated`` writes in a savepoint, so a refused resource leaves the caller's
    transaction usable (the importer and batch Bundles go on); a caller that rolls
    back everything on any error (a REST request) passes False and saves the
    savepoint's two statements. ``source_identifiers`` are kept without a lookup:
    the caller has found them free in this clinic (see :func:`remember_identifiers`).
    """
    kind = type_name or (resource.get("resourceType") if isinstance(resource, dict) else None)
    mapping = mapping_for(str(kind))
    mapping.require(CREATE)
    mapping.check_writer(ctx.principal)
    if if_none_exist and not mapping.conditional_create:
        raise ConditionUnsupported(
            f"{mapping.type_name} does not support conditional create (If-None-Exist): "
            f"{mapping.conditional_refusal}"
        )
    if validate:
        validate_structure(resource, type_name)
    if not isinstance(mapping, TableMapping):
        try:
            with _savepoint(ctx, isolated):
                return 201, mapping.create(ctx, resource)
        except IntegrityError as exc:
            raise database_refusal(exc, f"this {mapping.type_name}") from None
    if if_none_exist:
        matches = conditional_matches(ctx, mapping, if_none_exist)
        if len(matches) > 1:
            raise MultipleMatches(
                f"the conditional create criteria match more than one {mapping.type_name}"
            )
        if matches:
            row, meta = fast_load(ctx, mapping, str(matches[0].id))
            # Nothing is written, but the existing record is returned: a read of it.
            audit.record(
                ctx.session,
                ctx.principal.actor,
                action="R",
                event="fhir.read",
                entity_type=mapping.type_name,
                entity_id=row.id,
                patient_id=mapping.patient_of(row),
                detail="conditional create matched: nothing written",
            )
            return 200, mapping.to_fhir(row, meta)
    try:
        with _savepoint(ctx, isolated):
            row = mapping.create(ctx, resource)
            ctx.session.flush()
            pairs = identifier_pairs(resource)
            if pairs or source_identifiers:
                remember_identifiers(
                    ctx, mapping.type_name, row.id, pairs, unchecked=source_identifiers
                )
                ctx.session.flush()
    except IntegrityError as exc:
        raise database_refusal(exc, f"this {mapping.type_name}") from None
    if not read_back:  # the importer needs the new id only
        return 201, {"resourceType": mapping.type_name, "id": str(row.id)}
    row, meta = fast_load(ctx, mapping, str(row.id))
    return 201, mapping.to_fhir(row, meta)


def update(
    ctx: Context,
    type_name: str,
    resource_id: str,
    resource: Resource,
    *,
    if_match: str | None = None,
    validate: bool = True,
    isolated: bool = True,
) -> Resource:
    """``PUT [base]/Type/id``: replace the row's mapped fields; 412 when If-Match is stale.

    ``isolated`` as for :func:`create`.
    """
    mapping = mapping_for(type_name)
    mapping.require(UPDATE)
    mapping.check_writer(ctx.principal)
    if validate:
        validate_structure(resource, type_name)
    if resource.get("id") != resource_id:
        raise InvalidResource(
            "the resource's id must equal the id in the URL", expression=[f"{type_name}.id"]
        )
    if not isinstance(mapping, TableMapping):
        try:
            with _savepoint(ctx, isolated):
                return mapping.update(ctx, resource_id, resource, if_match=if_match)
        except IntegrityError as exc:
            raise database_refusal(exc, f"this {type_name}") from None
    row, meta = load(ctx, mapping, resource_id)
    if if_match is not None:
        wanted = if_match.strip().removeprefix("W/").strip('"')
        if wanted != str(meta.version):
            raise PreconditionFailed(
                f"{type_name}/{resource_id} is at version {meta.version}, not {wanted}"
            )
    try:
        with _savepoint(ctx, isolated):
            mapping.update(ctx, row, resource)
            ctx.session.flush()
            pairs = identifier_pairs(resource)
            if pairs:
                remember_identifiers(ctx, type_name, row.id, pairs)
                ctx.session.flush()
    except IntegrityError as exc:
        raise database_refusal(exc, f"this {type_name}") from None
    row, meta = fast_load(ctx, mapping, resource_id)
    return mapping.to_fhir(row, meta)


@contextmanager
def _savepoint(ctx: Context, isolated: bool) -> Iterator[None]:
    """A savepoint around a write when ``isolated``; otherwise the caller's transaction."""
    if not isolated:
        yield
        return
    with ctx.session.begin_nested():
        yield


def principal_context(session: Session, principal: Principal, base_url: str) -> Context:
    if principal.role == "researcher":
        raise Forbidden("researchers see de-identified data only, not FHIR resources")
    return Context(session=session, principal=principal, base_url=base_url)
