"""Procedure <-> ``procedure`` (the record of one injection session).

See: https://hl7.org/fhir/R4/procedure.html

Read, both ways unless said otherwise:

- ``status``: ``in-progress`` for a draft, ``completed`` for a signed (or signed
  amendment) record; ``code`` prolo's ``prolotherapy-injection-session``
  (``.../CodeSystem/procedure``: no standard code for a prolotherapy session was found
  in an authoritative place, so none is claimed);
- ``subject`` the patient; ``performer[0].actor`` the practitioner who injected;
  ``performedDateTime``; ``basedOn`` the course (CarePlan); the appointment (an R4
  ``partOf`` cannot point at an Appointment) as the extension ``.../appointment``;
- ``bodySite``: one per injection, coded from the clinic's site list
  (``.../CodeSystem/injection-site``), the side (``.../injection-side``, a Coding of
  ``.../CodeSystem/injection-side``) and the volume (``.../injection-volume``, mL) as
  extensions of the element; ``text`` is for people and is not read back;
- ``complication``: the immediate adverse events, coded (``.../CodeSystem/adverse-event``),
  ``text`` the description, the severity (``.../adverse-event-severity``, a Coding of
  HL7's reaction-event-severity) as an extension of the element;
- ``followUp``: the aftercare advice given, coded (``.../CodeSystem/aftercare``); a
  ``followUp`` with text only is the aftercare note; none at all means none was given;
- ``note`` the record's note;
- extensions for what FHIR has no element for: ``.../body-region`` (a Coding of
  ``.../CodeSystem/body-region``), ``.../injectate`` (solution, concentration %,
  anaesthetic, its concentration %, total volume mL), ``.../injection-guidance``,
  ``.../needle`` (gauge, length mm), ``.../pre-procedure-check`` (the clinician's
  answers to the re-check: each answer a sub-extension named as in
  ``prolo.courses.procedure_schemas.PreCheckIn``, red flags and history nested),
  ``.../amends`` (the record an amendment corrects) and ``.../amendment-reason``;
- ``usedCode`` (the injectate in words) is written from the injectate and is not read
  back; the stored pre-check result (decision, reasons) is prolo's own and not served.

Writes go through :mod:`prolo.courses.procedures`, so its rules hold: clinicians and
admins only; the sites must be on the region's list; the appointment must be an
injection session of the patient and of the course; one original record per session;
the re-check runs on every write. ``completed`` signs the record (the same
transaction): only the practitioner who performed the session signs, with consent on
file and a re-check that allows injection. A signed record never changes: a PUT that
says what is stored succeeds and writes nothing; any other PUT is a 409 that says how
to amend, which is a POST of the corrected record with ``.../amends`` naming the
signed one and ``.../amendment-reason`` saying why (a new Procedure; the original stays
as it was). A PUT is not turned into an amendment: it would answer with another id.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from pydantic import ValidationError
from sqlalchemy import ColumnElement, false, func

from prolo.courses.models import Procedure
from prolo.courses.procedure_schemas import ADVERSE_LABELS
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
    check_patient_writable,
    fhir_datetime,
    first_coding,
    identifier_list,
    instant,
    named_fields,
    put,
    pydantic_problem,
    ref,
    referenced_id,
)
from prolo.fhir.search import Param, date_param, reference_param, split_token

STATUS = {"draft": "in-progress", "signed": "completed"}
FROM_FHIR = {v: k for k, v in STATUS.items()}
# http://hl7.org/fhir/R4/valueset-event-status.html (a required binding)
EVENT_STATUSES = (
    "preparation",
    "in-progress",
    "not-done",
    "on-hold",
    "stopped",
    "completed",
    "entered-in-error",
    "unknown",
)
SESSION = codes.concept(
    codes.PROLO_PROCEDURE, "prolotherapy-injection-session", "Prolotherapy injection session"
)
SD = f"{codes.PROLO}/StructureDefinition"
CS = f"{codes.PROLO}/CodeSystem"
REASON_EXT = f"{SD}/amendment-reason"
REGION_EXT = f"{SD}/body-region"
INJECTATE_EXT = f"{SD}/injectate"
GUIDANCE_EXT = f"{SD}/injection-guidance"
NEEDLE_EXT = f"{SD}/needle"
CHECK_EXT = f"{SD}/pre-procedure-check"
SIDE_EXT = f"{SD}/injection-side"
VOLUME_EXT = f"{SD}/injection-volume"
SEVERITY_EXT = f"{SD}/adverse-event-severity"
REGION_SYSTEM = f"{CS}/body-region"
SITE_SYSTEM = f"{CS}/injection-site"
SIDE_SYSTEM = f"{CS}/injection-side"
GUIDANCE_SYSTEM = f"{CS}/injection-guidance"
ADVERSE_SYSTEM = f"{CS}/adverse-event"
AFTERCARE_SYSTEM = f"{CS}/aftercare"
SEVERITY_SYSTEM = "http://hl7.org/fhir/reaction-event-severity"
AFTERCARE_ITEMS = ("normal_activity", "expected_inflammation", "pain_advice", "when_to_call")
# The documented session's parts kept in ``procedure.details`` (the stored re-check
# result and the schema number are the server's, not the client's).
CONTENT = ("injectate", "sites", "guidance", "needle", "checks", "adverse_events", "aftercare")
# injectate sub-extension -> (ProcedureIn field, UCUM unit or None for a string)
_INJECTATE = {
    "solution": ("solution", None),
    "concentration": ("concentration_percent", "%"),
    "anaesthetic": ("anaesthetic", None),
    "anaesthetic-concentration": ("anaesthetic_concentration_percent", "%"),
    "total-volume": ("total_volume_ml", "mL"),
}


def _status(value: str, modifier: str | None) -> ColumnElement[bool]:
    _system, code = split_token(value)
    stored = [k for k, v in STATUS.items() if v == code]
    clause = Procedure.status.in_(stored) if stored else false()
    return ~clause if modifier == "not" else clause


@cache
def _site_labels() -> dict[str, str]:
    """Site id -> label from the clinic's site list (empty when it cannot be read)."""
    try:
        from prolo.courses.procedures import load_injection_sites

        catalog = load_injection_sites()
    except (ImportError, ValueError, OSError):
        return {}
    return {s.id: s.label for r in catalog.regions.values() for s in r.sites}


