"""Transaction and batch Bundles posted to ``[base]``.

See: https://hl7.org/fhir/R4/http.html#transaction and https://hl7.org/fhir/R4/bundle.html

- A **transaction** is all or nothing: every entry is checked against FHIR's
  structure first, then applied in dependency order (a resource after the ones it
  may refer to; ``urn:uuid`` full URLs are replaced by the ids they get); the first
  error, named by its entry index, rolls the whole request back.
- A **batch** applies each entry on its own (a savepoint each) and reports each
  entry's status; one bad entry does not stop the others.
- ``request.ifNoneExist`` (``identifier=system|value``) makes a POST a conditional
  create: an existing match is reused (``200 OK``), so re-sending the same Bundle
  writes nothing twice. Several matches are a 412.
- Supported entry methods: POST (create), PUT ``Type/id`` (update), GET (read or
  search). DELETE and PATCH are refused with 405.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from prolo.errors import AppError
from prolo.fhir import service
from prolo.fhir.errors import FhirError, InvalidResource, NotAllowed, outcome_for
from prolo.fhir.resources import REGISTRY, WRITE_ORDER
from prolo.fhir.resources.base import Context, Resource, TableMapping

_ORDER = {name: i for i, name in enumerate(WRITE_ORDER)}
_METHOD_ORDER = {"POST": 0, "PUT": 1, "GET": 2}


def conditional_resolver(ctx: Context) -> Any:
    """Resolve ``Type?identifier=...`` references to the one row they match."""

    def resolve(text: str) -> str | None:
        type_name, _, criteria = text.partition("?")
        mapping = REGISTRY.get(type_name.rsplit("/", 1)[-1])
        if not isinstance(mapping, TableMapping) or not criteria:
            return None
        rows = service.conditional_matches(ctx, mapping, criteria)
        return f"{mapping.type_name}/{rows[0].id}" if len(rows) == 1 else None

    return resolve


def _entry_error(index: int, exc: AppError) -> AppError:
    """Re-raise ``exc`` with the entry it came from named in the message and path."""
    where = f"Bundle.entry[{index}]"
    if isinstance(exc, FhirError):
        exc.detail = f"{where}: {exc.detail}"
        exc.expression = [f"{where}.resource.{e}" for e in exc.expression] or [where]
        exc.args = (exc.detail,)
        return exc
    exc.detail = f"{where}: {exc.detail}"
    exc.args = (exc.detail,)
    return exc


def _check_entry(index: int, entry: Any) -> tuple[str, str, Resource | None]:
    if not isinstance(entry, dict):
        raise InvalidResource(f"Bundle.entry[{index}] is not an object")
    request = entry.get("request")
    if not isinstance(request, dict) or not request.get("method") or not request.get("url"):
        raise InvalidResource(
            f"Bundle.entry[{index}].request needs a method and a url",
            expression=[f"Bundle.entry[{index}].request"],
        )
    method = str(request["method"]).upper()
    if method not in _METHOD_ORDER:
        raise NotAllowed(
            f"Bundle.entry[{index}]: {method} is not supported in a Bundle (POST, PUT, GET are)"
        )
    resource = entry.get("resource")
    if method in ("POST", "PUT") and not isinstance(resource, dict):
        raise InvalidResource(
            f"Bundle.entry[{index}]: a {method} needs a resource",
            expression=[f"Bundle.entry[{index}].resource"],
        )
    return method, str(request["url"]), resource


def _apply(
    ctx: Context, index: int, entry: dict[str, Any], method: str, url: str, *, validate: bool
) -> dict[str, Any]:
    """Apply one entry; returns its response entry. Raises AppError on failure."""
    path, _, query = url.lstrip("/").partition("?")
    parts = [p for p in path.split("/") if p]
    if method == "GET":
        if len(parts) == 2:
            found = service.read(ctx, parts[0], parts[1])
        elif len(parts) == 1:
            found = service.search(ctx, parts[0], parse_qsl(query, keep_blank_values=True))
        else:
            raise InvalidResource(f"cannot GET {url!r} in a Bundle")
        return {"resource": found, "response": {"status": "200 OK"}}
    resource: Resource = entry["resource"]
    if method == "POST":
        if len(parts) != 1 or parts[0] != resource.get("resourceType"):
            raise InvalidResource(f"a POST to {url!r} must carry a {parts[0] if parts else '?'}")
        if_none_exist = (entry.get("request") or {}).get("ifNoneExist")
        full_url = entry.get("fullUrl")
        status, created = service.create(
            ctx, resource, if_none_exist=if_none_exist, validate=validate
        )
        if isinstance(full_url, str) and full_url:
            ctx.resolved[full_url] = f"{created['resourceType']}/{created['id']}"
        return _written(ctx, created, status)
    if len(parts) != 2:
        raise InvalidResource(f"a PUT needs Type/id, not {url!r}")
    updated = service.update(ctx, parts[0], parts[1], resource, validate=validate)
    full_url = entry.get("fullUrl")
    if isinstance(full_url, str) and full_url:
        ctx.resolved[full_url] = f"{updated['resourceType']}/{updated['id']}"
    return _written(ctx, updated, 200)


def _written(ctx: Context, resource: Resource, status: int) -> dict[str, Any]:
    meta = resource.get("meta", {})
    version = meta.get("versionId", "1")
    response: dict[str, Any] = {
        "status": "201 Created" if status == 201 else "200 OK",
        "location": f"{resource['resourceType']}/{resource['id']}/_history/{version}",
        "etag": f'W/"{version}"',
    }
    if "lastUpdated" in meta:
        response["lastModified"] = meta["lastUpdated"]
    return {
        "fullUrl": f"{ctx.base_url}/{resource['resourceType']}/{resource['id']}",
        "resource": resource,
        "response": response,
    }


def process(ctx: Context, bundle: Any, *, validate: bool = True) -> Resource:
    """Apply a transaction or batch Bundle; returns the transaction-/batch-response."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise InvalidResource("POST [base] takes a Bundle", expression=["resourceType"])
    kind = bundle.get("type")
    if kind not in ("transaction", "batch"):
        raise InvalidResource(
            "only transaction and batch Bundles can be posted to [base]", expression=["Bundle.type"]
        )
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise InvalidResource("Bundle.entry must be a list", expression=["Bundle.entry"])
    ctx.resolve_conditional = conditional_resolver(ctx)
    checked: list[tuple[int, str, str, Resource | None]] = []
    for index, entry in enumerate(entries):
        try:
            method, url, resource = _check_entry(index, entry)
            if validate and resource is not None:
                service.validate_structure(resource)
        except AppError as exc:
            if kind == "transaction":
                raise _entry_error(index, exc) from None
            checked.append((index, "ERROR", str(exc.detail), None))
            continue
        checked.append((index, method, url, resource))

    def order(item: tuple[int, str, str, Resource | None]) -> tuple[int, int, int]:
        index, method, _url, resource = item
        type_rank = _ORDER.get(str((resource or {}).get("resourceType")), len(_ORDER))
        return (_METHOD_ORDER.get(method, 3), type_rank, index)

    responses: dict[int, dict[str, Any]] = {}
    for index, method, url, _resource in sorted(checked, key=order):
        if method == "ERROR":
            _status, body = outcome_for(InvalidResource(url))
            responses[index] = {"response": {"status": "400 Bad Request", "outcome": body}}
            continue
        if kind == "transaction":
            try:
                responses[index] = _apply(ctx, index, entries[index], method, url, validate=False)
            except AppError as exc:
                raise _entry_error(index, exc) from None
            continue
        try:
            with ctx.session.begin_nested():
                responses[index] = _apply(ctx, index, entries[index], method, url, validate=False)
        except AppError as exc:
            status, body = outcome_for(exc)
            responses[index] = {"response": {"status": f"{status}", "outcome": body}}
    return {
        "resourceType": "Bundle",
        "type": f"{kind}-response",
        "entry": [responses[i] for i in range(len(entries))],
    }
