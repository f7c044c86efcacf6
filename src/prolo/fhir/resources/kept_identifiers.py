"""The ``identifier`` search parameter of types whose rows carry no identifier of their own.

Identifiers a resource is created or updated with are kept in ``fhir_identifier``
(:func:`prolo.fhir.service.remember_identifiers`); this parameter finds them again, which
is what makes a conditional create (``If-None-Exist: identifier=system|value``)
idempotent for such a type.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, select

from prolo.fhir.models import ExternalIdentifier
from prolo.fhir.search import Param, split_token


def kept_identifier_param(type_name: str, id_column: Any) -> Param:
    """``identifier``: ``system|value``, ``value`` (any system) or ``system|`` (any value)."""

    def clause(value: str, modifier: str | None) -> ColumnElement[bool]:
        system, code = split_token(value)
        kept = select(ExternalIdentifier.resource_id).where(
            ExternalIdentifier.resource_type == type_name,
            *([ExternalIdentifier.system == system] if system else []),
            *([ExternalIdentifier.value == code] if code else []),
        )
        found: ColumnElement[bool] = id_column.in_(kept)
        return ~found if modifier == "not" else found

    return Param("identifier", "token", clause, "An identifier the resource was written with")
