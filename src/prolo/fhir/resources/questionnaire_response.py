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
A create goes through :func:`prolo.portal.service.submit_response`, which checks each
answer against the instrument and stores a completed response with its scores in the
same transaction: ``valueCoding`` answers become their ordinals, numbers stay numbers,
the ``questionnaire`` canonical names the instrument, ``basedOn`` the course, the
timepoint extension the timepoint (default ``ad_hoc``); an identifier in
``.../sid/questionnaire-response-key`` is the submission key, so a retry is not stored
twice.

An update (PUT) follows the portal's draft rules (:func:`prolo.portal.service.update_draft`):
an ``in-progress`` response takes new answers and may be completed (then scored, with
``authored`` set to the time of completion, as in the portal); its subject,
questionnaire, course and timepoint are fixed (422 naming the element). A completed
response has scores derived from its answers and can no longer change: the same
content again (a read resource put back) is accepted and changes nothing; anything
else is a 409. A correction is a new response.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from pydantic import ValidationError
from sqlalchemy import ColumnElement, and_, false

from prolo.errors import Conflict
from prolo.fhir import codes
from prolo.fhir.errors import Unprocessable
from prolo.fhir.resources.base import (
    CREATE,
    READ,
    SEARCH,
    UPDATE,
    Context,
    Meta,
    Resource,
    TableMapping,
    audit_unchanged,
    check_code,
    check_supported,
    fhir_datetime,
    identifier_list,
    instant,
    named_fields,
    put,
    pydantic_problem,
    ref,
    referenced_id,
)
from prolo.fhir.search import Param, code_param, date_param, reference_param
from prolo.portal.models import QuestionnaireResponse

AnswerMap = dict[str, tuple[str, dict[float, dict[str, str]]]]
# QuestionnaireResponse.status, a required binding in R4:
# https://hl7.org/fhir/R4/valueset-questionnaire-answers-status.html
FHIR_STATUSES = ("in-progress", "completed", "amended", "entered-in-error", "stopped")


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
    interactions = frozenset({READ, SEARCH, CREATE, UPDATE})
    writers = frozenset({"admin", "clinician", "patient"})
    documentation = (
        "One answered outcome instrument: scored when completed; a draft may be updated "
        "until it is completed"
    )
    identifier_documentation = (
        "The submission key (.../sid/questionnaire-response-key, unique per patient) or an "
        "identifier the response was written with"
    )

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

    def identifier_clause(
        self, system: str | None, value: str | None
    ) -> ColumnElement[bool] | None:
        """The submission key, when the response has one."""
        if system not in (None, codes.QR_IDEMPOTENCY):
            return None
        key = QuestionnaireResponse.idempotency_key
        known = key.is_not(None)  # never NULL: :not keeps responses without one
        return known if value is None else and_(known, key == value)

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

    def create(self, ctx: Context, resource: Resource) -> Any:
        """Submit (and score) through the portal service."""
        from prolo.portal import service as portal

        patient_id, data = self._values(ctx, resource)
        with named_fields(_FIELDS):
            submitted = portal.submit_response(
                session=ctx.session, principal=ctx.principal, patient_id=patient_id, data=data
            )
        return submitted.response

    def update(self, ctx: Context, row: Any, resource: Resource) -> Any:
        """Save or complete a draft through the portal service; a completed one is fixed."""
        from prolo.portal import service as portal
        from prolo.portal.schemas import DraftUpdateIn

        # FHIR's own rules (a code outside its required value set: 400) before prolo's (422).
        check_code(resource.get("status"), FHIR_STATUSES, path="QuestionnaireResponse.status")
        canonical = str(resource.get("questionnaire") or "").split("|")[0]
        if canonical != questionnaire_url(row.instrument_id):
            # Checked before the answers, which would be read against the wrong items.
            raise _fixed("questionnaire")
        patient_id, data = self._values(ctx, resource)
        fixed = (
            ("subject", patient_id, row.patient_id),
            ("questionnaire", data.instrument_id, row.instrument_id),
            ("basedOn", data.course_id, row.course_id),
            ("extension", data.timepoint, row.timepoint),
        )
        for element, given, stored in fixed:
            if given != stored:
                raise _fixed(element)
        if row.status == "completed":
            given_answers = {k: v for k, v in data.answers.items() if v is not None}
            stored_answers = {k: v for k, v in (row.answers or {}).items() if v is not None}
            if data.status == "completed" and given_answers == stored_answers:
                audit_unchanged(ctx, "QuestionnaireResponse", "questionnaire.read", row)
                return row
            raise Conflict(
                "this response is completed and scored; it can no longer change "
                "(submit a new response to correct it)"
            )
        with named_fields(_FIELDS):
            return portal.update_draft(
                session=ctx.session,
                principal=ctx.principal,
                patient_id=row.patient_id,
                response_id=row.id,
                data=DraftUpdateIn(answers=data.answers, status=data.status),
            )

    def _values(self, ctx: Context, resource: Resource) -> tuple[int, Any]:
        """The patient id and the portal's ``ResponseIn`` for ``resource`` (422 naming
        the element when it does not fit)."""
        from prolo.fhir.resources.questionnaire import by_url
        from prolo.portal.schemas import ResponseIn

        # FHIR's own rules (a code outside its required value set, a malformed dateTime:
        # 400) before prolo's (422).
        status = resource.get("status")
        check_code(status, FHIR_STATUSES, path="QuestionnaireResponse.status")
        authored_at = fhir_datetime(resource.get("authored"), path="QuestionnaireResponse.authored")
        patient_id = referenced_id(
            ctx, resource.get("subject"), "Patient", path="QuestionnaireResponse.subject"
        )
        canonical = str(resource.get("questionnaire") or "").split("|")[0]
        questionnaire = by_url().get(canonical)
        if questionnaire is None:
            raise Unprocessable(
                "QuestionnaireResponse.questionnaire must be the canonical URL of one of "
                "this server's Questionnaires",
                expression=["QuestionnaireResponse.questionnaire"],
            )
        instrument_id = str(questionnaire["id"])
        answers: dict[str, Any] = {}
        for index, item in enumerate(iter_answer_items(resource.get("item") or [])):
            link_id = str(item.get("linkId"))
            values = [a for a in item.get("answer") or [] if isinstance(a, dict)]
            answers[link_id] = (
                ordinal(instrument_id, link_id, values[0], index=index) if values else None
            )
        course_id = None
        for reference in resource.get("basedOn") or []:
            course_id = referenced_id(
                ctx, reference, "CarePlan", path="QuestionnaireResponse.basedOn"
            )
        timepoint = next(
            (
                e.get("valueCode")
                for e in resource.get("extension") or []
                if isinstance(e, dict) and e.get("url") == codes.PROLO_TIMEPOINT_EXT
            ),
            "ad_hoc",
        )
        raw_ident = resource.get("identifier")
        ident: dict[str, Any] = raw_ident if isinstance(raw_ident, dict) else {}
        key = ident.get("value") if ident.get("system") == codes.QR_IDEMPOTENCY else None
        check_supported(
            status,
            ("in-progress", "completed"),
            path="QuestionnaireResponse.status",
            why="a response is in-progress or completed; a completed one is scored and "
            "fixed, so submit a new response to correct it",
        )
        try:
            data = ResponseIn(
                answers=answers,
                instrument_id=instrument_id,
                timepoint=timepoint,
                status=status,
                course_id=course_id,
                authored_at=authored_at,
                idempotency_key=key,
            )
        except ValidationError as exc:
            raise pydantic_problem("QuestionnaireResponse", exc, _FIELDS) from None
        return patient_id, data


