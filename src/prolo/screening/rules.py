"""The candidacy engine: a pure, deterministic function from answers to a decision.

:func:`screen` reads a :class:`~prolo.screening.profile.ScreeningProfile`, the
knowledge base's conditions and the safety rules (``prolo.knowledge.safety``), and
returns a :class:`ScreeningResult`. It takes values and returns values: no database,
no web, no clock, so the API, the CLI, FHIR and CDS Hooks all screen the same way.

The decision, most serious first:

``refer``
    A red flag applies to the complaint: a doctor should assess the person before any
    injection. Always wins.
``not_candidate``
    An absolute contraindication holds (infection at the site, systemic infection,
    allergy to an injectate component, fracture at the site).
``candidate_with_precautions``
    A relative contraindication holds, or a note applies: pain shorter than the
    chronic-pain threshold (the trials studied chronic pain), no condition in the
    knowledge base matched, or every matched condition's evidence is graded
    ``insufficient``. We chose not to call someone a plain candidate for a treatment
    whose benefit for their complaint is unproven; the precaution is that a clinician
    talks this through before any injection.
``candidate``
    None of the above: chronic pain, a matched condition with graded evidence, and
    nothing in the safety rules against injecting.

Every reason names its rule and carries at least one source. A protocol is suggested
only when exactly one condition matched, its protocol is published, and the decision
lets injection go ahead. The result is information, not a diagnosis
(:data:`INFORMATION_ONLY`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from prolo.knowledge.safety import (
    CHRONIC_NOTE,
    INSUFFICIENT_EVIDENCE_NOTE,
    NO_MATCH_NOTE,
    Note,
    SafetyMessage,
    SafetyRules,
    Source,
    load_safety_rules,
)
from prolo.knowledge.schema import (
    COMPLAINT_KEYS,
    BodyRegion,
    Condition,
    EvidenceGrade,
    Protocol,
    icd10cm_description,
)
from prolo.screening.profile import ScreeningInputError, ScreeningProfile

Decision = Literal["candidate", "candidate_with_precautions", "not_candidate", "refer"]
ReasonKind = Literal["red_flag", "absolute", "relative", "duration", "evidence"]

INFORMATION_ONLY = (
    "This self-check gives general information, not a diagnosis or medical advice. "
    "Only a clinician who examines you can say whether prolotherapy is right for you."
)

# Body regions a complaint key can belong to. Generous on purpose: people describe
# sacroiliac pain as low back or buttock pain, and heel pain is an ankle/foot region
# condition; a condition filed under "multiple" fits any complaint.
COMPATIBLE_REGIONS: Mapping[str, frozenset[BodyRegion]] = {
    "neck": frozenset({"neck"}),
    "upper_back": frozenset({"thoracic_spine"}),
    "lower_back": frozenset({"lumbar_spine", "pelvis"}),
    "pelvis_buttock": frozenset({"pelvis", "lumbar_spine", "hip"}),
    "shoulder": frozenset({"shoulder"}),
    "elbow": frozenset({"elbow"}),
    "wrist_hand": frozenset({"wrist_hand"}),
    "hip": frozenset({"hip", "pelvis"}),
    "knee": frozenset({"knee"}),
    "ankle_foot": frozenset({"ankle_foot"}),
    "heel": frozenset({"ankle_foot"}),
    "jaw": frozenset({"jaw"}),
    "widespread": frozenset({"widespread"}),
}

_DURATION_LIMIT_WEEKS = 100 * 52  # longer than a lifetime: a typo, not an answer
_SEVERITY: Mapping[ReasonKind, int] = {
    "red_flag": 0,
    "absolute": 1,
    "relative": 2,
    "duration": 3,
    "evidence": 4,
}
_ALLOW_INJECTION: frozenset[Decision] = frozenset({"candidate", "candidate_with_precautions"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Reason(_Model):
    """Why the decision is what it is: one fired rule or note, with its sources."""

    rule_id: str
    kind: ReasonKind
    patient_message: str
    clinician_message: str
    sources: Annotated[tuple[Source, ...], Field(min_length=1)]
    condition_id: str | None = None  # set for evidence reasons about one condition


class ConditionMatch(_Model):
    """A knowledge-base condition that fits the answers, with its evidence."""

    condition_id: str
    lay_name: str
    clinical_name: str
    evidence_grade: EvidenceGrade
    grade_reason: str
    summary_patient: str
    summary_clinician: str
    protocol: Protocol
    instruments: tuple[str, ...]


class ScreeningResult(_Model):
    """The engine's answer. ``information_only`` must be shown with it."""

    decision: Decision
    reasons: tuple[Reason, ...]
    matches: tuple[ConditionMatch, ...]
    suggested_protocol: Protocol | None
    suggested_protocol_condition_id: str | None
    instruments: tuple[str, ...]
    chronic: bool
    information_only: str = INFORMATION_ONLY


