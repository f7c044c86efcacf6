"""QuestionnaireResponse <-> ``questionnaire_response`` (one answered instrument).

See: https://hl7.org/fhir/R4/questionnaireresponse.html

``questionnaire`` is the instrument Questionnaire's canonical URL; ``status``
``in-progress | completed``; ``subject``; ``authored``; ``basedOn`` the course
(CarePlan); the course timepoint (baseline, pre_session, week_6, ...) as an extension
(``.../StructureDefinition/questionnaire-timepoint``); the submission key, when the
portal stored one, as ``identifier``.

prolo stores each answer as the item's ordinal (``{linkId: value}``): a ``choice``
answer becomes the ``valueCoding`` whose ordinal it is, an ``integer`` item a
``valueInteger``, a ``decimal`` item a ``valueDecimal``; a blank answer is left out.
Read and search only until the portal's submission service (which scores a response
in the same transaction) lands.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, false

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
from prolo.fhir.search import Param, code_param, date_param, reference_param
from prolo.portal.models import QuestionnaireResponse

AnswerMap = dict[str, tuple[str, dict[float, dict[str, str]]]]


@cache
def answer_map(instrument_id: str) -> AnswerMap:
    """linkId -> (item type, {ordinal: Coding}) for one instrument (empty when unknown)."""
    from prolo.instruments.questionnaire import iter_items, load_questionnaire, questionnaire_items

    try:
        raw = load_questionnaire(instrument_id)
        items = questionnaire_items(instrument_id)
    except (FileNotFoundError, ValueError):
        return {}
    systems = {
        str(item["linkId"]): str(option["valueCoding"].get("system", ""))
        for item in iter_items(raw.get("item", []))
        for option in item.get("answerOption", [])[:1]
        if isinstance(option.get("valueCoding"), dict)
    }
    found: AnswerMap = {}
    for item in items:
        options = {
            option.ordinal: codes.coding(systems.get(item.link_id, ""), option.code, option.display)
            for option in item.options
        }
        found[item.link_id] = (item.type, options)
    return found


def questionnaire_url(instrument_id: str) -> str:
    from prolo.fhir.resources.questionnaire import all_questionnaires

    found = all_questionnaires().get(instrument_id)
    return str(found["url"]) if found else f"{codes.PROLO}/Questionnaire/{instrument_id}"


def answer(instrument_id: str, link_id: str, value: Any) -> dict[str, Any] | None:
    """The FHIR answer for one stored ordinal (None for a blank)."""
    if value is None or isinstance(value, bool):
        return None
    kind, options = answer_map(instrument_id).get(link_id, ("", {}))
    if kind == "choice" and float(value) in options:
        return {"valueCoding": options[float(value)]}
    if kind == "integer" or (not kind and isinstance(value, int)):
        return {"valueInteger": int(value)}
    return {"valueDecimal": float(value)}


def _questionnaire(value: str, modifier: str | None) -> ColumnElement[bool]:
    from prolo.fhir.resources.questionnaire import all_questionnaires

    text = value.strip()
    for iid, q in all_questionnaires().items():
        if text in (q["url"], f"Questionnaire/{iid}", iid):
            return QuestionnaireResponse.instrument_id == iid
    return false()


class QuestionnaireResponseMapping(TableMapping):
    type_name = "QuestionnaireResponse"
    model = QuestionnaireResponse
    interactions = frozenset({READ, SEARCH})
    documentation = "One answered outcome instrument."

    def search_params(self) -> Sequence[Param]:
        return (
            reference_param("patient", QuestionnaireResponse.patient_id, "Patient", "The patient"),
            reference_param("subject", QuestionnaireResponse.patient_id, "Patient", "The patient"),
            reference_param(
                "based-on", QuestionnaireResponse.course_id, "CarePlan", "The treatment course"
            ),
            Param("questionnaire", "reference", _questionnaire, "The instrument (canonical URL)"),
            code_param(
                "status",
                QuestionnaireResponse.status,
                "in-progress | completed",
                system="http://hl7.org/fhir/questionnaire-answers-status",
            ),
            date_param("authored", QuestionnaireResponse.authored_at, "When it was answered"),
        )

    def updated_column(self) -> Any:
        return QuestionnaireResponse.created_at

    def to_fhir(self, row: Any, meta: Meta) -> Resource:
        resource: Resource = {
            "resourceType": "QuestionnaireResponse",
            "id": str(row.id),
            "meta": meta.as_fhir(),
        }
        resource["extension"] = [{"url": codes.PROLO_TIMEPOINT_EXT, "valueCode": row.timepoint}]
        identifiers = identifier_list(meta)
        if row.idempotency_key:
            identifiers.insert(0, {"system": codes.QR_IDEMPOTENCY, "value": row.idempotency_key})
        if identifiers:
            resource["identifier"] = identifiers[0]  # 0..1 in R4
        if row.course_id:
            resource["basedOn"] = [ref("CarePlan", row.course_id)]
        resource["questionnaire"] = questionnaire_url(row.instrument_id)
        resource["status"] = row.status
        resource["subject"] = ref("Patient", row.patient_id)
        resource["authored"] = instant(row.authored_at)
        items = []
        for link_id, value in (row.answers or {}).items():
            found = answer(row.instrument_id, str(link_id), value)
            if found is not None:
                items.append({"linkId": str(link_id), "answer": [found]})
        put(resource, "item", items)
        return resource


MAPPING = QuestionnaireResponseMapping()
