"""The CDS Hooks 2.0 candidacy service: discovery, and ``patient-view`` cards.

See: https://cds-hooks.hl7.org/2.0/ (discovery, request, cards, suggestions, links)

The EHR sends the patient's context and the prefetched FHIR data this service asks
for (Patient, Conditions, MedicationStatements, AllergyIntolerances). The service
translates them into a :class:`~prolo.screening.ScreeningProfile` for each active
condition that matches prolo's knowledge base, runs the screening engine
(:func:`prolo.screening.screen`, the same engine as the self-check), and turns each
result into a card: a summary line, the decision with its reasons and their sources,
the evidence grade with a link to the condition's page, and a suggestion to order a
prolotherapy consultation when the decision lets injection be considered.

What the record cannot tell (the red-flag questions, the injection-site history,
allergy to an injectate component, anticoagulant use) is not guessed from it: the
engine is run with those answers as "no", and the card says so: its decision holds
*only if the patient answers no*, and it lists each question to ask, with the
record's medications and allergies beside them for the clinician to check. Missing
prefetch is said in the card; with no conditions at all there is nothing to screen,
and the one card says why. A record with conditions of which none is in the knowledge
base gets no card (nothing to act on). This module holds no clinical rule of its own.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prolo.errors import ValidationFailed
from prolo.knowledge.safety import load_safety_rules
from prolo.knowledge.schema import Condition as KnowledgeCondition
from prolo.screening import ScreeningProfile, ScreeningResult, fits_complaint, screen

SERVICE_ID = "prolo-candidacy"
HOOK = "patient-view"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
CLINICAL_STATUS = "http://terminology.hl7.org/CodeSystem/condition-clinical"
PROLO_CDS = "https://prolo.example.org/fhir/CodeSystem/cds"
PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}",
    "medications": "MedicationStatement?patient={{context.patientId}}",
    "allergies": "AllergyIntolerance?patient={{context.patientId}}",
}
ACTIVE = frozenset({"active", "recurrence", "relapse"})
MAX_CARDS = 5
DECISION_WORDS = {
    "candidate": "Candidate",
    "candidate_with_precautions": "Candidate with precautions",
    "not_candidate": "Not a candidate now",
    "refer": "Refer for medical assessment before any injection",
}
INDICATOR = {
    "candidate": "info",
    "candidate_with_precautions": "info",
    "not_candidate": "warning",
    "refer": "critical",
}
# The screening profile's yes/no history answers, in the words a clinician asks them.
HISTORY_QUESTIONS = {
    "infection_at_site": "Infection or broken skin at or near the injection site?",
    "systemic_infection": "Infection elsewhere or fever now?",
    "bleeding_disorder": "A bleeding or clotting disorder?",
    "fracture_at_site": "A recent fracture at the site?",
    "prosthetic_joint_at_site": "A replaced (prosthetic) joint where the pain is?",
    "immunosuppressed": "Immune-suppressing medicine or illness?",
    "malignancy_at_site": "Cancer at the site?",
    "diabetes": "Diabetes?",
}


def discovery() -> dict[str, Any]:
    """The discovery document: one ``patient-view`` service."""
    return {
        "services": [
            {
                "hook": HOOK,
                "id": SERVICE_ID,
                "title": "Prolotherapy candidacy",
                "description": (
                    "Screens the patient's active conditions against prolo's evidence library "
                    "and safety rules, and says whether prolotherapy may be considered, why, "
                    "how good the evidence is, and what to ask before deciding."
                ),
                "prefetch": PREFETCH,
            }
        ]
    }


@dataclass(frozen=True)
class Match:
    """One knowledge-base condition matched by one of the record's conditions."""

    condition: KnowledgeCondition
    icd10: str | None  # the ICD-10-CM code that matched, when it was one
    resource_id: str | None  # the EHR's Condition id
    onset: dt.date | None


def _resources(value: Any, kind: str) -> Iterator[dict[str, Any]]:
    """Resources of ``kind`` in a prefetch value (a searchset Bundle, a list, one resource)."""
    if isinstance(value, dict) and value.get("resourceType") == "Bundle":
        for entry in value.get("entry") or []:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict) and resource.get("resourceType") == kind:
                yield resource
    elif isinstance(value, list):
        for item in value:
            yield from _resources(item, kind)
    elif isinstance(value, dict) and value.get("resourceType") == kind:
        yield value


def _codes(concept: Any, system: str) -> list[str]:
    if not isinstance(concept, dict):
        return []
    return [
        str(c["code"])
        for c in concept.get("coding") or []
        if isinstance(c, dict) and c.get("system") == system and c.get("code")
    ]


