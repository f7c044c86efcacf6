"""The CapabilityStatement: what this server does, generated from the mappings.

See: https://hl7.org/fhir/R4/capabilitystatement.html

It is built from the same registry the routes use, so it cannot claim an interaction,
search parameter or include the server does not have: a resource lists exactly its
mapping's interactions and parameters, and ``conditionalCreate`` is the mapping's
``conditional_create`` (the types that keep identifiers and search them), which is what
the create path checks before honouring ``If-None-Exist``.
"""

from __future__ import annotations

from typing import Any

from prolo.fhir.resources import REGISTRY
from prolo.fhir.resources.base import SEARCH, UPDATE, TableMapping

FHIR_VERSION = "4.0.1"
STATEMENT_DATE = "2026-11-24"
BULK = "http://hl7.org/fhir/uv/bulkdata"


def capability_statement(base_url: str, *, software_version: str = "0.1.0") -> dict[str, Any]:
    """The server's CapabilityStatement (kind ``instance``) for ``base_url``."""
    resources: list[dict[str, Any]] = []
    for mapping in REGISTRY.values():
        entry: dict[str, Any] = {
            "type": mapping.type_name,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{mapping.type_name}",
            "documentation": mapping.documentation,
            "interaction": [{"code": code} for code in sorted(mapping.interactions)],
            # A written Slot (a closure) is versioned; data-file types are not.
            "versioning": (
                "versioned"
                if isinstance(mapping, TableMapping) or UPDATE in mapping.interactions
                else "no-version"
            ),
            "readHistory": False,
            "updateCreate": False,
            "conditionalCreate": mapping.conditional_create,
            "conditionalRead": "not-supported",
            "conditionalUpdate": False,
            "conditionalDelete": "not-supported",
        }
        if SEARCH in mapping.interactions:
            includes = [
                f"{mapping.type_name}:{name}"
                for name, param in mapping.params.items()
                if mapping.includable(name)
            ]
            if includes:
                entry["searchInclude"] = includes
            entry["searchParam"] = [
                {"name": p.name, "type": p.type, "documentation": p.documentation}
                for p in mapping.params.values()
            ]
        if mapping.type_name == "Patient":
            entry["operation"] = [
                {"name": "export", "definition": f"{BULK}/OperationDefinition/patient-export"}
            ]
        resources.append(entry)
    resources.append(
        {
            "type": "Group",
            "documentation": (
                "Groups exist only for bulk export: Group/<condition-id> is every patient "
                "with a diagnosis or treatment course for that knowledge-base condition. "
                "Group resources themselves are not served."
            ),
            "operation": [
                {"name": "export", "definition": f"{BULK}/OperationDefinition/group-export"}
            ],
        }
    )
    return {
        "resourceType": "CapabilityStatement",
        "id": "prolo",
        "name": "ProloFhirServer",
        "title": "prolo FHIR R4 server",
        "status": "active",
        "experimental": False,
        "date": STATEMENT_DATE,
        "publisher": "prolo",
        "description": (
            "FHIR R4 access to a prolotherapy clinic's records: read and search over the "
            "chart, courses, calendar, questionnaires, scores and the audit log; create and "
            "update where prolo lets a client write; transaction and batch Bundles; Bulk "
            "Data export."
        ),
        "kind": "instance",
        "instantiates": [f"{BULK}/CapabilityStatement/bulk-data"],
        "software": {"name": "prolo", "version": software_version},
        "implementation": {"description": "prolo FHIR endpoint", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["json", "application/fhir+json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Every request needs a bearer token (prolo token create) with the fhir "
                    "scope; writes also need the write scope, bulk export the bulk scope. A "
                    "patient's token sees only that patient's compartment. Reads and writes "
                    "are audited."
                ),
                "security": {
                    "cors": False,
                    "description": "Bearer tokens issued by prolo; scopes fhir, write, bulk.",
                },
                "resource": resources,
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
                "searchParam": [
                    {"name": "_count", "type": "number", "documentation": "Page size (max 1000)"},
                    {"name": "_offset", "type": "number", "documentation": "Page start"},
                    {
                        "name": "_total",
                        "type": "token",
                        "documentation": "none: no count of the matches (faster); "
                        "estimate and accurate: the exact count (the default)",
                    },
                ],
                "operation": [
                    {"name": "export", "definition": f"{BULK}/OperationDefinition/export"}
                ],
            }
        ],
    }
