"""Observation <- ``score`` (a score computed from a questionnaire response).

See: https://hl7.org/fhir/R4/observation.html

- ``category`` ``survey`` (observation-category); ``status`` ``final``;
- ``code``: ``.../CodeSystem/instrument-score`` ``<instrument>.<score>`` with the
  score's name; for a single-item instrument whose Questionnaire carries a LOINC code
  (the pain NRS), the total is that item's value, so the LOINC code is added;
- ``valueQuantity`` with the UCUM unit ``{score}`` (the scale's range is not a
  reference range, so none is given);
- ``derivedFrom`` the QuestionnaireResponse; ``subject``; ``effectiveDateTime``.

Scores are computed by the instruments' scoring code when a response is submitted, so
a create whose ``code`` is one of prolo's instrument scores is refused (422: POST the
QuestionnaireResponse). One kind of Observation is taken from outside: a reading of a
single-item instrument whose Questionnaire carries a LOINC code, sent with that code and
no prolo score coding. Today that is the pain intensity 0-10 numeric rating, LOINC
72514-3 "Pain severity - 0-10 verbal numeric rating [Score] - Reported"
(https://loinc.org/72514-3, as linked by the HL7 Belgium Patient Monitoring IG's
ValueSet-pain-scale: https://build.fhir.org/ig/hl7-be/patient-monitoring/branches/main/en/ValueSet-pain-scale.html),
e.g. a pain score an EHR measured at a visit. It is recorded as a completed response to
prolo's own instrument (:func:`prolo.portal.service.submit_response`, which checks the
value, scores it and audits it): ``valueInteger`` or ``valueQuantity.value`` (a whole
number in the item's range) the answer, ``effectiveDateTime`` (or
``effectiveInstant``) when it was answered, ``subject`` the patient, ``basedOn`` a
CarePlan the course, timepoint ``ad_hoc``. The answer is the new score Observation,
``derivedFrom`` the response it made. ``status`` is ``final``, ``amended`` or
``corrected``. Observations are not updated (a score follows its response, and
responses are not updated through FHIR).

The identifiers such a reading arrives with are kept with its score
(:func:`prolo.fhir.service.remember_identifiers`) and shown on reads and searches; the
``identifier`` search parameter finds them, so ``If-None-Exist: identifier=system|value``
(or a Bundle entry's ``request.ifNoneExist``) returns the reading already recorded
instead of recording it twice, and a plain re-POST of the same identifier is a 409.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_

from prolo.fhir import codes
from prolo.fhir.errors import Unprocessable
from prolo.fhir.resources.base import (
    CREATE,
    READ,
    SEARCH,
    Context,
    Meta,
    Resource,
    TableMapping,
    check_code,
    check_patient_writable,
    fhir_datetime,
    identifier_list,
    instant,
    named_fields,
    put,
    pydantic_problem,
    ref,
    referenced_id,
)
from prolo.fhir.search import Param, date_param, reference_param, split_token
from prolo.portal.models import Score

SURVEY = codes.concept(codes.OBSERVATION_CATEGORY, "survey", "Survey")
# Observation.status, a required binding in R4:
# https://hl7.org/fhir/R4/valueset-observation-status.html
OBSERVATION_STATUSES = (
    "registered",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "cancelled",
    "entered-in-error",
    "unknown",
)
# The ones an outside reading is recorded with (the others are not a finished reading).
RECORDED_STATUSES = ("final", "amended", "corrected")


@cache
def score_info(instrument_id: str, key: str) -> tuple[str, float, float, str, str | None]:
    """(name, low, high, direction, LOINC code or None) of one score."""
    from prolo.instruments.catalog import instruments

    instrument = instruments().get(instrument_id)
    if instrument is None:
        return (f"{instrument_id} {key}", 0.0, 0.0, "", None)
    try:
        spec = instrument.spec(key)
    except KeyError:
        return (f"{instrument.short_name} {key}", 0.0, 0.0, "", None)
    loinc = instrument.loinc if key == "total" and len(instrument.item_ids) == 1 else None
    name = f"{instrument.short_name}: {spec.name}"
    return (name, spec.low, spec.high, spec.direction, loinc)


def _code(value: str, modifier: str | None) -> ColumnElement[bool]:
    system, code = split_token(value)
    if not code:
        return false()
    if system in (None, codes.PROLO_SCORE) and "." in code:
        instrument, _, key = code.partition(".")
        return and_(Score.instrument_id == instrument, Score.score_key == key)
    if system in (None, codes.LOINC):
        from prolo.instruments.catalog import instruments

        matching = [
            i.id for i in instruments().values() if i.loinc == code and len(i.item_ids) == 1
        ]
        if matching:
            return and_(Score.instrument_id.in_(matching), Score.score_key == "total")
    return false()


class ObservationMapping(TableMapping):
    type_name = "Observation"
    model = Score
    interactions = frozenset({READ, SEARCH, CREATE})
    writers = frozenset({"admin", "clinician", "patient"})
    documentation = (
        "An outcome score computed from a questionnaire response; a create takes an "
        "outside reading of a single-item instrument by its LOINC code (pain 0-10, "
        "72514-3) and records it as a response; the identifiers it arrives with are "
        "kept, so a conditional create on identifier records a reading once."
    )
    refusal = (
        "a score is derived from its QuestionnaireResponse; a draft response can be "
        "updated, a completed one is corrected by a new response"
    )

    def search_params(self) -> Sequence[Param]:
        return (
            reference_param("patient", Score.patient_id, "Patient", "The patient"),
            reference_param("subject", Score.patient_id, "Patient", "The patient"),
            reference_param(
                "derived-from", Score.response_id, "QuestionnaireResponse", "The response scored"
            ),
            Param("code", "token", _code, "<instrument>.<score>, or the LOINC code"),
            Param(
                "category",
                "token",
                lambda v, m: (
                    or_(Score.id.is_not(None)) if split_token(v)[1] == "survey" else false()
                ),
                "survey",
            ),
            date_param("date", Score.effective_at, "When the response was answered"),
        )

    def updated_column(self) -> Any:
        return Score.effective_at

    def to_fhir(self, row: Any, meta: Meta) -> Resource:
        name, _low, _high, _direction, loinc = score_info(row.instrument_id, row.score_key)
        resource: Resource = {
            "resourceType": "Observation",
            "id": str(row.id),
            "meta": meta.as_fhir(),
        }
        put(resource, "identifier", identifier_list(meta))
        resource["status"] = "final"
        resource["category"] = [SURVEY]
        coding = [codes.coding(codes.PROLO_SCORE, f"{row.instrument_id}.{row.score_key}", name)]
        if loinc:
            coding.append(codes.coding(codes.LOINC, loinc))
        resource["code"] = {"coding": coding, "text": name}
        resource["subject"] = ref("Patient", row.patient_id)
        resource["effectiveDateTime"] = instant(row.effective_at)
        resource["valueQuantity"] = {
            "value": row.value,
            "unit": "score",
            "system": codes.UCUM,
            "code": "{score}",
        }
        resource["derivedFrom"] = [ref("QuestionnaireResponse", row.response_id)]
        return resource

    def create(self, ctx: Context, resource: Resource) -> Any:
        """Record an outside reading as a response to prolo's instrument; its score row."""
        from pydantic import ValidationError
        from sqlalchemy import select

        from prolo.portal import service as portal
        from prolo.portal.schemas import ResponseIn

        # FHIR's own rules (a code outside its required value set, a malformed
        # dateTime: 400) before prolo's (422).
        status = resource.get("status")
        check_code(status, OBSERVATION_STATUSES, path="Observation.status")
        effective = resource.get("effectiveDateTime") or resource.get("effectiveInstant")
        authored_at = fhir_datetime(effective, path="Observation.effectiveDateTime")
        instrument_id, item_id = _measured_item(resource)
        if status not in RECORDED_STATUSES:
            said = "is missing" if status is None else f"{status!r} is not supported by prolo"
            raise Unprocessable(
                f"Observation.status {said}: only a final reading "
                f"({', '.join(RECORDED_STATUSES)}) is recorded",
                expression=["Observation.status"],
            )
        patient_id = referenced_id(
            ctx, resource.get("subject"), "Patient", path="Observation.subject"
        )
        check_patient_writable(ctx, patient_id, path="Observation.subject")
        if effective is None:
            raise Unprocessable(
                "Observation.effectiveDateTime: when the reading was taken is required",
                expression=["Observation.effective[x]"],
            )
        course_id = None
        for index, item in enumerate(resource.get("basedOn") or []):
            target = str((item or {}).get("reference", "")) if isinstance(item, dict) else ""
            if "CarePlan/" in ctx.resolved.get(target, target):
                path = f"Observation.basedOn[{index}]"
                course_id = referenced_id(ctx, item, "CarePlan", path=path)
        try:
            data = ResponseIn(
                answers={item_id: _value(resource)},
                instrument_id=instrument_id,
                timepoint="ad_hoc",
                status="completed",
                course_id=course_id,
                authored_at=authored_at,
            )
        except ValidationError as exc:
            raise pydantic_problem("Observation", exc, _FIELDS) from None
        with named_fields(_FIELDS):
            submitted = portal.submit_response(
                session=ctx.session, principal=ctx.principal, patient_id=patient_id, data=data
            )
        return ctx.session.scalars(
            select(Score).where(
                Score.response_id == submitted.response.id, Score.score_key == "total"
            )
        ).one()


