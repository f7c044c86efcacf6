"""The ``identifier`` search parameter, one implementation for every type that keeps
identifiers.

Identifiers a resource is created or updated with are kept in ``fhir_identifier``
(:func:`prolo.fhir.service.remember_identifiers`); some types also carry one on the row
itself (a patient's MRN, a practitioner's NPI, a questionnaire response's submission
key), which the mapping describes with ``identifier_clause``. This parameter finds
either, which is what makes a conditional create (``If-None-Exist:
identifier=system|value``) idempotent: :class:`prolo.fhir.resources.base.TableMapping`
adds it to every type that keeps identifiers.

Token forms (https://hl7.org/fhir/R4/search.html#token): ``system|value`` both,
``value`` that value in any system, ``system|`` any value of that system, ``|value``
that value without a system. Every identifier prolo keeps or stores has a system, so
``|value`` matches nothing. ``:not`` negates (a resource without any identifier
matches it); other modifiers are refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, false, not_, or_, select

from prolo.fhir.models import ExternalIdentifier
from prolo.fhir.search import Param, SearchError, split_token

# (system or None for any, value or None for any) -> a clause on the row's own
# identifier, never NULL, or None when the row holds no identifier of that system.
RowClause = Callable[[str | None, str | None], ColumnElement[bool] | None]
# The stored columns are 255 characters; remember_identifiers keeps the first 255, so
# a longer value is looked up as kept.
_WIDTH = 255


def kept_identifier_param(
    type_name: str, id_column: Any, row: RowClause, documentation: str
) -> Param:
    """``identifier`` of ``type_name``: kept identifiers, or the row's own (``row``)."""

    def clause(text: str, modifier: str | None) -> ColumnElement[bool]:
        if modifier not in (None, "not"):
            raise SearchError(f"identifier: modifier :{modifier} is not supported")
        system, value = split_token(text)
        if system == "" and value is None:
            raise SearchError("identifier: '|' names neither a system nor a value")
        found: ColumnElement[bool] = false()  # |value: every identifier here has a system
        if system != "":
            kept = select(ExternalIdentifier.resource_id).where(
                ExternalIdentifier.resource_type == type_name,
                *([ExternalIdentifier.system == system[:_WIDTH]] if system is not None else []),
                *([ExternalIdentifier.value == value[:_WIDTH]] if value is not None else []),
            )
            found = id_column.in_(kept)
            own = row(system, value)
            if own is not None:
                found = or_(own, found)
        return not_(found) if modifier == "not" else found

    return Param("identifier", "token", clause, documentation)
