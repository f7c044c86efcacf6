"""What the knowledge base shows the world: the public API shapes and the about file.

The condition files (``prolo.knowledge.schema``) are the source of truth; these models
are the views served at ``/api/conditions``. ``data/about.yaml`` holds the general
statements on what prolotherapy is and is not, each with its sources; it is validated
here on first use (:func:`load_about`) and a malformed file raises :class:`AboutDataError`
naming the field.

Error tree::

    ValueError
     └── AboutDataError   (about.yaml is malformed: names the field)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError

from prolo.knowledge.schema import (
    BodyRegion,
    Claim,
    Condition,
    Effect,
    EvidenceGrade,
    Protocol,
    SourceGrade,
    Study,
    StudyDesign,
)

ABOUT_FILE = Path(__file__).parent / "data" / "about.yaml"
KEBAB = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")

# Words a patient reads for each grade and region (the data keeps the codes).
GRADE_LABELS: Mapping[str, str] = {
    "high": "High",
    "moderate": "Moderate",
    "low": "Low",
    "very_low": "Very low",
    "insufficient": "Insufficient",
}
GRADE_MEANINGS: Mapping[str, str] = {
    "high": "Further research is very unlikely to change what we know.",
    "moderate": "Further research may change what we know.",
    "low": "Further research is likely to change what we know; treat the results as uncertain.",
    "very_low": "Any estimate of benefit is very uncertain.",
    "insufficient": "No comparative study was found: nobody knows whether it helps.",
}
REGION_LABELS: Mapping[str, str] = {
    "neck": "Neck",
    "thoracic_spine": "Upper and mid back",
    "lumbar_spine": "Lower back",
    "pelvis": "Pelvis and buttock",
    "shoulder": "Shoulder",
    "elbow": "Elbow",
    "wrist_hand": "Wrist and hand",
    "hip": "Hip",
    "knee": "Knee",
    "ankle_foot": "Ankle and foot",
    "jaw": "Jaw",
    "widespread": "Widespread pain",
    "multiple": "Several parts of the body",
}
DESIGN_LABELS: Mapping[str, str] = {
    "rct": "Randomized controlled trial",
    "meta_analysis": "Meta-analysis",
    "systematic_review": "Systematic review",
    "cohort": "Cohort study",
    "case_series": "Case series (no comparison group)",
    "non_randomized": "Non-randomized comparison",
}

T = TypeVar("T")
Seq = Annotated[tuple[T, ...], Strict(False)]
Text = Annotated[str, Field(min_length=1)]


class AboutDataError(ValueError):
    """about.yaml is malformed; ``field`` is the path of the bad value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


SourceKind = Literal["academic_centre", "review", "guideline", "insurer", "practice_website"]
SOURCE_KIND_LABELS: Mapping[str, str] = {
    "academic_centre": "academic medical centre",
    "review": "review article",
    "guideline": "clinical guideline",
    "insurer": "health insurer's policy",
    "practice_website": "a practice's own website",
}


class AboutSource(_Data):
    """Where a statement was read: the reference resolved, with the statement's locator."""

    source: Text
    url: Annotated[str, Field(pattern=r"^https?://\S+$")]
    locator: Text
    grade: SourceGrade
    kind: SourceKind
    conflict_of_interest: Text | None = None


class AboutStatement(_Data):
    """One thing prolotherapy is or is not, in plain words, with its sources."""

    id: Annotated[str, Field(pattern=KEBAB.pattern)]
    heading: Text
    text: Text
    sources: Annotated[Seq[AboutSource], Field(min_length=1)]


class NotConfirmed(_Data):
    """A statement we were asked to make but could not source, and what we did instead."""

    claim: Text
    reason: Text


class About(_Data):
    version: Annotated[int, Field(ge=1)]
    reviewed: date
    statements: Annotated[Seq[AboutStatement], Field(min_length=1)]
    not_confirmed: Seq[NotConfirmed] = ()