@cache
def _aftercare_labels() -> dict[str, str]:
    from prolo.courses.procedures import AFTERCARE

    return {a.id: a.label for a in AFTERCARE}


def _site_text(site: Mapping[str, Any]) -> str:
    site_id = str(site.get("site_id", ""))
    label = _site_labels().get(site_id, site_id)
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


# -- encoding prolo's structures as extensions ----------------------------------------------


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": codes.UCUM, "code": unit}


def _sub(url: str, value: Any) -> dict[str, Any] | None:
    """One sub-extension for a plain value (None for None); dicts nest."""
    if value is None:
        return None
    if isinstance(value, bool):
        return {"url": url, "valueBoolean": value}
    if isinstance(value, int):
        return {"url": url, "valueInteger": value}
    if isinstance(value, float):
        return {"url": url, "valueDecimal": value}
    if isinstance(value, dict):
        nested = [s for k, v in value.items() if (s := _sub(str(k), v)) is not None]
        return {"url": url, "extension": nested} if nested else None
    return {"url": url, "valueString": str(value)}


def _injectate_ext(injectate: Mapping[str, Any]) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    for name, (key, unit) in _INJECTATE.items():
        value = injectate.get(key)
        if value is None:
            continue
        if unit is None:
            parts.append({"url": name, "valueString": str(value)})
        else:
            parts.append({"url": name, "valueQuantity": _quantity(value, unit)})
    return {"url": INJECTATE_EXT, "extension": parts}


def _needle_ext(needle: Mapping[str, Any]) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if needle.get("gauge") is not None:
        parts.append({"url": "gauge", "valueInteger": int(needle["gauge"])})
    if needle.get("length_mm") is not None:
        parts.append({"url": "length", "valueQuantity": _quantity(needle["length_mm"], "mm")})
    return {"url": NEEDLE_EXT, "extension": parts}