def screen(
    profile: ScreeningProfile,
    *,
    conditions: Mapping[str, Condition] | None = None,
    rules: SafetyRules | None = None,
) -> ScreeningResult:
    """Screen one person for prolotherapy candidacy; same input, same result.

    ``conditions`` defaults to the shipped knowledge base and ``rules`` to the shipped
    safety rules. Raises :class:`ScreeningInputError` naming the field when an answer
    is missing or contradicts another; any other input gives a result.
    """
    if rules is None:
        rules = load_safety_rules()
    if conditions is None:
        from prolo.knowledge import load_conditions

        conditions = load_conditions()
    check_profile(profile, rules=rules)
    matches = match_conditions(profile, conditions)
    scope = _complaint_scope(profile, matches)

    reasons: list[Reason] = []
    for flag in rules.red_flags:
        applies = scope is None or not scope.isdisjoint(flag.regions)
        if applies and profile.red_flags[flag.question]:
            reasons.append(_reason(flag, flag.kind))
    for rule in rules.contraindications:
        if any(profile.answer(trigger) for trigger in rule.triggers):
            reasons.append(_reason(rule, rule.kind))

    chronic = profile.pain_duration_weeks > rules.chronic_pain.threshold_weeks
    if not chronic:
        reasons.append(_reason(rules.note(CHRONIC_NOTE), "duration"))
    if not matches:
        reasons.append(_reason(rules.note(NO_MATCH_NOTE), "evidence"))
    elif all(c.evidence_grade == "insufficient" for c in matches):
        note = rules.note(INSUFFICIENT_EVIDENCE_NOTE)
        for cond in matches:
            reasons.append(_insufficient_reason(note, cond))

    reasons.sort(key=lambda r: _SEVERITY[r.kind])  # stable: file order within a kind
    decision = _decide(reasons)
    suggested: Condition | None = None
    if len(matches) == 1 and decision in _ALLOW_INJECTION:
        if matches[0].protocol.status == "published":
            suggested = matches[0]
    instruments: list[str] = []
    for cond in matches:
        for instrument in cond.instruments:
            if instrument not in instruments:
                instruments.append(instrument)
    return ScreeningResult(
        decision=decision,
        reasons=tuple(reasons),
        matches=tuple(_match(c) for c in matches),
        suggested_protocol=suggested.protocol if suggested else None,
        suggested_protocol_condition_id=suggested.id if suggested else None,
        instruments=tuple(instruments),
        chronic=chronic,
    )


def check_profile(profile: ScreeningProfile, *, rules: SafetyRules) -> None:
    """Raise ScreeningInputError naming the first missing or contradictory answer.

    Checks only what needs no knowledge base; :func:`match_conditions` checks the
    complaint, condition and code against each other.
    """
    if profile.complaint is None and profile.condition_id is None and profile.icd10 is None:
        raise ScreeningInputError(
            "complaint", "give where the pain is, a condition or an ICD-10 code"
        )
    weeks = profile.pain_duration_weeks
    if not math.isfinite(weeks) or weeks < 0:
        raise ScreeningInputError("pain_duration_weeks", "must be zero or more weeks")
    if weeks > _DURATION_LIMIT_WEEKS:
        raise ScreeningInputError("pain_duration_weeks", "is longer than a lifetime")
    treatments = profile.prior_treatments
    if len(set(treatments)) != len(treatments):
        raise ScreeningInputError("prior_treatments", "a treatment is listed twice")
    if "none" in treatments and len(treatments) > 1:
        raise ScreeningInputError("prior_treatments", "'none' cannot go with other treatments")
    if profile.pregnant is True and profile.sex_at_birth == "male":
        raise ScreeningInputError("pregnant", "contradicts sex at birth 'male'")
    history = profile.history
    if not history.diabetes and history.diabetes_controlled is not None:
        raise ScreeningInputError(
            "history.diabetes_controlled", "answered, but diabetes is answered no"
        )
    for question in rules.questions:
        if question not in profile.red_flags:
            raise ScreeningInputError(f"red_flags.{question}", "this question must be answered")
    for question in sorted(profile.red_flags):
        if question not in rules.questions:
            raise ScreeningInputError(f"red_flags.{question}", "is not a red-flag question")
    if profile.icd10 is not None and not _is_icd10cm(profile.icd10):
        raise ScreeningInputError("icd10", f"{profile.icd10!r} is not an ICD-10-CM code")