def _fixed(element: str) -> Unprocessable:
    return Unprocessable(
        f"QuestionnaireResponse.{element} cannot change once stored; submit a new response instead",
        expression=[f"QuestionnaireResponse.{element}"],
    )


_FIELDS = {
    "answers": "QuestionnaireResponse.item",
    "instrument_id": "QuestionnaireResponse.questionnaire",
    "timepoint": "QuestionnaireResponse.extension",
    "status": "QuestionnaireResponse.status",
    "course_id": "QuestionnaireResponse.basedOn",
    "authored_at": "QuestionnaireResponse.authored",
    "idempotency_key": "QuestionnaireResponse.identifier",
}


def iter_answer_items(items: list[Any]) -> Any:
    """Answered items at any depth (groups hold items of their own)."""
    for item in items:
        if not isinstance(item, dict):
            continue
        if item.get("answer"):
            yield item
        yield from iter_answer_items(item.get("item") or [])


def ordinal(instrument_id: str, link_id: str, value: dict[str, Any], *, index: int) -> Any:
    """The stored value of one FHIR answer: a coding's ordinal, or the number itself."""
    kind, options = answer_map(instrument_id).get(link_id, ("", {}))
    path = f"QuestionnaireResponse.item[{index}].answer"
    if "valueCoding" in value:
        coding = value["valueCoding"] or {}
        for number, option in options.items():
            if option["code"] == str(coding.get("code")) and option["system"] in (
                coding.get("system"),
                "",
            ):
                return number
        raise Unprocessable(
            f"{link_id}: answer code {coding.get('code')!r} is not an option of this item",
            expression=[path],
        )
    for key in ("valueInteger", "valueDecimal"):
        if key in value:
            return value[key]
    raise Unprocessable(
        f"{link_id}: answers are valueCoding, valueInteger or valueDecimal", expression=[path]
    )


MAPPING = QuestionnaireResponseMapping()
