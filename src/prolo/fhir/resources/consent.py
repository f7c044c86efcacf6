"""Consent <- ``consent`` (informed consent to a treatment course).

See: https://hl7.org/fhir/R4/consent.html

- ``status`` ``active`` while it is the course's consent on file, ``inactive`` once
  withdrawn or superseded (a newer consent to the course was recorded); ``scope`` ``treatment``
  (consentscope); ``category`` LOINC 59284-0 (patient consent);
- ``patient``, ``performer`` (the patient, who consents), ``dateTime`` when it was
  signed;
- ``policy`` the prolo consent text version the patient read
  (``.../consent-text/<version>``); each acknowledged statement as an extension
  (``.../StructureDefinition/consent-statement``);
- ``provision``: permit, for the period from signing to withdrawal or supersession,
  concerning the course (``data`` CarePlan).

Writes go through :mod:`prolo.courses.service`, with the rules of the consent form:

- a create records a consent given (``status`` ``active``; ``rejected`` and the other
  states have no counterpart: prolo records consents given, not refusals) by a
  clinician or admin, to the open course in ``provision.data`` (a CarePlan of
  ``patient``), for the text version in ``policy`` (``.../consent-text/<version>``;
  the current version when left out, as in the pages), acknowledging every required
  statement of it (the ``consent-statement`` extensions); ``dateTime`` is when it was
  signed (now when left out; not in the future). ``scope`` must be ``treatment``,
  ``provision.type`` ``permit``, and ``performer``, when given, the patient; ``category``
  is always served as LOINC 59284-0 and not read. It supersedes the course's consent on
  file, which becomes ``inactive`` (a course has one active consent at a time);
- an update withdraws it (``active`` -> ``inactive``; the withdrawal time is the
  server's, ``provision.period.end``). That is the only change: a consent is never
  edited (record a new one), and a withdrawn or superseded one is not given again. A
  PUT that says what is stored succeeds and writes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import ColumnElement, and_, false

from prolo.courses.models import Consent, TreatmentCourse
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
    check_supported,
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

SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
TREATMENT = codes.concept(SCOPE_SYSTEM, "treatment", "Treatment")
PATIENT_CONSENT = codes.concept(codes.LOINC, "59284-0")
STATEMENT_EXT = f"{codes.PROLO}/StructureDefinition/consent-statement"
POLICY = f"{codes.PROLO}/consent-text/"
# http://hl7.org/fhir/R4/valueset-consent-state-codes.html (a required binding)
CONSENT_STATES = ("draft", "proposed", "active", "rejected", "inactive", "entered-in-error")
# Consent.provision.type, a required binding in R4:
# https://hl7.org/fhir/R4/valueset-consent-provision-type.html
PROVISION_TYPES = ("deny", "permit")


def _status(value: str, modifier: str | None) -> ColumnElement[bool]:
    _system, code = split_token(value)
    on_file = and_(Consent.withdrawn_at.is_(None), Consent.superseded_at.is_(None))
    if code == "active":
        clause: ColumnElement[bool] = on_file
    elif code == "inactive":
        clause = ~on_file
    else:
        clause = false()
    return ~clause if modifier == "not" else clause


def _ended(row: Any) -> dt.datetime | None:
    """When the consent stopped counting: withdrawn, or superseded by a newer one."""
    ended: dt.datetime | None = row.withdrawn_at or row.superseded_at
    return ended


def _utc(value: dt.datetime) -> dt.datetime:
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


class ConsentMapping(TableMapping):
    type_name = "Consent"
    model = Consent
    interactions = frozenset({READ, SEARCH, CREATE, UPDATE})
    documentation = (
        "Informed consent to a treatment course, with the text version read; "
        "an update withdraws it."
    )

    def search_params(self) -> Sequence[Param]:
        return (
            reference_param("patient", Consent.patient_id, "Patient", "Who consented"),
            reference_param("data", Consent.course_id, "CarePlan", "The course consented to"),
            Param("status", "token", _status, "active | inactive (withdrawn or superseded)"),
            date_param("date", Consent.signed_at, "When it was signed"),
        )

    def updated_column(self) -> Any:
        return Consent.created_at

    def to_fhir(self, row: Any, meta: Meta) -> Resource:
        resource: Resource = {"resourceType": "Consent", "id": str(row.id), "meta": meta.as_fhir()}
        statements = [{"url": STATEMENT_EXT, "valueCode": str(item)} for item in row.items or []]
        put(resource, "extension", statements)
        put(resource, "identifier", identifier_list(meta))
        ended = _ended(row)
        resource["status"] = "inactive" if ended else "active"
        resource["scope"] = TREATMENT
        resource["category"] = [PATIENT_CONSENT]
        resource["patient"] = ref("Patient", row.patient_id)
        resource["dateTime"] = instant(row.signed_at)
        resource["performer"] = [ref("Patient", row.patient_id)]
        resource["policy"] = [{"uri": f"{POLICY}{row.text_version}"}]
        period = {"start": instant(row.signed_at)}
        if ended:
            period["end"] = instant(ended)
        resource["provision"] = {
            "type": "permit",
            "period": period,
            "data": [{"meaning": "related", "reference": ref("CarePlan", row.course_id)}],
        }
        return resource

    # -- writes ---------------------------------------------------------------------------

    def decode(self, ctx: Context, resource: Resource) -> dict[str, Any]:
        """What the resource says, in prolo's terms (``withdrawn`` rather than a time)."""
        from prolo.courses.consent import CURRENT_VERSION

        status = resource.get("status")
        # FHIR's own rules (a code outside its required value set, a malformed
        # dateTime: 400) before prolo's (422).
        check_code(status, CONSENT_STATES, path="Consent.status")
        provision = resource.get("provision") or {}
        check_code(provision.get("type"), PROVISION_TYPES, path="Consent.provision.type")
        signed = fhir_datetime(resource.get("dateTime"), path="Consent.dateTime")
        if status not in ("active", "inactive"):
            raise Unprocessable(
                f"Consent.status {status!r} has no counterpart in prolo: a consent is given "
                "(active) or withdrawn (inactive); prolo does not record refusals or drafts",
                expression=["Consent.status"],
            )
        scope = first_coding(resource.get("scope"), SCOPE_SYSTEM)
        if scope is None or scope["code"] != "treatment":
            raise Unprocessable(
                "prolo records consent to treatment: Consent.scope must be "
                f"{SCOPE_SYSTEM}|treatment",
                expression=["Consent.scope"],
            )
        patient_id = referenced_id(ctx, resource.get("patient"), "Patient", path="Consent.patient")
        for index, performer in enumerate(resource.get("performer") or []):
            path = f"Consent.performer[{index}]"
            if referenced_id(ctx, performer, "Patient", path=path) != patient_id:
                raise Unprocessable(
                    f"{path}: the patient consents (the clinician recording it is the token's "
                    "user); performer must be the Consent.patient",
                    expression=[path],
                )
        check_supported(
            provision.get("type"),
            ("permit",),
            path="Consent.provision.type",
            why="prolo records consents given (permit), not refusals",
        )
        courses = [
            referenced_id(ctx, d.get("reference"), "CarePlan", path="Consent.provision.data")
            for d in provision.get("data") or []
        ]
        if len(courses) != 1:
            raise Unprocessable(
                "Consent.provision.data must name the one CarePlan (treatment course) consented to",
                expression=["Consent.provision.data"],
            )
        policies = [p for p in resource.get("policy") or [] if p.get("uri") or p.get("authority")]
        if resource.get("policyRule") is not None and not policies:
            raise Unprocessable(
                f"Consent.policy must name the consent text read ({POLICY}<version>); "
                "policyRule is not used",
                expression=["Consent.policy"],
            )
        version = CURRENT_VERSION
        if policies:
            uri = str(policies[0].get("uri") or "")
            if len(policies) > 1 or not uri.startswith(POLICY):
                raise Unprocessable(
                    f"Consent.policy must be one uri {POLICY}<version> (the consent text read)",
                    expression=["Consent.policy"],
                )
            version = uri.removeprefix(POLICY)
        items = [
            e.get("valueCode")
            for e in resource.get("extension") or []
            if isinstance(e, dict) and e.get("url") == STATEMENT_EXT
        ]
        return {
            "patient_id": patient_id,
            "course_id": courses[0],
            "withdrawn": status == "inactive",
            "text_version": version,
            "items": items,
            "signed_at": signed,
        }

    def create(self, ctx: Context, resource: Resource) -> Any:
        """Record a consent given, through the courses service (clinicians and admins)."""
        from prolo.courses import service as courses
        from prolo.courses.schemas import ConsentIn

        values = self.decode(ctx, resource)
        if values["withdrawn"]:
            raise Unprocessable(
                "a new Consent is active (given); withdraw it afterwards with an update",
                expression=["Consent.status"],
            )
        check_patient_writable(ctx, values["patient_id"], path="Consent.patient")
        course = ctx.session.get(TreatmentCourse, values["course_id"])
        if (
            course is None
            or course.clinic_id != ctx.clinic_id
            or course.patient_id != values["patient_id"]
        ):
            raise Unprocessable(
                "Consent.provision.data must refer to a CarePlan of Consent.patient on this server",
                expression=["Consent.provision.data"],
            )
        try:
            data = ConsentIn(
                text_version=values["text_version"],
                acknowledged=values["items"],
                signed_at=values["signed_at"],
            )
        except ValidationError as exc:
            raise pydantic_problem("Consent", exc, _FIELDS) from None
        with named_fields(_FIELDS):
            return courses.record_consent(
                session=ctx.session, principal=ctx.principal, course_id=course.id, data=data
            )

    def update(self, ctx: Context, row: Any, resource: Resource) -> Any:
        """Withdraw the consent (active -> inactive); anything else stays as it is."""
        from prolo.courses import service as courses
        from prolo.errors import Conflict

        values = self.decode(ctx, resource)
        changed = [
            element
            for element, same in (
                ("Consent.patient", values["patient_id"] == row.patient_id),
                ("Consent.provision.data", values["course_id"] == row.course_id),
                ("Consent.policy", values["text_version"] == row.text_version),
                ("Consent.extension", set(values["items"]) == set(row.items or [])),
                (
                    "Consent.dateTime",
                    values["signed_at"] is None or values["signed_at"] == _utc(row.signed_at),
                ),
            )
            if not same
        ]
        if changed:
            raise Conflict(
                f"a consent is not edited ({', '.join(changed)} differ from Consent/{row.id}): "
                "withdraw it (status inactive) and record a new Consent",
                field=changed[0],
            )
        if values["withdrawn"] == (_ended(row) is not None):
            audit_unchanged(ctx, "Consent", "consent.read", row)
            return row
        if not values["withdrawn"]:
            how = (
                "withdrawn and stays withdrawn"
                if row.withdrawn_at
                else "superseded by a newer Consent and stays inactive"
            )
            raise Conflict(
                f"Consent/{row.id} was {how}; record a new Consent",
                field="Consent.status",
            )
        # Neither withdrawn nor superseded: the course's one consent on file (a unique
        # index keeps it one), which is what the service withdraws.
        with named_fields(_FIELDS):
            return courses.withdraw_consent(
                session=ctx.session, principal=ctx.principal, course_id=row.course_id
            )


_FIELDS = {
    "text_version": "Consent.policy",
    "acknowledged": "Consent.extension",
    "signed_at": "Consent.dateTime",
    "course_id": "Consent.provision.data",
    "consent": "Consent.status",
}

MAPPING = ConsentMapping()