def match_conditions(
    profile: ScreeningProfile, conditions: Mapping[str, Condition]
) -> tuple[Condition, ...]:
    """The conditions that fit the answers, most specific first.

    A condition id wins; else an ICD-10 code (the conditions listing the exact code,
    else those with the longest matching ``match.icd10_prefixes``); else every
    condition offered for the complaint key, in id order. Raises ScreeningInputError
    when the condition, code and complaint disagree, or the condition is unknown.
    """
    complaint = profile.complaint
    if profile.condition_id is not None:
        cond = conditions.get(profile.condition_id)
        if cond is None:
            raise ScreeningInputError("condition_id", f"unknown condition {profile.condition_id!r}")
        if complaint is not None and not fits_complaint(cond, complaint):
            raise ScreeningInputError(
                "condition_id",
                f"{cond.id!r} is a {cond.body_region} condition, not one of '{complaint}'",
            )
        if profile.icd10 is not None and _icd10_rank(cond, profile.icd10) is None:
            raise ScreeningInputError("icd10", f"{profile.icd10!r} is not a code of {cond.id!r}")
        return (cond,)
    if profile.icd10 is not None:
        ranked = sorted(
            (rank, cond.id, cond)
            for cond in conditions.values()
            if (rank := _icd10_rank(cond, profile.icd10)) is not None
        )
        if complaint is not None:
            fitting = [r for r in ranked if fits_complaint(r[2], complaint)]
            if ranked and not fitting:
                raise ScreeningInputError(
                    "icd10", f"{profile.icd10!r} is a code for another region than '{complaint}'"
                )
            ranked = fitting
        # The most specific entry for a code is the one to screen against: M17.11 is
        # knee osteoarthritis, not the broader osteoarthritis or arthritis entries.
        best = ranked[0][0] if ranked else None
        return tuple(cond for rank, _, cond in ranked if rank == best)
    if complaint is None:  # check_profile rejects this; kept so the function stands alone
        raise ScreeningInputError("complaint", "give where the pain is, a condition or a code")
    return tuple(
        conditions[cid]
        for cid in sorted(conditions)
        if complaint in conditions[cid].match.complaint_keys
    )


def fits_complaint(condition: Condition, complaint: str) -> bool:
    """True when the condition can be the cause of pain at this complaint key.

    The condition's own ``match.complaint_keys`` decide first; a condition filed
    under ``multiple`` regions with no complaint keys fits any complaint.
    """
    if complaint in condition.match.complaint_keys:
        return True
    if condition.body_region == "multiple":
        return not condition.match.complaint_keys
    return condition.body_region in COMPATIBLE_REGIONS.get(complaint, frozenset())


def _complaint_scope(
    profile: ScreeningProfile, matches: tuple[Condition, ...]
) -> frozenset[str] | None:
    """Complaint keys the red flags are checked against; None means check them all.

    Without a complaint, the matched conditions say where the pain is; when nothing
    says so, every red flag applies (safer to ask a doctor than to miss one).
    """
    if profile.complaint is not None:
        return frozenset({profile.complaint})
    keys: set[str] = set()
    for cond in matches:
        if cond.body_region == "multiple" and not cond.match.complaint_keys:
            return None
        keys.update(cond.match.complaint_keys)
        keys.update(k for k in COMPLAINT_KEYS if cond.body_region in COMPATIBLE_REGIONS[k])
    return frozenset(keys) or None


def _icd10_rank(condition: Condition, code: str) -> int | None:
    """Lower is more specific: -100 for a listed code, minus the prefix length otherwise."""
    wanted = _normalise_icd10(code)
    if any(_normalise_icd10(c.code) == wanted for c in condition.codes.icd10cm):
        return -100
    lengths = [
        len(p)
        for p in map(_normalise_icd10, condition.match.icd10_prefixes)
        if wanted.startswith(p)
    ]
    return -max(lengths) if lengths else None


def _normalise_icd10(code: str) -> str:
    return code.strip().upper().replace(".", "")


def _is_icd10cm(code: str) -> bool:
    try:
        icd10cm_description(code.strip().upper())
    except ValueError:
        return False
    return True


def _reason(message: SafetyMessage, kind: ReasonKind) -> Reason:
    return Reason(
        rule_id=message.id,
        kind=kind,
        patient_message=message.patient_message,
        clinician_message=message.clinician_message,
        sources=message.sources,
    )


def _insufficient_reason(note: Note, condition: Condition) -> Reason:
    return Reason(
        rule_id=note.id,
        kind=note.kind,
        patient_message=note.patient_message,
        clinician_message=f"{note.clinician_message} {condition.clinical_name}: "
        f"{condition.grade_reason}",
        sources=note.sources,
        condition_id=condition.id,
    )


def _decide(reasons: list[Reason]) -> Decision:
    kinds = {r.kind for r in reasons}
    if "red_flag" in kinds:
        return "refer"
    if "absolute" in kinds:
        return "not_candidate"
    if kinds:
        return "candidate_with_precautions"
    return "candidate"


def _match(condition: Condition) -> ConditionMatch:
    return ConditionMatch(
        condition_id=condition.id,
        lay_name=condition.lay_name,
        clinical_name=condition.clinical_name,
        evidence_grade=condition.evidence_grade,
        grade_reason=condition.grade_reason,
        summary_patient=condition.summary_patient,
        summary_clinician=condition.summary_clinician,
        protocol=condition.protocol,
        instruments=condition.instruments,
    )
