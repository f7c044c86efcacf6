"""Observation <- ``score`` (a score computed from a questionnaire response).

See: https://hl7.org/fhir/R4/observation.html

- ``category`` ``survey`` (observation-category); ``status`` ``final``;
- ``code``: ``.../CodeSystem/instrument-score`` ``<instrument>.<score>`` with the
  score's name; for a single-item instrument whose Questionnaire carries a LOINC code
  (the pain NRS), the total is that item's value, so the LOINC code is added;
- ``valueQuantity`` with the UCUM unit ``{score}`` (the scale's range is not a
  reference range, so none is given);
- ``derivedFrom`` the QuestionnaireResponse; ``subject``; ``effectiveDateTime``.

Read and search only: scores are computed by the instruments' scoring code when a
response is submitted, never written by a client.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_

from prolo.fhir import codes
from prolo.fhir.resources.base import (
    READ,
    SEARCH,
    Meta,
    Resource,
    TableMapping,
    identifier_list,
    instant,
    put,
    ref,
)
from prolo.fhir.search import Param, date_param, reference_param, split_token
from prolo.portal.models import Score

SURVEY = codes.concept(codes.OBSERVATION_CATEGORY, "survey", "Survey")


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
    interactions = frozenset({READ, SEARCH})
    documentation = "An outcome score computed from a questionnaire response."

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


MAPPING = ObservationMapping()