def parse_about(data: Any) -> About:
    """Validate a parsed about file; AboutDataError naming the field when malformed."""
    if not isinstance(data, dict):
        raise AboutDataError("", "the about file must be a YAML mapping")
    refs = data.get("references", {})
    if not isinstance(refs, dict):
        raise AboutDataError("references", "must be a mapping of id to reference")
    statements = data.get("statements")
    resolved_statements: Any = statements
    if isinstance(statements, list):
        resolved_statements = []
        for n, statement in enumerate(statements):
            if isinstance(statement, dict) and isinstance(statement.get("sources"), list):
                statement = {
                    **statement,
                    "sources": [
                        _resolve(item, refs, f"statements[{n}].sources[{k}]")
                        for k, item in enumerate(statement["sources"])
                    ],
                }
            resolved_statements.append(statement)
    body = {k: v for k, v in data.items() if k != "references"}
    body["statements"] = resolved_statements
    try:
        about = About.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise AboutDataError(_path(tuple(first["loc"])), first["msg"]) from exc
    ids = [s.id for s in about.statements]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise AboutDataError("statements", f"ids repeat: {', '.join(repeated)}")
    return about


def _resolve(item: Any, refs: Mapping[str, Any], path: str) -> Any:
    if not isinstance(item, dict) or set(item) != {"ref", "locator"}:
        raise AboutDataError(path, "a citation is {ref, locator}")
    ref = refs.get(item["ref"])
    if not isinstance(ref, dict):
        raise AboutDataError(f"{path}.ref", f"unknown reference {item['ref']!r}")
    return {**ref, "locator": item["locator"]}


def _path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def load_about_file(path: Path) -> About:
    """Read and validate an about file; AboutDataError naming the field when malformed."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise AboutDataError("", f"{path.name} is not valid YAML: {exc}") from exc
    return parse_about(data)


@cache
def load_about() -> About:
    """The shipped statements on what prolotherapy is and is not (read once, frozen)."""
    return load_about_file(ABOUT_FILE)


# --- API views ------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class IcdCodeOut(_Out):
    code: str
    display: str


class EvidenceItem(_Out):
    """A study in a listing: enough to cite it and find it."""

    id: str
    design: StudyDesign
    first_author: str
    year: int
    journal: str
    pmid: str | None
    doi: str | None
    url: str


class StudyOut(EvidenceItem):
    """A study with every figure read from its source, and where it was read."""

    locator: str
    grade: SourceGrade
    n_patients: int | None
    comparator: str | None
    injectate: str | None
    instrument: str | None
    follow_up: str | None
    main_result: str
    effect: Effect | None
    conclusion: str
    conflict_of_interest: str | None


class ConditionSummary(_Out):
    """A condition in the public listing.

    ``evidence`` holds the studies that carry a PMID or DOI; ``other_sources`` the ones
    read without either (a URL only), so that nothing read is hidden.
    """

    id: str
    name: str
    clinical_name: str
    parent: str | None
    body_region: BodyRegion
    icd10: list[IcdCodeOut]
    evidence_grade: EvidenceGrade
    evidence: list[EvidenceItem]
    other_sources: list[EvidenceItem]


class PooledOut(_Out):
    """A pooled estimate as readers see it (ratios exponentiated), REML with Hartung-Knapp."""

    estimate: float
    ci_low: float
    ci_high: float
    pi_low: float
    pi_high: float
    tau2: float
    i2: float
    q: float
    q_p: float
    favours: Literal["prolotherapy", "comparator", "neither"]


class TrialEffectOut(_Out):
    """One trial's contribution: where its numbers were read and how the effect was derived."""

    study_id: str
    label: str
    derivation: str
    url: str
    locator: str


class SynthesisOut(_Out):
    """One declared comparison: its trials and, with two or more, the pooled estimate."""

    id: str
    title: str
    measure: Literal["MD", "SMD", "RR"]
    comparison: str
    outcome: str
    better: Literal["higher", "lower"]
    unit: str | None
    comparable_because: str
    caveats: str | None
    k: int
    trials: list[TrialEffectOut]
    pooled: PooledOut | None
    note: str | None


class ConditionOut(ConditionSummary):
    """One condition in full: plain-language and clinician summaries, studies, claims."""

    version: int
    reviewed: date
    synonyms: list[str]
    tissues: list[str]
    grade_reason: str
    summary_patient: str
    summary_clinician: str
    studies: list[StudyOut]
    claims: list[Claim]
    protocol: Protocol
    instruments: list[str]
    pooled_evidence: list[SynthesisOut]
    about: list[AboutStatement]


def _item(study: Study) -> EvidenceItem:
    return EvidenceItem(**{name: getattr(study, name) for name in EvidenceItem.model_fields})


def condition_summary(condition: Condition) -> ConditionSummary:
    """The listing view of a condition."""
    return ConditionSummary(**_summary_fields(condition))


