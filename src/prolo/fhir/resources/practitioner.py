"""Practitioner <-> ``practitioner`` (clinicians of the clinic).

See: https://hl7.org/fhir/R4/practitioner.html

``identifier`` is the US NPI (``http://hl7.org/fhir/sid/us-npi``) when known;
``name`` one official name whose ``suffix`` holds the credentials (MD, DO, NP);
``active``. Practitioners are not in a patient's compartment; anyone of the clinic
with FHIR access may read them, only admins write them. No clinic service writes
practitioners yet, so writes are made here and audited.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, false, select

from prolo.clinic.models import Practitioner
from prolo.errors import Conflict
from prolo.fhir import codes
from prolo.fhir.errors import Unprocessable
from prolo.fhir.resources.base import (
    Context,
    Meta,
    Resource,
    TableMapping,
    audit_write,
    identifier_list,
    put,
)
from prolo.fhir.search import Param, string_param


def _active(value: str, modifier: str | None) -> ColumnElement[bool]:
    if value not in ("true", "false"):
        return false()
    return Practitioner.active.is_(value == "true")


class PractitionerMapping(TableMapping):
    type_name = "Practitioner"
    model = Practitioner
    readers = frozenset({"admin", "clinician", "front_desk", "patient"})
    writers = frozenset({"admin"})
    in_patient_compartment = False
    documentation = "A clinician of the clinic (NPI where known)."
    identifier_documentation = "The NPI or an identifier the practitioner was written with"

    def search_params(self) -> Sequence[Param]:
        return (
            string_param(
                "name", [Practitioner.family_name, Practitioner.given_name], "Family or given name"
            ),
            string_param("family", [Practitioner.family_name], "Family name"),
            Param("active", "token", _active, "Whether the practitioner is active"),
        )

    def identifier_clause(
        self, system: str | None, value: str | None
    ) -> ColumnElement[bool] | None:
        """The NPI, when the practitioner has one."""
        if system not in (None, codes.NPI):
            return None
        known = Practitioner.npi.is_not(None)  # never NULL: :not keeps those without
        return known if value is None else and_(known, Practitioner.npi == value)

    def patient_of(self, row: Any) -> int | None:
        return None

    def to_fhir(self, row: Any, meta: Meta) -> Resource:
        resource: Resource = {
            "resourceType": "Practitioner",
            "id": str(row.id),
            "meta": meta.as_fhir(),
        }
        identifiers = identifier_list(meta)
        if row.npi:
            identifiers.insert(0, {"system": codes.NPI, "value": row.npi})
        put(resource, "identifier", identifiers)
        resource["active"] = bool(row.active)
        name: dict[str, Any] = {
            "use": "official",
            "family": row.family_name,
            "given": [row.given_name],
        }
        if row.credentials:
            name["suffix"] = [row.credentials]
        resource["name"] = [name]
        return resource

    def _values(self, ctx: Context, resource: Resource) -> dict[str, Any]:
        names = [n for n in resource.get("name") or [] if isinstance(n, dict)]
        name = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
        given = " ".join(g for g in name.get("given") or [] if isinstance(g, str))
        if not name.get("family") or not given:
            raise Unprocessable(
                "Practitioner.name needs a family and a given name in prolo",
                expression=["Practitioner.name"],
            )
        npi = next(
            (
                str(i.get("value"))
                for i in resource.get("identifier") or []
                if isinstance(i, dict) and i.get("system") == codes.NPI and i.get("value")
            ),
            None,
        )
        if npi is not None and (len(npi) != 10 or not npi.isdigit()):
            raise Unprocessable("an NPI is 10 digits", expression=["Practitioner.identifier"])
        suffixes = [s for s in name.get("suffix") or [] if isinstance(s, str)]
        return {
            "given_name": given[:100],
            "family_name": str(name["family"])[:100],
            "credentials": suffixes[0][:40] if suffixes else None,
            "npi": npi,
            "active": resource.get("active", True) is not False,
        }

    def _check_npi(self, ctx: Context, npi: str | None, row_id: int | None) -> None:
        if npi is None:
            return
        holder = ctx.session.scalar(select(Practitioner.id).where(Practitioner.npi == npi))
        if holder is not None and holder != row_id:
            raise Conflict("this NPI already belongs to another practitioner")

    def create(self, ctx: Context, resource: Resource) -> Any:
        values = self._values(ctx, resource)
        self._check_npi(ctx, values["npi"], None)
        row = Practitioner(clinic_id=ctx.clinic_id, **values)
        ctx.session.add(row)
        ctx.session.flush()
        audit_write(
            ctx,
            action="C",
            event="practitioner.create",
            entity_type="Practitioner",
            entity_id=row.id,
        )
        return row

    def update(self, ctx: Context, row: Any, resource: Resource) -> Any:
        values = self._values(ctx, resource)
        self._check_npi(ctx, values["npi"], row.id)
        for key, value in values.items():
            setattr(row, key, value)
        audit_write(
            ctx,
            action="U",
            event="practitioner.update",
            entity_type="Practitioner",
            entity_id=row.id,
        )
        return row


MAPPING = PractitionerMapping()
