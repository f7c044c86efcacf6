"""Patient <-> ``patient`` (demographics).

See: https://hl7.org/fhir/R4/patient.html

- ``identifier``: the clinic's MRN (system ``.../sid/clinic/{clinic}/mrn``, type MR
  from v2-0203), then any identifiers the patient was imported with;
- ``name``: one official name; ``gender`` is prolo's sex (administrative gender
  values); ``telecom`` email and phone; ``address`` one line, city, postal code.

Writes go through :mod:`prolo.patients.service` (registration, demographics update),
which checks the MRN and audits. prolo needs a family name and a birth date; a
missing gender is stored as ``unknown``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import ColumnElement, and_, false

from prolo.fhir import codes
from prolo.fhir.errors import Unprocessable
from prolo.fhir.resources.base import (
    CREATE,
    READ,
    SEARCH,
    UPDATE,
    Context,
    Ident,
    Meta,
    Resource,
    TableMapping,
    check_code,
    fhir_date,
    identifier_list,
    put,
    pydantic_problem,
)
from prolo.fhir.search import Param, code_param, date_param, string_param
from prolo.patients import service as patients
from prolo.patients.models import Patient
from prolo.patients.schemas import PatientIn

GENDERS = ("male", "female", "other", "unknown")
MR_TYPE = codes.concept(codes.IDENTIFIER_TYPE, "MR", "Medical record number")
_FIELDS = {
    "given_name": "Patient.name.given",
    "family_name": "Patient.name.family",
    "birth_date": "Patient.birthDate",
    "sex": "Patient.gender",
    "email": "Patient.telecom",
    "phone": "Patient.telecom",
    "address_line": "Patient.address.line",
    "city": "Patient.address.city",
    "postal_code": "Patient.address.postalCode",
    "mrn": "Patient.identifier",
}
_OPTIONAL = ("email", "phone", "address_line", "city", "postal_code")


class PatientMapping(TableMapping):
    type_name = "Patient"
    model = Patient
    interactions = frozenset({READ, SEARCH, CREATE, UPDATE})
    readers = frozenset({"admin", "clinician", "front_desk", "patient"})
    writers = frozenset({"admin", "clinician", "front_desk"})
    documentation = "A person treated at the clinic (demographics; the MRN is the identifier)."

    identifier_documentation = (
        "The clinic's MRN (its system, or any system) or an identifier the patient was written with"
    )

    def search_params(self) -> Sequence[Param]:
        return (
            string_param("name", [Patient.family_name, Patient.given_name], "Family or given name"),
            string_param("family", [Patient.family_name], "Family name"),
            string_param("given", [Patient.given_name], "Given name"),
            date_param("birthdate", Patient.birth_date, "Date of birth"),
            code_param(
                "gender",
                Patient.sex,
                "Administrative gender",
                system="http://hl7.org/fhir/administrative-gender",
            ),
            string_param("email", [Patient.email], "Email address"),
            string_param("address-city", [Patient.city], "City"),
            string_param("address-postalcode", [Patient.postal_code], "Postal code"),
        )

    def identifier_clause(
        self, system: str | None, value: str | None
    ) -> ColumnElement[bool] | None:
        """The MRN: any system, or a clinic's MRN system (``.../sid/clinic/{id}/mrn``)."""
        if system is None:
            return None if value is None else Patient.mrn == value
        prefix = f"{codes.PROLO}/sid/clinic/"
        if not (system.startswith(prefix) and system.endswith("/mrn")):
            return None
        clinic = system.removeprefix(prefix).removesuffix("/mrn")
        if not clinic.isdigit() or len(clinic) > 10:
            return false()
        same_clinic = Patient.clinic_id == int(clinic)
        return same_clinic if value is None else and_(same_clinic, Patient.mrn == value)

    def updated_column(self) -> Any:
        return Patient.updated_at

    def patient_of(self, row: Any) -> int | None:
        return int(row.id)

    def clinic_clause(self, clinic_id: Ident) -> ColumnElement[bool]:
        return Patient.clinic_id == clinic_id

    def patient_clause(self, patient_id: Ident) -> ColumnElement[bool]:
        return Patient.id == patient_id

    def patients_clause(self, patient_ids: Any) -> ColumnElement[bool]:
        return Patient.id.in_(patient_ids)

    def to_fhir(self, row: Any, meta: Meta) -> Resource:
        resource: Resource = {
            "resourceType": "Patient",
            "id": str(row.id),
            "meta": meta.as_fhir(),
            "identifier": [
                {
                    "use": "usual",
                    "type": MR_TYPE,
                    "system": codes.mrn_system(row.clinic_id),
                    "value": row.mrn,
                },
                *identifier_list(meta),
            ],
            "active": True,
            "name": [{"use": "official", "family": row.family_name, "given": [row.given_name]}],
            "gender": row.sex,
            "birthDate": row.birth_date.isoformat(),
        }
        telecom = []
        if row.phone:
            telecom.append({"system": "phone", "value": row.phone})
        if row.email:
            telecom.append({"system": "email", "value": row.email})
        put(resource, "telecom", telecom)
        address: dict[str, Any] = {}
        put(address, "line", [row.address_line] if row.address_line else None)
        put(address, "city", row.city)
        put(address, "postalCode", row.postal_code)
        put(resource, "address", [address] if address else None)
        return resource

    def _demographics(self, ctx: Context, resource: Resource) -> PatientIn:
        # FHIR's own rules (a code outside its required value set, a malformed
        # date: 400) before prolo's (a name or birth date prolo needs: 422).
        check_code(resource.get("gender"), GENDERS, path="Patient.gender")
        birth = fhir_date(resource.get("birthDate"), path="Patient.birthDate")
        names = [n for n in resource.get("name") or [] if isinstance(n, dict)]
        name = next((n for n in names if n.get("use") == "official"), None)
        name = name or next((n for n in names if n.get("use") in (None, "usual")), None)
        name = name or (names[0] if names else {})
        family = name.get("family")
        given = " ".join(g for g in name.get("given") or [] if isinstance(g, str))
        if not family or not given:
            raise Unprocessable(
                "Patient.name needs a family and a given name in prolo",
                expression=["Patient.name"],
            )
        if birth is None:
            raise Unprocessable(
                "Patient.birthDate is required by prolo", expression=["Patient.birthDate"]
            )
        telecom = [t for t in resource.get("telecom") or [] if isinstance(t, dict)]
        email = next((t.get("value") for t in telecom if t.get("system") == "email"), None)
        phone = next((t.get("value") for t in telecom if t.get("system") == "phone"), None)
        addresses = [a for a in resource.get("address") or [] if isinstance(a, dict)]
        address = addresses[0] if addresses else {}
        lines = [line for line in address.get("line") or [] if isinstance(line, str)]
        values: dict[str, Any] = {
            "mrn": self._own_mrn(ctx, resource),
            "given_name": given,
            "family_name": family,
            "birth_date": birth,
            "sex": resource.get("gender") or "unknown",
            "email": email,
            "phone": phone,
            "address_line": ", ".join(lines) or None,
            "city": address.get("city"),
            "postal_code": address.get("postalCode"),
        }
        try:
            return PatientIn(**values)
        except ValidationError as exc:
            if not ctx.lenient:
                raise pydantic_problem("Patient", exc, _FIELDS) from None
            bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
            if not bad <= set(_OPTIONAL):
                raise pydantic_problem("Patient", exc, _FIELDS) from None
            ctx.warnings.extend(f"Patient: dropped {_FIELDS[b]} (not valid for prolo)" for b in bad)
            try:
                return PatientIn(**{k: (None if k in bad else v) for k, v in values.items()})
            except ValidationError as again:
                raise pydantic_problem("Patient", again, _FIELDS) from None

    def _own_mrn(self, ctx: Context, resource: Resource) -> str | None:
        """The MRN when the resource carries an identifier in this clinic's MRN system."""
        system = codes.mrn_system(ctx.clinic_id)
        for ident in resource.get("identifier") or []:
            if isinstance(ident, dict) and ident.get("system") == system and ident.get("value"):
                return str(ident["value"])
        return None

    def create(self, ctx: Context, resource: Resource) -> Any:
        data = self._demographics(ctx, resource)
        return patients.register_patient(session=ctx.session, principal=ctx.principal, data=data)

    def update(self, ctx: Context, row: Any, resource: Resource) -> Any:
        data = self._demographics(ctx, resource)
        return patients.update_patient(
            session=ctx.session, principal=ctx.principal, patient_id=row.id, data=data
        )


MAPPING = PatientMapping()