def _summary_fields(condition: Condition) -> dict[str, Any]:
    return {
        "id": condition.id,
        "name": condition.lay_name,
        "clinical_name": condition.clinical_name,
        "parent": condition.parent,
        "body_region": condition.body_region,
        "icd10": [IcdCodeOut(code=c.code, display=c.display) for c in condition.codes.icd10cm],
        "evidence_grade": condition.evidence_grade,
        "evidence": [_item(s) for s in condition.studies if s.pmid or s.doi],
        "other_sources": [_item(s) for s in condition.studies if not (s.pmid or s.doi)],
    }


def condition_detail(condition: Condition) -> ConditionOut:
    """The full view of a condition, with the general statements about prolotherapy."""
    return ConditionOut(
        **_summary_fields(condition),
        version=condition.version,
        reviewed=condition.reviewed,
        synonyms=list(condition.synonyms),
        tissues=list(condition.tissues),
        grade_reason=condition.grade_reason,
        summary_patient=condition.summary_patient,
        summary_clinician=condition.summary_clinician,
        studies=[
            StudyOut(**{name: getattr(s, name) for name in StudyOut.model_fields})
            for s in condition.studies
        ],
        claims=list(condition.claims),
        protocol=condition.protocol,
        instruments=list(condition.instruments),
        pooled_evidence=_syntheses_out(condition),
        about=list(load_about().statements),
    )


def _syntheses_out(condition: Condition) -> list[SynthesisOut]:
    # Imported here: the numerics (numpy, scipy) load only when a condition is shown in full.
    from prolo.knowledge.synthesis import synthesize

    out = []
    for r in synthesize(condition):
        data = r.as_dict(with_svg=False)
        pooled = data["pooled"]
        out.append(
            SynthesisOut(
                id=r.synthesis.id,
                title=r.synthesis.title,
                measure=r.synthesis.measure,
                comparison=r.synthesis.comparison,
                outcome=r.synthesis.outcome,
                better=r.synthesis.better,
                unit=r.synthesis.unit,
                comparable_because=r.synthesis.comparable_because,
                caveats=r.synthesis.caveats,
                k=r.k,
                trials=[
                    TrialEffectOut(
                        study_id=e.study_id,
                        label=e.label,
                        derivation=e.derivation,
                        url=e.url,
                        locator=e.locator,
                    )
                    for e in r.effects
                ],
                pooled=None
                if pooled is None
                else PooledOut(**{k: pooled[k] for k in PooledOut.model_fields}),
                note=r.note,
            )
        )
    return out


# --- Finding conditions -------------------------------------------------------------

# The self-check's "where is the pain?" choices, in head-to-toe order, in plain words.
COMPLAINT_LABELS: Mapping[str, str] = {
    "neck": "Neck",
    "upper_back": "Upper or mid back",
    "lower_back": "Lower back",
    "pelvis_buttock": "Pelvis or buttock",
    "jaw": "Jaw",
    "shoulder": "Shoulder",
    "elbow": "Elbow",
    "wrist_hand": "Wrist or hand",
    "hip": "Hip",
    "knee": "Knee",
    "ankle_foot": "Ankle or foot",
    "heel": "Heel",
    "widespread": "Pain in many places",
}


def search_conditions(
    conditions: Mapping[str, Condition],
    *,
    region: str | None = None,
    query: str = "",
    grade: str | None = None,
) -> list[Condition]:
    """Conditions offered for a complaint region, matching ``query`` and ``grade``, by name.

    ``region`` is a complaint key (the self-check's choices): a condition is listed when
    the region is one of its ``match.complaint_keys``. ``query`` matches the lay and
    clinical names, synonyms, id and ICD-10-CM codes, ignoring case and the code's dot.
    """
    wanted = query.strip().casefold()
    wanted_code = wanted.replace(".", "")
    found: list[Condition] = []
    for cond in conditions.values():
        if region and region not in cond.match.complaint_keys:
            continue
        if grade and cond.evidence_grade != grade:
            continue
        if wanted:
            words = [cond.id, cond.lay_name, cond.clinical_name, *cond.synonyms]
            codes = [c.code.replace(".", "").casefold() for c in cond.codes.icd10cm]
            in_words = any(wanted in w.casefold() for w in words)
            in_codes = bool(wanted_code) and any(c.startswith(wanted_code) for c in codes)
            if not (in_words or in_codes):
                continue
        found.append(cond)
    return sorted(found, key=lambda c: (c.lay_name.casefold(), c.id))
