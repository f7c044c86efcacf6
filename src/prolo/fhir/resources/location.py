"""Location <-> ``room`` (the clinic's treatment rooms).

See: https://hl7.org/fhir/R4/location.html

A prolo Location is a room: ``physicalType`` ``ro`` (location-physical-type),
``mode`` instance, ``status`` active or inactive, ``name``. A Location of another
physical type (a whole hospital, a ward) has no counterpart in prolo and is refused
(the importer reports it). Only admins write rooms; no clinic service does yet, so
writes are made here and audited.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, false, select

from prolo.clinic.models import Room
from prolo.errors import Conflict
from prolo.fhir import codes
from prolo.fhir.errors import Unprocessable
from prolo.fhir.resources.base import (
    Context,
    Meta,
    Resource,
    TableMapping,
    audit_write,
    check_code,
    check_supported,
    identifier_list,
    put,
)
from prolo.fhir.search import Param, split_token, string_param

ROOM = codes.concept(codes.LOCATION_PHYSICAL_TYPE, "ro", "Room")
# Location.status, a required binding in R4:
# https://hl7.org/fhir/R4/valueset-location-status.html
LOCATION_STATUSES = ("active", "suspended", "inactive")


def _status(value: str, modifier: str | None) -> ColumnElement[bool]:
    _system, code = split_token(value)
    if code not in ("active", "inactive"):
        return false()
    return Room.active.is_(code == "active")


class LocationMapping(TableMapping):
    type_name = "Location"
    model = Room
    readers = frozenset({"admin", "clinician", "front_desk", "patient"})
    writers = frozenset({"admin"})
    in_patient_compartment = False
    documentation = "A treatment room of the clinic."

    def search_params(self) -> Sequence[Param]:
        return (
            string_param("name", [Room.name], "The room's name"),
            Param("status", "token", _status, "active | inactive"),
        )

    def patient_of(self, row: Any) -> int | None:
        return None

    def to_fhir(self, row: Any, meta: Meta) -> Resource:
        resource: Resource = {"resourceType": "Location", "id": str(row.id), "meta": meta.as_fhir()}
        put(resource, "identifier", identifier_list(meta))
        resource["status"] = "active" if row.active else "inactive"
        resource["name"] = row.name
        resource["mode"] = "instance"
        resource["physicalType"] = ROOM
        return resource

    def _values(self, ctx: Context, resource: Resource) -> dict[str, Any]:
        # FHIR's own rules (a code outside its required value set: 400) before prolo's (422).
        status = resource.get("status", "active")
        check_code(status, LOCATION_STATUSES, path="Location.status")
        physical = resource.get("physicalType")
        if physical is not None:
            kinds = {
                c.get("code")
                for c in (physical or {}).get("coding") or []
                if isinstance(c, dict) and c.get("system") == codes.LOCATION_PHYSICAL_TYPE
            }
            if "ro" not in kinds:
                raise Unprocessable(
                    "prolo's Locations are treatment rooms (physicalType ro)",
                    expression=["Location.physicalType"],
                )
        name = resource.get("name")
        if not isinstance(name, str) or not name.strip():
            raise Unprocessable("Location.name is required by prolo", expression=["Location.name"])
        check_supported(
            status,
            ("active", "inactive"),
            path="Location.status",
            why="a room is active or inactive in prolo",
        )
        return {"name": name.strip()[:100], "active": status == "active"}

    def _check_name(self, ctx: Context, name: str, row_id: int | None) -> None:
        holder = ctx.session.scalar(
            select(Room.id).where(Room.clinic_id == ctx.clinic_id, Room.name == name)
        )
        if holder is not None and holder != row_id:
            raise Conflict("the clinic has another room with this name")

    def create(self, ctx: Context, resource: Resource) -> Any:
        values = self._values(ctx, resource)
        self._check_name(ctx, values["name"], None)
        row = Room(clinic_id=ctx.clinic_id, **values)
        ctx.session.add(row)
        ctx.session.flush()
        audit_write(ctx, action="C", event="room.create", entity_type="Location", entity_id=row.id)
        return row

    def update(self, ctx: Context, row: Any, resource: Resource) -> Any:
        values = self._values(ctx, resource)
        self._check_name(ctx, values["name"], row.id)
        row.name, row.active = values["name"], values["active"]
        audit_write(ctx, action="U", event="room.update", entity_type="Location", entity_id=row.id)
        return row


MAPPING = LocationMapping()