def _active(condition: Mapping[str, Any]) -> bool:
    statuses = _codes(condition.get("clinicalStatus"), CLINICAL_STATUS)
    if statuses and not ACTIVE.intersection(statuses):
        return False
    verification = condition.get("verificationStatus") or {}
    refuted = {str(c.get("code")) for c in verification.get("coding") or [] if isinstance(c, dict)}
    return not refuted & {"refuted", "entered-in-error"}


def _onset(condition: Mapping[str, Any]) -> dt.date | None:
    text = condition.get("onsetDateTime") or (condition.get("onsetPeriod") or {}).get("start")
    if not isinstance(text, str) or len(text) < 10:
        return None
    try:
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        return None


def matches(conditions: list[dict[str, Any]]) -> list[Match]:
    """The knowledge-base conditions the record's active conditions match, most specific first."""
    from prolo.knowledge.loader import conditions_for_icd10, load_conditions

    by_snomed = {s.code: cond for cond in load_conditions().values() for s in cond.codes.snomed}
    found: dict[str, Match] = {}
    for resource in conditions:
        if not _active(resource):
            continue
        onset = _onset(resource)
        rid = str(resource["id"]) if resource.get("id") else None
        for code in _codes(resource.get("code"), ICD10CM):
            for cond in conditions_for_icd10(code)[:1]:
                found.setdefault(cond.id, Match(cond, code.upper(), rid, onset))
        for code in _codes(resource.get("code"), SNOMED):
            snomed_match = by_snomed.get(code)
            if snomed_match is not None:
                found.setdefault(snomed_match.id, Match(snomed_match, None, rid, onset))
    return list(found.values())[:MAX_CARDS]


def _profile(match: Match, today: dt.date) -> tuple[ScreeningProfile, bool]:
    """The profile the record supports; unknown answers are "no". Returns (profile, onset known)."""
    rules = load_safety_rules()
    threshold = rules.chronic_pain.threshold_weeks
    if match.onset is not None and match.onset <= today:
        weeks = (today - match.onset).days / 7
    else:
        weeks = threshold + 1  # stated in the card as an assumption, not read from the record
    answers = {
        "condition_id": match.condition.id,
        "pain_duration_weeks": weeks,
        "red_flags": dict.fromkeys(rules.questions, False),
        "medications": {"anticoagulant": False, "antiplatelet": False},
        "allergies": {"local_anaesthetic": False, "dextrose": False},
        "history": dict.fromkeys(HISTORY_QUESTIONS, False),
    }
    return ScreeningProfile.from_answers(answers), match.onset is not None


def _names(resources: list[dict[str, Any]], key: str) -> list[str]:
    found = []
    for resource in resources:
        concept = resource.get(key) or {}
        text = concept.get("text") if isinstance(concept, dict) else None
        if not text and isinstance(concept, dict):
            text = next(
                (c.get("display") for c in concept.get("coding") or [] if isinstance(c, dict)), None
            )
        if text:
            found.append(str(text))
    return found


