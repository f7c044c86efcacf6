"""AllergyIntolerance <-> ``allergy``.

See: https://hl7.org/fhir/R4/allergyintolerance.html

prolo records the substance as text (no code system is kept), the reaction as text
and the criticality (``low | high | unable-to-assess``, the FHIR value set). The chart
lists current allergies only, and the procedure pre-check acts on every one of them
(an allergy naming the injectate's solution or anaesthetic counts as that allergy);
entries made in error are removed. So, on a write:

- ``clinicalStatus`` (allergyintolerance-clinical, a required binding): ``active`` is
  taken; ``inactive`` and ``resolved`` are a 422, since prolo has no place for an
  allergy that no longer applies and would list it as current. Left out, the allergy is
  current, as before. It always reads back ``active``.
- ``verificationStatus`` (allergyintolerance-verification, a required binding):
  ``confirmed`` and ``unconfirmed`` are kept (the ``verification_status`` column) and
  read back the same; an unconfirmed allergy stays on the chart, marked so, because a
  suspected allergy to an injectate component is still one to act on. ``refuted`` and
  ``entered-in-error`` are a 422: prolo would list the allergy as current. Left out,
  nothing is recorded and none is read back (as for allergies added on the chart).
- A code outside either value set, or a status without a coding of its system, is a
  400 ``code-invalid`` (:func:`~prolo.fhir.resources.base.required_concept_code`).

Creates go through :func:`prolo.patients.service.add_allergy`; an update is written
here and audited (no domain service updates an allergy yet).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import ColumnElement, String, func, literal

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
    check_supported,
    concept_text,
    identifier_list,
    instant,
    put,
    pydantic_problem,
    ref,
    referenced_id,
    required_concept_code,
)
from prolo.fhir.search import (
    Param,
    SearchError,
    code_param,
    date_param,
    reference_param,
    split_token,
    string_param,
)
from prolo.patients import service as patients
from prolo.patients.models import ALLERGY_VERIFICATIONS, Allergy
from prolo.patients.schemas import AllergyIn

# AllergyIntolerance.clinicalStatus, a CodeableConcept with a required binding in R4:
# https://hl7.org/fhir/R4/valueset-allergyintolerance-clinical.html
CLINICAL_STATUSES = ("active", "inactive", "resolved")
# AllergyIntolerance.verificationStatus, a CodeableConcept with a required binding in R4:
# https://hl7.org/fhir/R4/valueset-allergyintolerance-verification.html
VERIFICATION_STATUSES = ("unconfirmed", "confirmed", "refuted", "entered-in-error")
VERIFICATION_DISPLAY = {"confirmed": "Confirmed", "unconfirmed": "Unconfirmed"}
_FIELDS = {
    "substance": "AllergyIntolerance.code",
    "reaction": "AllergyIntolerance.reaction",
    "criticality": "AllergyIntolerance.criticality",
    "verification_status": "AllergyIntolerance.verificationStatus",
}


def _substance(value: str, modifier: str | None) -> ColumnElement[bool]:
    """``code=lidocaine`` matches the substance text exactly, ``code:text=lido`` its start."""
    _system, code = split_token(value)
    text = (code or "").strip().lower()
    if modifier == "text":
        return string_param("code", [Allergy.substance], "").build(text, None)
    if modifier is not None:
        raise SearchError(f"code: modifier :{modifier} is not supported")
    return func.lower(Allergy.substance) == text


class AllergyIntoleranceMapping(TableMapping):
    type_name = "AllergyIntolerance"
    model = Allergy
    documentation = "An allergy or intolerance; the substance is free text."

    def search_params(self) -> Sequence[Param]:
        return (
            reference_param("patient", Allergy.patient_id, "Patient", "Who has the allergy"),
            Param("code", "token", _substance, "The substance (prolo keeps it as text)"),
            code_param(
                "criticality",
                Allergy.criticality,
                "low | high | unable-to-assess",
                system="http://hl7.org/fhir/allergy-intolerance-criticality",
            ),
            # What reads return: every allergy reads back active.
            code_param(
                "clinical-status",
                literal("active", String),
                "active (the chart lists current allergies only)",
                system=codes.ALLERGY_CLINICAL,
            ),
            # confirmed | unconfirmed as kept; an allergy with none recorded has none.
            code_param(
                "verification-status",
                Allergy.verification_status,
                "confirmed | unconfirmed",
                system=codes.ALLERGY_VERIFICATION,
                nullable=True,
            ),
            date_param("date", Allergy.recorded_at, "When it was recorded"),
        )

    def updated_column(self) -> Any:
        return Allergy.recorded_at

    def to_fhir(self, row: Any, meta: Meta) -> Resource:
        resource: Resource = {
            "resourceType": "AllergyIntolerance",
            "id": str(row.id),
            "meta": meta.as_fhir(),
        }
        put(resource, "identifier", identifier_list(meta))
        resource["clinicalStatus"] = codes.concept(codes.ALLERGY_CLINICAL, "active", "Active")
        if row.verification_status:
            resource["verificationStatus"] = codes.concept(
                codes.ALLERGY_VERIFICATION,
                row.verification_status,
                VERIFICATION_DISPLAY[row.verification_status],
            )
        resource["criticality"] = row.criticality
        resource["code"] = {"text": row.substance}
        resource["patient"] = ref("Patient", row.patient_id)
        resource["recordedDate"] = instant(row.recorded_at)
        if row.reaction:
            resource["reaction"] = [{"manifestation": [{"text": row.reaction}]}]
        return resource

    def _values(self, ctx: Context, resource: Resource) -> tuple[int, AllergyIn]:
        # FHIR's own rules (codes outside their required value sets: 400) before prolo's (422).
        clinical = required_concept_code(
            resource.get("clinicalStatus"),
            codes.ALLERGY_CLINICAL,
            CLINICAL_STATUSES,
            path="AllergyIntolerance.clinicalStatus",
        )
        verification = required_concept_code(
            resource.get("verificationStatus"),
            codes.ALLERGY_VERIFICATION,
            VERIFICATION_STATUSES,
            path="AllergyIntolerance.verificationStatus",
        )
        check_code(
            resource.get("criticality"),
            ("low", "high", "unable-to-assess"),
            path="AllergyIntolerance.criticality",
        )
        # Never kept as something else: the chart would list it as a current allergy.
        check_supported(
            clinical,
            ("active",),
            path="AllergyIntolerance.clinicalStatus",
            why="the chart lists current allergies only and would show this one as active; "
            "an allergy that no longer applies is removed from the chart",
        )
        check_supported(
            verification,
            ALLERGY_VERIFICATIONS,  # the codes the chart keeps (the column's values)
            path="AllergyIntolerance.verificationStatus",
            why="prolo keeps confirmed and unconfirmed allergies and would list this one as "
            "a current allergy; an allergy ruled out or entered in error is removed from "
            "the chart",
        )
        patient_id = referenced_id(
            ctx, resource.get("patient"), "Patient", path="AllergyIntolerance.patient"
        )
        check_patient_writable(ctx, patient_id, path="AllergyIntolerance.patient")
        substance = concept_text(resource.get("code"))
        if not substance:
            raise Unprocessable(
                "AllergyIntolerance.code needs a text or a display naming the substance",
                expression=["AllergyIntolerance.code"],
            )
        reaction = None
        for item in resource.get("reaction") or []:
            for manifestation in (item or {}).get("manifestation") or []:
                reaction = reaction or concept_text(manifestation)
        try:
            return patient_id, AllergyIn(
                substance=substance[:200],
                reaction=reaction[:200] if reaction else None,
                criticality=resource.get("criticality") or "unable-to-assess",
                verification_status=verification,
            )
        except ValidationError as exc:
            raise pydantic_problem("AllergyIntolerance", exc, _FIELDS) from None

    def create(self, ctx: Context, resource: Resource) -> Any:
        patient_id, data = self._values(ctx, resource)
        return patients.add_allergy(
            session=ctx.session, principal=ctx.principal, patient_id=patient_id, data=data
        )

    def update(self, ctx: Context, row: Any, resource: Resource) -> Any:
        patient_id, data = self._values(ctx, resource)
        if patient_id != row.patient_id:
            raise Unprocessable(
                "AllergyIntolerance.patient cannot move to another patient",
                expression=["AllergyIntolerance.patient"],
            )
        row.substance, row.reaction, row.criticality, row.verification_status = (
            data.substance,
            data.reaction,
            data.criticality,
            data.verification_status,
        )
        audit_write(
            ctx,
            action="U",
            event="allergy.update",
            entity_type="AllergyIntolerance",
            entity_id=row.id,
            patient_id=row.patient_id,
        )
        return row


MAPPING = AllergyIntoleranceMapping()