_FIELDS = {
    "answers": "Observation.value[x]",
    "instrument_id": "Observation.code",
    "course_id": "Observation.basedOn",
    "authored_at": "Observation.effectiveDateTime",
}


def measured_instruments() -> dict[str, tuple[str, str]]:
    """LOINC code -> (instrument id, its one item's linkId), for single-item instruments
    whose Questionnaire carries a LOINC code (their total is that item's value)."""
    from prolo.instruments.catalog import instruments

    return {
        i.loinc: (i.id, i.item_ids[0])
        for i in instruments().values()
        if i.loinc and len(i.item_ids) == 1
    }


def _measured_item(resource: Resource) -> tuple[str, str]:
    """(instrument, linkId) an outside Observation's LOINC code names; 422 otherwise."""
    coding = [c for c in (resource.get("code") or {}).get("coding") or [] if isinstance(c, dict)]
    if any(c.get("system") == codes.PROLO_SCORE for c in coding):
        raise Unprocessable(
            "Observation.code: prolo's instrument scores are computed from the answers; "
            "POST the QuestionnaireResponse and its scores follow",
            expression=["Observation.code"],
        )
    known = measured_instruments()
    for c in coding:
        if c.get("system") == codes.LOINC and c.get("code") in known:
            return known[str(c["code"])]
    accepted = ", ".join(f"{codes.LOINC}|{code}" for code in sorted(known))
    raise Unprocessable(
        f"Observation.code: prolo records outside readings of {accepted} only (as a "
        "response to its own instrument); other observations have no place in prolo",
        expression=["Observation.code"],
    )


def _value(resource: Resource) -> int | float:
    """The reading: valueInteger, or valueQuantity.value as a number."""
    if isinstance(resource.get("valueInteger"), int):
        return int(resource["valueInteger"])
    quantity = resource.get("valueQuantity")
    value = quantity.get("value") if isinstance(quantity, dict) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value) if float(value).is_integer() else float(value)
    raise Unprocessable(
        "Observation.value[x]: the reading is a valueInteger or a valueQuantity with a value",
        expression=["Observation.value[x]"],
    )


MAPPING = ObservationMapping()
