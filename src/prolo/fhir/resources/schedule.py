"""Schedule <- a practitioner's calendar (``practitioner`` and their working hours).

See: https://hl7.org/fhir/R4/schedule.html

Each practitioner has one Schedule with the same id: ``actor`` the Practitioner,
``active`` as the practitioner. Slots (free starts, computed by the scheduling
service from working hours, closures and bookings) hang off it. Read and search
only: working hours and closures are set on the calendar pages.
``meta.lastUpdated`` follows the practitioner row; a change of working hours alone
does not move it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, false

from prolo.clinic.models import Practitioner
from prolo.fhir.resources.base import (
    READ,
    SEARCH,
    Meta,
    Resource,
    TableMapping,
    ref,
)
from prolo.fhir.search import Param, reference_param


def _active(value: str, modifier: str | None) -> ColumnElement[bool]:
    if value not in ("true", "false"):
        return false()
    return Practitioner.active.is_(value == "true")


class ScheduleMapping(TableMapping):
    type_name = "Schedule"
    model = Practitioner
    interactions = frozenset({READ, SEARCH})
    readers = frozenset({"admin", "clinician", "front_desk", "patient"})
    writers = frozenset[str]()
    in_patient_compartment = False
    documentation = "A practitioner's calendar (one per practitioner; its Slots are free starts)."

    def search_params(self) -> Sequence[Param]:
        return (
            reference_param("actor", Practitioner.id, "Practitioner", "The practitioner"),
            Param("active", "token", _active, "Whether the practitioner is active"),
        )

    def patient_of(self, row: Any) -> int | None:
        return None

    def to_fhir(self, row: Any, meta: Meta) -> Resource:
        name = f"{row.given_name} {row.family_name}"
        return {
            "resourceType": "Schedule",
            "id": str(row.id),
            "meta": meta.as_fhir(),
            "active": bool(row.active),
            "actor": [{**(ref("Practitioner", row.id) or {}), "display": name}],
            "comment": f"Calendar of {name}; free starts are its Slots",
        }


MAPPING = ScheduleMapping()
