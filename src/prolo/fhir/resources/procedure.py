"""Procedure <-> ``procedure`` (the record of one injection session).

See: https://hl7.org/fhir/R4/procedure.html

``code`` is prolo's ``prolotherapy-injection-session`` (``.../CodeSystem/procedure``:
no standard code for a prolotherapy session was found in an authoritative place, so
none is claimed); ``status`` ``completed`` for a signed (or amended) record,
``in-progress`` for a draft; ``performedDateTime``; ``performer`` the practitioner;
``basedOn`` the course (CarePlan); ``bodySite`` the injection sites (the clinic's site
list label and side); ``usedCode`` the injectate as documented; ``complication`` the
immediate adverse events; the appointment, and the record an amendment corrects, as
extensions; ``note``.

Read and search only: prolo is where injection sessions are documented and signed;
a signed record never changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, false, func

from prolo.courses.models import Procedure
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

STATUS = {"draft": "in-progress", "signed": "completed"}
SESSION = codes.concept(
    codes.PROLO_PROCEDURE, "prolotherapy-injection-session", "Prolotherapy injection session"
)


def _status(value: str, modifier: str | None) -> ColumnElement[bool]:
    _system, code = split_token(value)
    stored = [k for k, v in STATUS.items() if v == code]
    clause = Procedure.status.in_(stored) if stored else false()
    return ~clause if modifier == "not" else clause


def _site_text(site: Any) -> str:
    if not isinstance(site, dict):
        return str(site)
    site_id = str(site.get("site_id", ""))
    label = site_id
    try:
        from prolo.courses.procedures import load_injection_sites

        found = load_injection_sites().site(site_id)
        label = found.label if found is not None else site_id
    except (ImportError, ValueError, OSError):
        pass
    side = site.get("side")
    return f"{label} ({side})" if side and side not in ("midline", "none") else label


def _injectate_text(injectate: Any) -> str | None:
    if not isinstance(injectate, dict) or not injectate.get("solution"):
        return None
    text = f"{injectate['solution']} {injectate.get('concentration_percent', '')}%".strip()
    if injectate.get("anaesthetic"):
        strength = injectate.get("anaesthetic_concentration_percent")
        text += f" with {injectate['anaesthetic']}" + (f" {strength}%" if strength else "")
    if injectate.get("total_volume_ml"):
        text += f", {injectate['total_volume_ml']} mL"
    return text


class ProcedureMapping(TableMapping):
    type_name = "Procedure"
    model = Procedure
    interactions = frozenset({READ, SEARCH})
    documentation = "The record of one injection session."

    def search_params(self) -> Sequence[Param]:
        return (
            reference_param("patient", Procedure.patient_id, "Patient", "The patient"),
            reference_param("subject", Procedure.patient_id, "Patient", "The patient"),
            reference_param(
                "performer", Procedure.practitioner_id, "Practitioner", "Who performed it"
            ),
            reference_param("based-on", Procedure.course_id, "CarePlan", "The treatment course"),
            date_param("date", Procedure.performed_at, "When it was performed"),
            Param("status", "token", _status, "in-progress | completed"),
        )

    def updated_column(self) -> Any:
        return func.coalesce(Procedure.updated_at, Procedure.created_at)

    def to_fhir(self, row: Any, meta: Meta) -> Resource:
        resource: Resource = {
            "resourceType": "Procedure",
            "id": str(row.id),
            "meta": meta.as_fhir(),
        }
        put(resource, "identifier", identifier_list(meta))
        if row.appointment_id:
            resource["extension"] = [
                {
                    "url": codes.PROLO_APPOINTMENT_EXT,
                    "valueReference": ref("Appointment", row.appointment_id),
                }
            ]
        if row.amends_id:
            resource.setdefault("extension", []).append(
                {"url": codes.PROLO_AMENDS_EXT, "valueReference": ref("Procedure", row.amends_id)}
            )
        if row.course_id:
            resource["basedOn"] = [ref("CarePlan", row.course_id)]
        resource["status"] = STATUS.get(row.status, "unknown")
        resource["code"] = SESSION
        resource["subject"] = ref("Patient", row.patient_id)
        resource["performedDateTime"] = instant(row.performed_at)
        resource["performer"] = [{"actor": ref("Practitioner", row.practitioner_id)}]
        details = row.details if isinstance(row.details, dict) else {}
        put(resource, "bodySite", [{"text": _site_text(s)} for s in details.get("sites") or []])
        injectate = _injectate_text(details.get("injectate"))
        if injectate:
            resource["usedCode"] = [{"text": injectate}]
        events = [
            {"text": str(e.get("description") or e.get("kind"))}
            for e in details.get("adverse_events") or []
            if isinstance(e, dict) and (e.get("description") or e.get("kind"))
        ]
        put(resource, "complication", events)
        if row.note:
            resource["note"] = [{"text": row.note}]
        return resource


MAPPING = ProcedureMapping()
