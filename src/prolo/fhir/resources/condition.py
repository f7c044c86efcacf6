"""Condition <-> ``diagnosis`` (the coded problem list).

See: https://hl7.org/fhir/R4/condition.html

- ``code``: one coding, ICD-10-CM (``http://hl7.org/fhir/sid/icd-10-cm``) or SNOMED CT
  (``http://snomed.info/sct``), with the display;
- ``clinicalStatus`` from condition-clinical (a write that gives one needs that coding,
  FHIR's binding being required; left out, it is active, or resolved when the Condition
  has abated); ``category`` problem-list-item (prolo's diagnoses are the chart's problem
  list); ``bodySite`` as text; ``onsetDateTime`` the onset date; ``recordedDate``;
- ``verificationStatus`` from condition-ver-status (a required binding): prolo records
  confirmed diagnoses only, so every diagnosis reads back ``confirmed``. The problem
  list is what screening (the condition preselected for a patient's screening), the
  procedure pre-check and course planning act on, and the ``diagnosis`` table has no
  verification column, so on a write:

  - ``confirmed`` is taken; left out, the diagnosis is taken as before (it then reads
    back ``confirmed``, which is what prolo's problem list means);
  - ``unconfirmed``, ``provisional`` and ``differential`` are a 422: prolo has no place
    for a diagnosis under consideration and would list it as confirmed;
  - ``refuted`` and ``entered-in-error`` are a 422: prolo would list a ruled-out or
    mistaken diagnosis on the problem list (a diagnosis entered in error is removed
    from the chart, not kept). Storing it as ``inactive`` or ``resolved`` instead would
    say the patient had the condition, so that is not done either;
  - a code outside the value set, or a verificationStatus without a condition-ver-status
    coding, is a 400 ``code-invalid``
    (:func:`~prolo.fhir.resources.base.required_concept_code`);
- the knowledge-base entry the code matched is an extension
  (``.../StructureDefinition/knowledge-condition``, the condition id).

Creates go through :func:`prolo.patients.service.add_diagnosis` (billable ICD-10-CM
codes only; SNOMED CT needs a display). No domain service updates a diagnosis yet, so
an update is written here, validated by the same schema and audited.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import ColumnElement, String, and_, false, literal

from prolo.codes import icd10cm_display
from prolo.fhir import codes
from prolo.fhir.errors import Unprocessable
from prolo.fhir.resources.base import (
    Context,
    Meta,
    Resource,
    TableMapping,
    audit_write,
    check_patient_writable,
    check_supported,
    concept_text,
    fhir_date,
    first_coding,
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
    code_param,
    date_param,
    reference_param,
    split_token,
)
from prolo.patients import service as patients
from prolo.patients.models import Diagnosis
from prolo.patients.schemas import DiagnosisIn

SYSTEMS = {"icd10cm": codes.ICD10CM, "snomed": codes.SNOMED}
# Condition.clinicalStatus, a CodeableConcept with a required binding in R4 (codes of
# codes.CONDITION_CLINICAL; codes.CONDITION_STATUSES maps each to prolo's status):
# https://hl7.org/fhir/R4/valueset-condition-clinical.html
CLINICAL_STATUSES = ("active", "recurrence", "relapse", "inactive", "remission", "resolved")
# Condition.verificationStatus, a CodeableConcept with a required binding in R4 (codes of
# codes.CONDITION_VER_STATUS): https://hl7.org/fhir/R4/valueset-condition-ver-status.html
VERIFICATION_STATUSES = (
    "unconfirmed",
    "provisional",
    "differential",
    "confirmed",
    "refuted",
    "entered-in-error",
)
CONFIRMED = codes.concept(codes.CONDITION_VER_STATUS, "confirmed", "Confirmed")
# Why each code prolo cannot keep is refused (the module docstring says more); the 422
# names it, so a sender (or the importer's report) knows what to do.
_NOT_CONFIRMED = (
    "prolo records confirmed diagnoses only and would list this one as confirmed on the "
    "problem list, which screening and course planning act on"
)
_WITHDRAWN = (
    "prolo would list a ruled-out or mistaken diagnosis on the problem list, which "
    "screening and course planning act on; one entered in error is removed from the chart"
)
_WHY_REFUSED = {
    "unconfirmed": _NOT_CONFIRMED,
    "provisional": _NOT_CONFIRMED,
    "differential": _NOT_CONFIRMED,
    "refuted": _WITHDRAWN,
    "entered-in-error": _WITHDRAWN,
}
PROBLEM_LIST = codes.concept(codes.CONDITION_CATEGORY, "problem-list-item", "Problem List Item")
_FIELDS = {
    "code": "Condition.code",
    "code_system": "Condition.code",
    "display": "Condition.code",
    "onset_date": "Condition.onsetDateTime",
    "body_site": "Condition.bodySite",
    "clinical_status": "Condition.clinicalStatus",
}


def _code_clause(value: str, modifier: str | None) -> ColumnElement[bool]:
    system, code = split_token(value)
    by_system = {v: k for k, v in SYSTEMS.items()}
    if system and system not in by_system:
        return false()
    clauses = []
    if system:
        clauses.append(Diagnosis.code_system == by_system[system])
    if code:
        clauses.append(
            Diagnosis.code == code.upper() if system != codes.SNOMED else Diagnosis.code == code
        )
    clause = and_(*clauses) if clauses else Diagnosis.id.is_not(None)
    return ~clause if modifier == "not" else clause


class ConditionMapping(TableMapping):
    type_name = "Condition"
    model = Diagnosis
    documentation = "A coded diagnosis on the problem list (ICD-10-CM or SNOMED CT)."

    def search_params(self) -> Sequence[Param]:
        return (
            reference_param("patient", Diagnosis.patient_id, "Patient", "Who has the condition"),
            reference_param("subject", Diagnosis.patient_id, "Patient", "Who has the condition"),
            Param("code", "token", _code_clause, "ICD-10-CM or SNOMED CT code"),
            # What reads return: the stored status (active, inactive or resolved; a
            # recurrence or remission written is kept as active or inactive and read back
            # so, so searching for those codes finds none).
            code_param(
                "clinical-status",
                Diagnosis.clinical_status,
                "active | inactive | resolved",
                system=codes.CONDITION_CLINICAL,
            ),
            # Every diagnosis reads back confirmed: confirmed finds them all, the rest none.
            code_param(
                "verification-status",
                literal("confirmed", String),
                "confirmed (prolo records confirmed diagnoses only)",
                system=codes.CONDITION_VER_STATUS,
            ),
            date_param("onset-date", Diagnosis.onset_date, "Date of onset"),
            date_param("recorded-date", Diagnosis.recorded_at, "When it was recorded"),
        )

    def updated_column(self) -> Any:
        return Diagnosis.recorded_at

    def to_fhir(self, row: Any, meta: Meta) -> Resource:
        resource: Resource = {
            "resourceType": "Condition",
            "id": str(row.id),
            "meta": meta.as_fhir(),
        }
        put(resource, "identifier", identifier_list(meta))
        if row.condition_id:
            resource["extension"] = [
                {"url": codes.PROLO_CONDITION_EXT, "valueString": row.condition_id}
            ]
        resource["clinicalStatus"] = codes.concept(codes.CONDITION_CLINICAL, row.clinical_status)
        resource["verificationStatus"] = CONFIRMED  # the only kind prolo keeps
        resource["category"] = [PROBLEM_LIST]
        resource["code"] = {
            "coding": [codes.coding(SYSTEMS[row.code_system], row.code, row.display)],
            "text": row.display,
        }
        if row.body_site:
            resource["bodySite"] = [{"text": row.body_site}]
        resource["subject"] = ref("Patient", row.patient_id)
        if row.onset_date:
            resource["onsetDateTime"] = row.onset_date.isoformat()
        resource["recordedDate"] = instant(row.recorded_at)
        return resource

    def _values(self, ctx: Context, resource: Resource) -> tuple[int, DiagnosisIn]:
        # FHIR's own rules (a code outside its required value set, a malformed date: 400)
        # before prolo's (422).
        clinical = required_concept_code(
            resource.get("clinicalStatus"),
            codes.CONDITION_CLINICAL,
            CLINICAL_STATUSES,
            path="Condition.clinicalStatus",
        )
        verification = required_concept_code(
            resource.get("verificationStatus"),
            codes.CONDITION_VER_STATUS,
            VERIFICATION_STATUSES,
            path="Condition.verificationStatus",
        )
        onset = resource.get("onsetDateTime") or (resource.get("onsetPeriod") or {}).get("start")
        onset_date = fhir_date(onset, path="Condition.onsetDateTime")
        # Never kept as something else: a diagnosis prolo keeps is a confirmed one.
        check_supported(
            verification,
            ("confirmed",),
            path="Condition.verificationStatus",
            why=_WHY_REFUSED.get(verification or "", ""),
        )
        patient_id = referenced_id(
            ctx, resource.get("subject"), "Patient", path="Condition.subject"
        )
        check_patient_writable(ctx, patient_id, path="Condition.subject")
        concept = resource.get("code")
        icd = first_coding(concept, codes.ICD10CM)
        snomed = first_coding(concept, codes.SNOMED)
        if icd is not None:
            system, code = "icd10cm", str(icd["code"])
            display = icd.get("display") or None
        elif snomed is not None:
            system, code = "snomed", str(snomed["code"])
            display = snomed.get("display") or concept_text(concept)
        else:
            raise Unprocessable(
                "Condition.code needs an ICD-10-CM or SNOMED CT coding",
                expression=["Condition.code"],
            )
        status = "active"
        if clinical is not None:
            status = codes.CONDITION_STATUSES[clinical]  # prolo keeps every FHIR code
        elif resource.get("abatementDateTime") or resource.get("abatementPeriod"):
            status = "resolved"
        sites = [s for s in resource.get("bodySite") or [] if isinstance(s, dict)]
        values = {
            "code_system": system,
            "code": code,
            "display": display if system == "snomed" else None,
            "body_site": concept_text(sites[0]) if sites else None,
            "onset_date": onset_date,
            "clinical_status": status,
        }
        try:
            return patient_id, DiagnosisIn(**values)
        except ValidationError as exc:
            raise pydantic_problem("Condition", exc, _FIELDS, default="Condition.code") from None

    def create(self, ctx: Context, resource: Resource) -> Any:
        patient_id, data = self._values(ctx, resource)
        return patients.add_diagnosis(
            session=ctx.session, principal=ctx.principal, patient_id=patient_id, data=data
        )

    def update(self, ctx: Context, row: Any, resource: Resource) -> Any:
        from prolo.knowledge.loader import conditions_for_icd10

        patient_id, data = self._values(ctx, resource)
        if patient_id != row.patient_id:
            raise Unprocessable(
                "Condition.subject cannot move to another patient", expression=["Condition.subject"]
            )
        display = data.display or (
            icd10cm_display(data.code) if data.code_system == "icd10cm" else row.display
        )
        matches = conditions_for_icd10(data.code) if data.code_system == "icd10cm" else []
        row.code_system = data.code_system
        row.code = data.code
        row.display = display
        row.body_site = data.body_site
        row.onset_date = data.onset_date
        row.clinical_status = data.clinical_status
        row.condition_id = matches[0].id if matches else None
        audit_write(
            ctx,
            action="U",
            event="diagnosis.update",
            entity_type="Condition",
            entity_id=row.id,
            patient_id=row.patient_id,
        )
        return row


MAPPING = ConditionMapping()
