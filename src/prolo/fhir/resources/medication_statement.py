"""MedicationStatement <-> ``medication`` (what the patient takes).

See: https://hl7.org/fhir/R4/medicationstatement.html

``medicationCodeableConcept`` carries the RxNorm code when prolo has one, and the
name as text; ``status`` is ``active | stopped | on-hold`` (prolo's statuses are a
subset of the FHIR ones); ``dosage.text`` the dose; ``dateAsserted`` when it was
recorded.

Creates go through :func:`prolo.patients.service.add_medication`. The free-text note
has no service field, so it is set on the new row here; an update is written here
and audited (no domain service updates a medication yet).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from prolo.fhir import codes
from prolo.fhir.errors import Unprocessable
from prolo.fhir.resources.base import (
    Context,
    Meta,
    Resource,
    TableMapping,
    audit_write,
    check_code,
    check_patient_writable,
    concept_text,
    first_coding,
    identifier_list,
    instant,
    put,
    pydantic_problem,
    ref,
    referenced_id,
)
from prolo.fhir.search import Param, code_param, date_param, reference_param
from prolo.patients import service as patients
from prolo.patients.models import Medication
from prolo.patients.schemas import MedicationIn

# FHIR MedicationStatement.status -> prolo status (completed: the patient no longer takes it)
STATUSES = {"active": "active", "stopped": "stopped", "completed": "stopped", "on-hold": "on-hold"}
FHIR_STATUSES = {
    "MedicationStatement": (
        "active",
        "completed",
        "entered-in-error",
        "intended",
        "stopped",
        "on-hold",
        "unknown",
        "not-taken",
    ),
    "MedicationRequest": (
        "active",
        "on-hold",
        "cancelled",
        "completed",
        "entered-in-error",
        "stopped",
        "draft",
        "unknown",
    ),
}
_FIELDS = {
    "name": "MedicationStatement.medicationCodeableConcept",
    "rxnorm": "MedicationStatement.medicationCodeableConcept.coding",
    "dose": "MedicationStatement.dosage.text",
    "status": "MedicationStatement.status",
}


def medication_values(resource: Resource, *, concept_key: str, dosage_key: str) -> dict[str, Any]:
    """Name, RxNorm code, dose and status from a MedicationStatement or MedicationRequest."""
    kind = resource.get("resourceType")
    # FHIR's own rules (a code outside its required value set: 400) before prolo's (422).
    check_code(resource.get("status"), FHIR_STATUSES[str(kind)], path=f"{kind}.status")
    concept = resource.get(concept_key)
    name = concept_text(concept)
    if not name:
        raise Unprocessable(
            f"{kind}.{concept_key} needs a text or a display naming the medication",
            expression=[f"{kind}.{concept_key}"],
        )
    rx = first_coding(concept, codes.RXNORM)
    status = STATUSES.get(str(resource.get("status")))
    if status is None:
        raise Unprocessable(
            f"{kind}.status {resource.get('status')!r} has no counterpart in prolo "
            "(active, stopped, completed or on-hold)",
            expression=[f"{kind}.status"],
        )
    dosages = [d for d in resource.get(dosage_key) or [] if isinstance(d, dict)]
    dose = dosages[0].get("text") if dosages else None
    return {
        "name": name[:200],
        "rxnorm": str(rx["code"]) if rx else None,
        "dose": str(dose)[:100] if dose else None,
        "status": status,
    }


class MedicationStatementMapping(TableMapping):
    type_name = "MedicationStatement"
    model = Medication
    documentation = "A medication the patient takes (RxNorm where known)."

    def search_params(self) -> Sequence[Param]:
        return (
            reference_param("patient", Medication.patient_id, "Patient", "Who takes it"),
            reference_param("subject", Medication.patient_id, "Patient", "Who takes it"),
            code_param("code", Medication.rxnorm, "RxNorm code", system=codes.RXNORM),
            code_param(
                "status",
                Medication.status,
                "active | stopped | on-hold",
                system="http://hl7.org/fhir/CodeSystem/medication-statement-status",
                to_db=lambda c: STATUSES.get(c) if c != "completed" else None,
            ),
            date_param("effective", Medication.recorded_at, "When it was recorded"),
        )

    def updated_column(self) -> Any:
        return Medication.recorded_at

    def to_fhir(self, row: Any, meta: Meta) -> Resource:
        resource: Resource = {
            "resourceType": "MedicationStatement",
            "id": str(row.id),
            "meta": meta.as_fhir(),
        }
        put(resource, "identifier", identifier_list(meta))
        resource["status"] = row.status
        concept: dict[str, Any] = {"text": row.name}
        if row.rxnorm:
            concept["coding"] = [codes.coding(codes.RXNORM, row.rxnorm, row.name)]
        resource["medicationCodeableConcept"] = concept
        resource["subject"] = ref("Patient", row.patient_id)
        resource["dateAsserted"] = instant(row.recorded_at)
        if row.note:
            resource["note"] = [{"text": row.note}]
        if row.dose:
            resource["dosage"] = [{"text": row.dose}]
        return resource

    def _values(self, ctx: Context, resource: Resource) -> tuple[int, MedicationIn, str | None]:
        # First, as it checks the status against FHIR's value set (400) before prolo's rules.
        values = medication_values(
            resource, concept_key="medicationCodeableConcept", dosage_key="dosage"
        )
        patient_id = referenced_id(
            ctx, resource.get("subject"), "Patient", path="MedicationStatement.subject"
        )
        check_patient_writable(ctx, patient_id, path="MedicationStatement.subject")
        notes = [n.get("text") for n in resource.get("note") or [] if isinstance(n, dict)]
        note = "\n".join(str(n) for n in notes if n) or None
        try:
            return patient_id, MedicationIn(**values), note
        except ValidationError as exc:
            raise pydantic_problem("MedicationStatement", exc, _FIELDS) from None

    def create(self, ctx: Context, resource: Resource) -> Any:
        patient_id, data, note = self._values(ctx, resource)
        row = patients.add_medication(
            session=ctx.session, principal=ctx.principal, patient_id=patient_id, data=data
        )
        row.note = note
        return row

    def update(self, ctx: Context, row: Any, resource: Resource) -> Any:
        patient_id, data, note = self._values(ctx, resource)
        if patient_id != row.patient_id:
            raise Unprocessable(
                "MedicationStatement.subject cannot move to another patient",
                expression=["MedicationStatement.subject"],
            )
        for key, value in data.model_dump().items():
            setattr(row, key, value)
        row.note = note
        audit_write(
            ctx,
            action="U",
            event="medication.update",
            entity_type="MedicationStatement",
            entity_id=row.id,
            patient_id=row.patient_id,
        )
        return row


MAPPING = MedicationStatementMapping()