def _body_site(site: Mapping[str, Any]) -> dict[str, Any]:
    site_id = str(site.get("site_id", ""))
    concept: dict[str, Any] = {}
    extension = []
    if site.get("side"):
        extension.append(
            {"url": SIDE_EXT, "valueCoding": codes.coding(SIDE_SYSTEM, str(site["side"]))}
        )
    if site.get("volume_ml") is not None:
        extension.append({"url": VOLUME_EXT, "valueQuantity": _quantity(site["volume_ml"], "mL")})
    put(concept, "extension", extension)
    concept["coding"] = [codes.coding(SITE_SYSTEM, site_id, _site_labels().get(site_id))]
    concept["text"] = _site_text(site)
    return concept


def _complication(event: Mapping[str, Any]) -> dict[str, Any]:
    kind = str(event.get("kind") or "other")
    concept: dict[str, Any] = {}
    if event.get("severity"):
        concept["extension"] = [
            {
                "url": SEVERITY_EXT,
                "valueCoding": codes.coding(SEVERITY_SYSTEM, str(event["severity"])),
            }
        ]
    concept["coding"] = [codes.coding(ADVERSE_SYSTEM, kind, ADVERSE_LABELS.get(kind))]
    put(concept, "text", event.get("description"))
    return concept


def _follow_up(aftercare: Mapping[str, Any]) -> list[dict[str, Any]]:
    labels = _aftercare_labels()
    given: list[dict[str, Any]] = [
        {"coding": [codes.coding(AFTERCARE_SYSTEM, item, labels.get(item))]}
        for item in AFTERCARE_ITEMS
        if aftercare.get(item) is True
    ]
    if aftercare.get("note"):
        given.append({"text": str(aftercare["note"])})
    return given


# -- reading the extensions back -------------------------------------------------------------


def _one_ext(holder: Mapping[str, Any], url: str, path: str) -> dict[str, Any] | None:
    found = [
        e for e in holder.get("extension") or [] if isinstance(e, dict) and e.get("url") == url
    ]
    if len(found) > 1:
        raise Unprocessable(f"{path}: extension {url} is given twice", expression=[path])
    return found[0] if found else None


def _plain(extension: Mapping[str, Any], path: str) -> Any:
    """The value of a sub-extension written by :func:`_sub` (nested ones as a dict)."""
    for key in ("valueBoolean", "valueInteger", "valueDecimal", "valueString", "valueCode"):
        if key in extension:
            return extension[key]
    if "extension" in extension:
        return _plain_dict(extension, path)
    raise Unprocessable(f"{path}: {extension.get('url')} has no value", expression=[path])