def _card(
    match: Match,
    result: ScreeningResult,
    *,
    onset_known: bool,
    patient_id: str,
    base_url: str,
    medications: list[str] | None,
    allergies: list[str] | None,
    missing: list[str],
) -> dict[str, Any]:
    cond = match.condition
    rules = load_safety_rules()
    decision = DECISION_WORDS[result.decision]
    grade = cond.evidence_grade.replace("_", " ")
    summary = f"{cond.clinical_name}: {decision.lower()} for prolotherapy (evidence {grade})"
    if len(summary) > 139:
        summary = f"{cond.clinical_name[:60]}: {decision.lower()} (evidence {grade})"[:139]
    lines = [
        f"**Decision from the record:** {decision}, *if the patient answers no to every "
        "question below*; the record cannot answer them.",
        "",
        "**Why:**",
    ]
    if not result.reasons:
        lines.append("- No safety rule or note applies to what the record shows.")
    for reason in result.reasons:
        sources = "; ".join(f"[{s.source.split('.')[0]}]({s.url})" for s in reason.sources[:2])
        lines.append(f"- {reason.clinician_message} ({sources})")
    lines += [
        "",
        f"**Evidence for prolotherapy:** {grade}. {cond.grade_reason}",
        "",
        cond.summary_clinician,
        "",
        "**Not in the record: ask before deciding**",
    ]
    flags = [
        r for r in rules.red_flags if any(fits_complaint(cond, region) for region in r.regions)
    ]
    for flag in flags:
        lines.append(f"- {flag.question_text}")
    for question in HISTORY_QUESTIONS.values():
        lines.append(f"- {question}")
    lines.append("- Allergy to a local anaesthetic or to dextrose?")
    lines.append("- Taking an anticoagulant or an antiplatelet medicine?")
    lines.append("- Pregnant?")
    if not onset_known:
        lines.append(
            "- How long has the pain lasted? (The record has no onset date; the decision "
            "assumes longer than the chronic-pain threshold.)"
        )
    if medications is not None:
        listed = ", ".join(medications) if medications else "none recorded"
        lines.append(f"\nMedications in the record (check for blood thinners): {listed}.")
    if allergies is not None:
        listed = ", ".join(allergies) if allergies else "none recorded"
        lines.append(f"Allergies in the record (check against the injectate): {listed}.")
    for key in missing:
        lines.append(
            f"\n*The EHR did not send the patient's {key}; nothing about them was assumed.*"
        )
    lines.append(f"\n{result.information_only}")
    link = f"{base_url}/conditions/{cond.id}"
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": summary,
        "indicator": INDICATOR[result.decision],
        "detail": "\n".join(lines),
        "source": {
            "label": "prolo candidacy screening",
            "url": base_url,
            "topic": {
                "system": PROLO_CDS,
                "code": "prolotherapy-candidacy",
                "display": "Prolotherapy candidacy",
            },
        },
        "links": [
            {
                "label": f"{cond.clinical_name}: evidence and protocol",
                "url": link,
                "type": "absolute",
            }
        ],
    }
    if result.decision in ("candidate", "candidate_with_precautions"):
        request: dict[str, Any] = {
            "resourceType": "ServiceRequest",
            "status": "draft",
            "intent": "proposal",
            "code": {
                "coding": [
                    {
                        "system": PROLO_CDS,
                        "code": "prolotherapy-consultation",
                        "display": "Prolotherapy consultation",
                    }
                ],
                "text": "Prolotherapy consultation",
            },
            "subject": {"reference": f"Patient/{patient_id}"},
            "note": [{"text": f"Suggested by prolo for {cond.clinical_name}; see {link}"}],
        }
        if match.resource_id:
            request["reasonReference"] = [{"reference": f"Condition/{match.resource_id}"}]
        card["suggestions"] = [
            {
                "label": "Order a prolotherapy consultation",
                "uuid": str(uuid.uuid4()),
                "isRecommended": False,
                "actions": [
                    {
                        "type": "create",
                        "description": (
                            f"Propose a prolotherapy consultation for {cond.clinical_name}"
                        ),
                        "resource": request,
                    }
                ],
            }
        ]
        card["selectionBehavior"] = "at-most-one"
    return card


def patient_view(body: Any, *, base_url: str, today: dt.date | None = None) -> dict[str, Any]:
    """Answer a ``patient-view`` request with cards; ValidationFailed for a malformed request."""
    if not isinstance(body, dict):
        raise ValidationFailed("the request must be a JSON object", field="body")
    if body.get("hook") != HOOK:
        raise ValidationFailed(f"this service answers the {HOOK} hook", field="hook")
    if not isinstance(body.get("hookInstance"), str) or not body["hookInstance"]:
        raise ValidationFailed("hookInstance is required", field="hookInstance")
    context = body.get("context")
    if not isinstance(context, dict) or not isinstance(context.get("patientId"), str):
        raise ValidationFailed("context.patientId is required", field="context.patientId")
    patient_id = context["patientId"]
    raw_prefetch = body.get("prefetch")
    prefetch: dict[str, Any] = raw_prefetch if isinstance(raw_prefetch, dict) else {}
    today = today or dt.datetime.now(dt.UTC).date()
    missing = [key for key in PREFETCH if prefetch.get(key) is None]
    if "conditions" in missing:
        return {
            "cards": [
                {
                    "uuid": str(uuid.uuid4()),
                    "summary": "Prolotherapy candidacy not checked: the EHR sent no conditions",
                    "indicator": "info",
                    "detail": (
                        "prolo screens the patient's active conditions, and the request carried "
                        "no `conditions` prefetch. Nothing was assumed. Missing: "
                        + ", ".join(f"`{k}`" for k in missing)
                        + "."
                    ),
                    "source": {"label": "prolo candidacy screening", "url": base_url},
                }
            ]
        }
    conditions = list(_resources(prefetch["conditions"], "Condition"))
    medications = (
        None
        if "medications" in missing
        else _names(
            [
                m
                for m in _resources(prefetch["medications"], "MedicationStatement")
                if m.get("status") in ("active", "intended", "on-hold", None)
            ],
            "medicationCodeableConcept",
        )
    )
    allergies = (
        None
        if "allergies" in missing
        else _names(list(_resources(prefetch["allergies"], "AllergyIntolerance")), "code")
    )
    cards = []
    for match in matches(conditions):
        profile, onset_known = _profile(match, today)
        result = screen(profile)
        cards.append(
            _card(
                match,
                result,
                onset_known=onset_known,
                patient_id=patient_id,
                base_url=base_url,
                medications=medications,
                allergies=allergies,
                missing=[k for k in missing if k != "conditions"],
            )
        )
    return {"cards": cards}
