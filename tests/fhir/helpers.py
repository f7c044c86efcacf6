"""Shared checks for FHIR tests: every resource parses with fhir.resources (R4B), its
codes carry systems, and its references resolve on this server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class
from sqlalchemy.orm import Session

from tests.factories import make_user, token_for

FHIR_JSON = "application/fhir+json"


def fhir_token(session: Session, user: Any, *scopes: str) -> dict[str, str]:
    headers = token_for(session, user, scopes=scopes or ("fhir", "write"))
    return {**headers, "Accept": FHIR_JSON}


def staff_headers(
    session: Session, clinic: Any, role: str = "clinician", *scopes: str
) -> dict[str, str]:
    return fhir_token(session, make_user(session, clinic, role), *scopes)


def parse(resource: dict[str, Any]) -> Any:
    """The resource as an R4B model: fails the test when it breaks FHIR's structure."""
    return get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def walk(value: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(value, dict):
        yield path, value
        for key, item in value.items():
            yield from walk(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from walk(item, f"{path}[{i}]")


def codings(resource: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every Coding in a resource (items of a ``coding`` list, and bare Codings)."""
    found = []
    for path, node in walk(resource):
        if path.endswith("]") and ".coding[" in path:
            found.append((path, node))
        elif path.split(".")[-1] in ("type", "subtype", "valueCoding") and "code" in node:
            found.append((path, node))
    return found


def check_codes(resource: dict[str, Any]) -> None:
    for path, coding in codings(resource):
        assert coding.get("system"), (
            f"{resource['resourceType']}.{path} has a code without a system"
        )
        assert coding.get("code"), f"{resource['resourceType']}.{path} has no code"


def references(resource: dict[str, Any]) -> list[str]:
    return [
        node["reference"]
        for _path, node in walk(resource)
        if isinstance(node.get("reference"), str)
    ]


def check_resource(
    client: TestClient, headers: dict[str, str], resource: dict[str, Any], *, resolve: bool = True
) -> Any:
    """Parse, check codes and (optionally) that every reference reads back 200."""
    model = parse(resource)
    check_codes(resource)
    if resolve:
        for reference in references(resource):
            r = client.get(f"/fhir/{reference}", headers=headers)
            assert r.status_code == 200, f"{reference} does not resolve: {r.text}"
            assert r.json()["resourceType"] == reference.split("/")[0]
    return model


def check_bundle(client: TestClient, headers: dict[str, str], bundle: dict[str, Any]) -> Any:
    model = parse(bundle)
    for entry in bundle.get("entry", []):
        check_resource(client, headers, entry["resource"])
    return model