def _plain_dict(extension: Mapping[str, Any], path: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in extension.get("extension") or []:
        name = str(item.get("url"))
        if name in found:
            raise Unprocessable(f"{path}: {name} is given twice", expression=[path])
        found[name] = _plain(item, f"{path}.{name}")
    return found


def _quantity_value(value: Any, unit: str, path: str) -> Any:
    """The number of a Quantity in ``unit`` (UCUM); 422 for another unit."""
    if not isinstance(value, dict) or value.get("value") is None:
        raise Unprocessable(f"{path} needs a value in {unit}", expression=[path])
    if (
        value.get("system", codes.UCUM) != codes.UCUM
        or (value.get("code") or value.get("unit")) != unit
    ):
        raise Unprocessable(f"{path} must be in {unit} (UCUM)", expression=[path])
    return value["value"]


def _coded(concept: Any, system: str, path: str) -> str | None:
    found = first_coding(concept, system)
    if found is None:
        raise Unprocessable(f"{path} needs a code from {system}", expression=[path])
    return str(found["code"])


def _decode_injectate(ext: Mapping[str, Any]) -> dict[str, Any]:
    path = f"Procedure.extension('{INJECTATE_EXT}')"
    found: dict[str, Any] = {}
    for item in ext.get("extension") or []:
        name = str(item.get("url"))
        if name not in _INJECTATE:
            raise Unprocessable(
                f"{path}: unknown part {name!r} ({', '.join(_INJECTATE)})", expression=[path]
            )
        key, unit = _INJECTATE[name]
        if unit is None:
            found[key] = item.get("valueString")
        else:
            found[key] = _quantity_value(item.get("valueQuantity"), unit, f"{path}.{name}")
    return found


def _decode_needle(ext: Mapping[str, Any]) -> dict[str, Any]:
    path = f"Procedure.extension('{NEEDLE_EXT}')"
    found: dict[str, Any] = {}
    for item in ext.get("extension") or []:
        name = item.get("url")
        if name == "gauge":
            found["gauge"] = item.get("valueInteger")
        elif name == "length":
            found["length_mm"] = _quantity_value(item.get("valueQuantity"), "mm", f"{path}.length")
        else:
            raise Unprocessable(f"{path}: unknown part {name!r} (gauge, length)", expression=[path])
    return found


def _decode_sites(resource: Resource) -> list[dict[str, Any]]:
    sites = []
    for index, concept in enumerate(resource.get("bodySite") or []):
        path = f"Procedure.bodySite[{index}]"
        side = _one_ext(concept, SIDE_EXT, path)
        volume = _one_ext(concept, VOLUME_EXT, path)
        site: dict[str, Any] = {"site_id": _coded(concept, SITE_SYSTEM, path)}
        if side is not None:
            site["side"] = _coded({"coding": [side.get("valueCoding")]}, SIDE_SYSTEM, path)
        if volume is not None:
            site["volume_ml"] = _quantity_value(volume.get("valueQuantity"), "mL", path)
        sites.append(site)
    return sites


def _decode_events(resource: Resource) -> list[dict[str, Any]]:
    events = []
    for index, concept in enumerate(resource.get("complication") or []):
        path = f"Procedure.complication[{index}]"
        severity = _one_ext(concept, SEVERITY_EXT, path)
        event: dict[str, Any] = {"kind": _coded(concept, ADVERSE_SYSTEM, path)}
        if severity is not None:
            event["severity"] = _coded(
                {"coding": [severity.get("valueCoding")]}, SEVERITY_SYSTEM, path
            )
        event["description"] = concept.get("text")
        events.append(event)
    return events


def _decode_aftercare(resource: Resource) -> dict[str, Any]:
    given: dict[str, Any] = dict.fromkeys(AFTERCARE_ITEMS, False)
    notes = []
    for index, concept in enumerate(resource.get("followUp") or []):
        path = f"Procedure.followUp[{index}]"
        if not concept.get("coding"):
            if concept.get("text"):
                notes.append(str(concept["text"]))
            continue
        code = _coded(concept, AFTERCARE_SYSTEM, path)
        if code not in AFTERCARE_ITEMS:
            raise Unprocessable(
                f"{path}: {code!r} is not one of {', '.join(AFTERCARE_ITEMS)}", expression=[path]
            )
        given[code] = True
    given["note"] = "\n\n".join(notes) or None
    return given


def _comparable(value: Any) -> Any:
    """``value`` without None, empty lists and empty dicts (absent and empty are alike)."""
    if isinstance(value, dict):
        cleaned = {k: _comparable(v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if v not in (None, [], {})}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    return value


NO_AFTERCARE = {**dict.fromkeys(AFTERCARE_ITEMS, False), "note": None}


def stored_values(row: Any) -> dict[str, Any]:
    """A record's content in the terms :meth:`ProcedureMapping.decode` reads a resource in."""
    details = row.details if isinstance(row.details, dict) else {}
    content = {key: details.get(key) for key in CONTENT}
    content["aftercare"] = content["aftercare"] or NO_AFTERCARE
    return {
        "patient_id": row.patient_id,
        "status": row.status,
        "amends_id": row.amends_id,
        "reason": row.amendment_reason,
        "data": {
            "performed_at": row.performed_at,
            "appointment_id": row.appointment_id,
            "course_id": row.course_id,
            "practitioner_id": row.practitioner_id,
            "body_region": row.body_region,
            "note": row.note,
            **content,
        },
    }


class ProcedureMapping(TableMapping):
    type_name = "Procedure"
    model = Procedure
    interactions = frozenset({READ, SEARCH, CREATE, UPDATE})
    documentation = (
        "The record of one injection session: draft (in-progress) or signed (completed); "
        "a signed record is corrected by creating an amendment, never by an update."
    )

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
        details = row.details if isinstance(row.details, dict) else {}
        extension: list[dict[str, Any]] = []
        if row.appointment_id:
            extension.append(
                {
                    "url": codes.PROLO_APPOINTMENT_EXT,
                    "valueReference": ref("Appointment", row.appointment_id),
                }
            )
        if row.amends_id:
            extension.append(
                {"url": codes.PROLO_AMENDS_EXT, "valueReference": ref("Procedure", row.amends_id)}
            )
        if row.amendment_reason:
            extension.append({"url": REASON_EXT, "valueString": row.amendment_reason})
        if row.body_region:
            extension.append(
                {"url": REGION_EXT, "valueCoding": codes.coding(REGION_SYSTEM, row.body_region)}
            )
        if isinstance(details.get("injectate"), dict):
            extension.append(_injectate_ext(details["injectate"]))
        if details.get("guidance"):
            extension.append(
                {
                    "url": GUIDANCE_EXT,
                    "valueCoding": codes.coding(GUIDANCE_SYSTEM, str(details["guidance"])),
                }
            )
        if isinstance(details.get("needle"), dict):
            extension.append(_needle_ext(details["needle"]))
        if isinstance(details.get("checks"), dict):
            check = _sub(CHECK_EXT, details["checks"])
            if check is not None:
                extension.append(check)
        put(resource, "extension", extension)
        put(resource, "identifier", identifier_list(meta))
        if row.course_id:
            resource["basedOn"] = [ref("CarePlan", row.course_id)]
        resource["status"] = STATUS.get(row.status, "unknown")
        resource["code"] = SESSION
        resource["subject"] = ref("Patient", row.patient_id)
        resource["performedDateTime"] = instant(row.performed_at)
        resource["performer"] = [{"actor": ref("Practitioner", row.practitioner_id)}]
        sites = [s for s in details.get("sites") or [] if isinstance(s, dict)]
        put(resource, "bodySite", [_body_site(s) for s in sites])
        injectate = _injectate_text(details.get("injectate"))
        if injectate:
            resource["usedCode"] = [{"text": injectate}]
        events = [e for e in details.get("adverse_events") or [] if isinstance(e, dict)]
        put(resource, "complication", [_complication(e) for e in events])
        if isinstance(details.get("aftercare"), dict):
            put(resource, "followUp", _follow_up(details["aftercare"]))
        if row.note:
            resource["note"] = [{"text": row.note}]
        return resource

    # -- writes ---------------------------------------------------------------------------

    def decode(self, ctx: Context, resource: Resource) -> dict[str, Any]:
        """What the resource says, in prolo's terms (as :func:`stored_values` gives a row).

        Nothing is validated against the domain's schema here: that happens when the
        content is written, so a record stored before every part was recorded still
        compares equal to what it reads as.
        """
        status = resource.get("status")
        # FHIR's own rules (a code outside its required value set, a malformed
        # dateTime: 400) before prolo's (422).
        check_code(status, EVENT_STATUSES, path="Procedure.status")
        performed = fhir_datetime(
            resource.get("performedDateTime"), path="Procedure.performedDateTime"
        )
        if status not in FROM_FHIR:
            raise Unprocessable(
                f"Procedure.status {status!r} has no counterpart in prolo: a record is "
                "in-progress (a draft) or completed (signed)",
                expression=["Procedure.status"],
            )
        code = resource.get("code")
        if code is not None and first_coding(code, codes.PROLO_PROCEDURE) is None:
            raise Unprocessable(
                "prolo records prolotherapy injection sessions: Procedure.code must be "
                f"{codes.PROLO_PROCEDURE}|prolotherapy-injection-session, or left out",
                expression=["Procedure.code"],
            )
        patient_id = referenced_id(
            ctx, resource.get("subject"), "Patient", path="Procedure.subject"
        )
        if "performedDateTime" not in resource:
            raise Unprocessable(
                "Procedure.performedDateTime is required by prolo (when the session was)",
                expression=["Procedure.performedDateTime"],
            )
        practitioner_id = None
        for index, performer in enumerate(resource.get("performer") or []):
            practitioner_id = referenced_id(
                ctx, performer.get("actor"), "Practitioner", path=f"Procedure.performer[{index}]"
            )
            break
        course_id = None
        for based_on in resource.get("basedOn") or []:
            if course_id is not None:
                raise Unprocessable(
                    "Procedure.basedOn names one treatment course", expression=["Procedure.basedOn"]
                )
            course_id = referenced_id(ctx, based_on, "CarePlan", path="Procedure.basedOn")
        refs = {}
        for url, target in (
            (codes.PROLO_APPOINTMENT_EXT, "Appointment"),
            (codes.PROLO_AMENDS_EXT, "Procedure"),
        ):
            found = _one_ext(resource, url, "Procedure.extension")
            path = f"Procedure.extension('{url}')"
            refs[url] = (
                referenced_id(ctx, found.get("valueReference"), target, path=path)
                if found is not None
                else None
            )
        region = _one_ext(resource, REGION_EXT, "Procedure.extension")
        guidance = _one_ext(resource, GUIDANCE_EXT, "Procedure.extension")
        injectate = _one_ext(resource, INJECTATE_EXT, "Procedure.extension")
        needle = _one_ext(resource, NEEDLE_EXT, "Procedure.extension")
        check = _one_ext(resource, CHECK_EXT, "Procedure.extension")
        reason = _one_ext(resource, REASON_EXT, "Procedure.extension")
        notes = [str(n["text"]) for n in resource.get("note") or [] if n.get("text")]
        return {
            "patient_id": patient_id,
            "status": FROM_FHIR[status],
            "amends_id": refs[codes.PROLO_AMENDS_EXT],
            "reason": reason.get("valueString") if reason is not None else None,
            "data": {
                "performed_at": performed,
                "appointment_id": refs[codes.PROLO_APPOINTMENT_EXT],
                "course_id": course_id,
                "practitioner_id": practitioner_id,
                "body_region": (
                    _coded({"coding": [region.get("valueCoding")]}, REGION_SYSTEM, REGION_EXT)
                    if region is not None
                    else None
                ),
                "note": "\n\n".join(notes) or None,
                "injectate": _decode_injectate(injectate) if injectate is not None else None,
                "sites": _decode_sites(resource),
                "guidance": (
                    _coded({"coding": [guidance.get("valueCoding")]}, GUIDANCE_SYSTEM, GUIDANCE_EXT)
                    if guidance is not None
                    else None
                ),
                "needle": _decode_needle(needle) if needle is not None else None,
                "checks": _plain_dict(check, CHECK_EXT) if check is not None else None,
                "adverse_events": _decode_events(resource),
                "aftercare": _decode_aftercare(resource),
            },
        }

    def _content(self, values: Mapping[str, Any], *, amendment: bool = False) -> Any:
        """The domain's input for the decoded content (a 422 naming the element if it does
        not fit)."""
        from prolo.courses.procedure_schemas import AmendmentIn, ProcedureIn, ProcedureUpdate

        data = {k: v for k, v in values["data"].items() if v is not None}
        try:
            if amendment:
                return AmendmentIn(**data, reason=values["reason"])
            if values["reason"] is not None:
                return ProcedureUpdate(**data, reason=values["reason"])
            return ProcedureIn(**data)
        except ValidationError as exc:
            raise pydantic_problem(
                "Procedure", exc, _FIELDS, default="Procedure.bodySite"
            ) from None

    def create(self, ctx: Context, resource: Resource) -> Any:
        """Record a session (a draft), or an amendment of a signed record; sign if completed."""
        from prolo.courses import procedures

        values = self.decode(ctx, resource)
        check_patient_writable(ctx, values["patient_id"], path="Procedure.subject")
        with named_fields(_FIELDS):
            if values["amends_id"] is not None:
                original = ctx.session.get(Procedure, values["amends_id"])
                if (
                    original is None
                    or original.clinic_id != ctx.clinic_id
                    or original.patient_id != values["patient_id"]
                ):
                    raise Unprocessable(
                        f"Procedure.extension('{codes.PROLO_AMENDS_EXT}') must refer to a "
                        "Procedure of the same patient on this server",
                        expression=[f"Procedure.extension('{codes.PROLO_AMENDS_EXT}')"],
                    )
                if values["reason"] is None:
                    raise Unprocessable(
                        f"an amendment says why: add the extension {REASON_EXT} (valueString)",
                        expression=[f"Procedure.extension('{REASON_EXT}')"],
                    )
                row = procedures.amend_procedure(
                    session=ctx.session,
                    principal=ctx.principal,
                    procedure_id=original.id,
                    data=self._content(values, amendment=True),
                )
            else:
                if values["reason"] is not None:
                    raise Unprocessable(
                        f"only an amendment has a reason: {REASON_EXT} needs "
                        f"{codes.PROLO_AMENDS_EXT} naming the signed record it corrects",
                        expression=[f"Procedure.extension('{REASON_EXT}')"],
                    )
                row = procedures.create_procedure(
                    session=ctx.session,
                    principal=ctx.principal,
                    patient_id=values["patient_id"],
                    data=self._content(values),
                )
            if values["status"] == "signed":
                procedures.sign_procedure(
                    session=ctx.session, principal=ctx.principal, procedure_id=row.id
                )
        return row

    def update(self, ctx: Context, row: Any, resource: Resource) -> Any:
        """Edit a draft (and sign it when ``completed``); a signed record only unchanged."""
        from prolo.courses import procedures

        values = self.decode(ctx, resource)
        for key, element in (
            ("patient_id", "subject"),
            ("amends_id", f"extension('{codes.PROLO_AMENDS_EXT}')"),
        ):
            if values[key] != getattr(row, key):
                raise Unprocessable(
                    f"Procedure.{element} cannot change; record a new Procedure instead",
                    expression=[f"Procedure.{element}"],
                )
        stored = stored_values(row)
        same_content = _comparable(values["data"]) == _comparable(stored["data"]) and (
            values["reason"] in (None, row.amendment_reason)
        )
        if row.status == "signed":
            if same_content and values["status"] == "signed":
                audit_unchanged(ctx, "Procedure", "procedure.read", row)
                return row
            raise procedures.SignedRecord(
                f"Procedure/{row.id} is signed and cannot be changed. To correct it, create "
                f"(POST) the corrected Procedure with the extension {codes.PROLO_AMENDS_EXT} "
                f"referring to Procedure/{row.id} and {REASON_EXT} saying why; the signed "
                "record stays as it is",
                extra={"procedure_id": row.id},
            )
        if same_content and values["status"] == "draft":
            audit_unchanged(ctx, "Procedure", "procedure.read", row)
            return row
        with named_fields(_FIELDS):
            if not same_content:
                procedures.update_procedure(
                    session=ctx.session,
                    principal=ctx.principal,
                    procedure_id=row.id,
                    data=self._content(values),
                )
            if values["status"] == "signed":
                procedures.sign_procedure(
                    session=ctx.session, principal=ctx.principal, procedure_id=row.id
                )
        return row


_FIELDS = {
    "performed_at": "Procedure.performedDateTime",
    "appointment_id": f"Procedure.extension('{codes.PROLO_APPOINTMENT_EXT}')",
    "course_id": "Procedure.basedOn",
    "practitioner_id": "Procedure.performer",
    "body_region": f"Procedure.extension('{REGION_EXT}')",
    "injectate": f"Procedure.extension('{INJECTATE_EXT}')",
    "sites": "Procedure.bodySite",
    "guidance": f"Procedure.extension('{GUIDANCE_EXT}')",
    "needle": f"Procedure.extension('{NEEDLE_EXT}')",
    "checks": f"Procedure.extension('{CHECK_EXT}')",
    "adverse_events": "Procedure.complication",
    "aftercare": "Procedure.followUp",
    "note": "Procedure.note",
    "reason": f"Procedure.extension('{REASON_EXT}')",
    "consent": "Procedure.basedOn",
}

MAPPING = ProcedureMapping()
