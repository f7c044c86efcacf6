"""The condition file format (docs/knowledge-format.md) as pydantic models.

Models are strict, frozen and forbid unknown keys, so a typo or a value of the wrong
type fails at load time instead of reaching a patient page. Checks that need only one
file live here; checks across files (``parent``) live in :mod:`prolo.knowledge.loader`.

Validate a parsed file with :func:`parse_condition`, which also checks that the id
equals the file's stem.
"""

from __future__ import annotations

import math
import re
import warnings
from datetime import date
from functools import cache
from types import ModuleType
from typing import Annotated, Any, Literal, TypeVar, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationInfo,
    field_validator,
    model_validator,
)

KEBAB = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# An ICD-10-CM prefix for matching: a letter, two characters, then an optional dot
# and up to four more; enough to match a category (M17) or a subcategory (M54.5).
ICD10_PREFIX = re.compile(r"^[A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{0,4})?$")
PMID = re.compile(r"^[1-9][0-9]{0,8}$")
DOI = re.compile(r"^10\.\d{4,9}/\S+$")
SNOMED_ID = re.compile(r"^[1-9][0-9]{5,17}$")

BodyRegion = Literal[
    "neck",
    "thoracic_spine",
    "lumbar_spine",
    "pelvis",
    "shoulder",
    "elbow",
    "wrist_hand",
    "hip",
    "knee",
    "ankle_foot",
    "jaw",
    "widespread",
    "multiple",
]
ComplaintKey = Literal[
    "neck",
    "upper_back",
    "lower_back",
    "pelvis_buttock",
    "shoulder",
    "elbow",
    "wrist_hand",
    "hip",
    "knee",
    "ankle_foot",
    "heel",
    "jaw",
    "widespread",
]
COMPLAINT_KEYS: frozenset[str] = frozenset(ComplaintKey.__args__)  # type: ignore[attr-defined]
EvidenceGrade = Literal["high", "moderate", "low", "very_low", "insufficient"]
StudyDesign = Literal[
    "rct", "meta_analysis", "systematic_review", "cohort", "case_series", "non_randomized"
]
SourceGrade = Literal["primary", "secondary"]
EffectMeasure = Literal["MD", "SMD", "RR", "OR", "percent_change", "other"]
Favours = Literal["prolotherapy", "comparator", "neither", "unclear"]

T = TypeVar("T")
# YAML gives lists; the models keep tuples so a cached, shared Condition cannot be
# mutated by a caller. Strict(False) lets the list become a tuple while the items
# stay strictly typed.
Seq = Annotated[tuple[T, ...], Strict(False)]
Text = Annotated[str, Field(min_length=1)]
KebabId = Annotated[str, Field(pattern=KEBAB.pattern)]


@cache
def _icd() -> ModuleType:
    # Imported on first use: building the code table takes about two seconds.
    # simple-icd-10-cm 1.5 reads it with a deprecated importlib call, which pytest's
    # warnings-as-errors would turn into a failure.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import simple_icd_10_cm

    return cast(ModuleType, simple_icd_10_cm)


def is_billable_icd10cm(code: str) -> bool:
    """True when ``code`` is a valid, billable (leaf) ICD-10-CM code."""
    return bool(_icd().is_valid_item(code) and _icd().is_leaf(code))


def icd10cm_description(code: str) -> str:
    """The official description of a valid ICD-10-CM code; ValueError when invalid."""
    if not _icd().is_valid_item(code):
        raise ValueError(f"{code!r} is not an ICD-10-CM code")
    return str(_icd().get_description(code))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class IcdCode(_Model):
    """A billable ICD-10-CM code; ``display`` is its official description."""

    code: str
    display: Text

    @model_validator(mode="after")
    def _billable(self) -> IcdCode:
        if not is_billable_icd10cm(self.code):
            raise ValueError(f"{self.code!r} is not a billable ICD-10-CM code")
        if "." not in self.code and len(self.code) > 3:
            raise ValueError(f"{self.code!r}: write the code with its dot")
        official = icd10cm_description(self.code)
        if self.display != official:
            raise ValueError(f"display of {self.code} must be the official {official!r}")
        return self


class SnomedCode(_Model):
    """A SNOMED CT concept id, with the authoritative page it was verified on."""

    code: Annotated[str, Field(pattern=SNOMED_ID.pattern)]
    display: Text
    url: Annotated[str, Field(pattern=r"^https?://\S+$")]
    locator: Text


class Codes(_Model):
    icd10cm: Seq[IcdCode]
    snomed: Seq[SnomedCode] = ()

    @field_validator("icd10cm")
    @classmethod
    def _unique(cls, value: tuple[IcdCode, ...]) -> tuple[IcdCode, ...]:
        seen = [c.code for c in value]
        if len(set(seen)) != len(seen):
            raise ValueError("ICD-10-CM codes repeat")
        return value


class Effect(_Model):
    """An effect read on the source page; never computed or estimated here."""

    measure: EffectMeasure
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    unit: Text
    favours: Favours

    @model_validator(mode="after")
    def _interval(self) -> Effect:
        if (self.ci_low is None) != (self.ci_high is None):
            raise ValueError("give both ci_low and ci_high, or neither")
        if self.ci_low is not None and self.ci_high is not None:
            if not self.ci_low <= self.ci_high:
                raise ValueError("ci_low is above ci_high")
        return self


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def sd_from_se(se: float, n: int) -> float:
    """The standard deviation behind a group mean's standard error: ``se * sqrt(n)``.

    Cochrane Handbook, "Obtaining standard deviations from standard errors and
    confidence intervals for group means" (section 7.7.3.2 of version 5.1).
    """
    return se * math.sqrt(n)


def sd_from_ci95(ci_low: float, ci_high: float, n: int) -> float:
    """The standard deviation behind a 95% confidence interval of a group mean.

    ``sqrt(n) * (ci_high - ci_low) / (2 * t)`` with ``t`` the 97.5% quantile of
    Student's t on ``n - 1`` degrees of freedom (the Handbook's 3.92 is ``2 * 1.96``,
    the large-sample limit; small trials need t).
    """
    from scipy import stats  # imported on use: loading the knowledge base stays light

    t = float(stats.t.ppf(0.975, n - 1))
    return math.sqrt(n) * (ci_high - ci_low) / (2 * t)


SpreadSource = Literal["sd", "se", "ci95"]
_SPREAD_KEYS = {"sd": ("sd",), "se": ("se",), "ci95": ("ci_low", "ci_high")}


class ArmSummary(_Model):
    """One arm's mean, spread and size exactly as the trial printed them.

    ``sd_from`` says which spread was printed: ``sd`` (write ``sd``), ``se`` (write
    ``se``, the standard error of the arm's mean) or ``ci95`` (write ``ci_low`` and
    ``ci_high``, the 95% confidence interval of the arm's mean). For ``se`` and
    ``ci95``, ``sd`` is derived here (:func:`sd_from_se`, :func:`sd_from_ci95`) and
    must not be written in the file, so the file holds only printed numbers.
    """

    label: Text | None = None
    mean: float
    sd: Annotated[float, Field(gt=0)]
    n: Annotated[int, Field(ge=1)]
    sd_from: SpreadSource = "sd"
    se: Annotated[float, Field(gt=0)] | None = None
    ci_low: float | None = None
    ci_high: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _derive_sd(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        source = data.get("sd_from", "sd")
        if source not in _SPREAD_KEYS:
            return data  # the field's own check names the allowed values
        for other, keys in _SPREAD_KEYS.items():
            if other in (source, "sd"):
                continue
            given = [k for k in keys if data.get(k) is not None]
            if given:
                raise ValueError(f"sd_from {source!r} does not use {', '.join(given)}")
        if source == "sd":
            return data
        missing = [k for k in _SPREAD_KEYS[source] if data.get(k) is None]
        if missing:
            raise ValueError(f"sd_from {source!r} needs {', '.join(missing)}")
        n = data.get("n")
        values = [data[k] for k in _SPREAD_KEYS[source]]
        if not (isinstance(n, int) and not isinstance(n, bool) and n >= 2):
            if isinstance(n, int) and not isinstance(n, bool):
                raise ValueError(f"sd_from {source!r} needs n of at least 2; got n={n}")
            return data  # n's own check reports the wrong type
        if not all(_number(v) for v in values):
            return data
        if source == "se":
            derived = sd_from_se(float(values[0]), n)
        else:
            low, high = float(values[0]), float(values[1])
            if not low < high:
                raise ValueError("ci_low must be below ci_high")
            mean = data.get("mean")
            if isinstance(mean, int | float) and not low <= mean <= high:
                raise ValueError(f"mean {mean} lies outside its interval {low} to {high}")
            derived = sd_from_ci95(low, high, n)
        # A dump of this model carries the derived sd; reading it back must agree.
        given_sd = data.get("sd")
        if given_sd is not None:
            if not (_number(given_sd) and math.isclose(given_sd, derived, rel_tol=1e-9)):
                raise ValueError(f"sd_from {source!r}: leave sd out, it is derived")
        return {**data, "sd": derived}


class Scale(_Model):
    """The instrument's range, e.g. 0 to 100 for WOMAC on a 100-point scale."""

    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> Scale:
        if not self.low < self.high:
            raise ValueError("low must be below high")
        return self


class Pooling(_Model):
    """Arm-level numbers for the meta-analysis engine, with where they were read.

    ``better`` says which direction of ``mean`` is good for the patient and ``kind``
    whether the means are scores at follow-up or changes from baseline; all pooled
    trials of one condition must agree on both (see ``Condition``), so the
    standardized mean differences point the same way. ``url``, ``locator`` and
    ``grade`` say where these numbers were read, which may be a different page
    from the study's own (a results table, or a review's extraction).
    """

    outcome: Text
    better: Literal["higher", "lower"]
    kind: Literal["score", "change"]
    scale: Scale
    treatment: ArmSummary
    control: ArmSummary
    url: Annotated[str, Field(pattern=r"^https?://\S+$")]
    locator: Text
    grade: SourceGrade

    @model_validator(mode="after")
    def _plausible(self) -> Pooling:
        width = self.scale.high - self.scale.low
        for name in ("treatment", "control"):
            arm: ArmSummary = getattr(self, name)
            if self.kind == "score":
                low, high = self.scale.low, self.scale.high
                # Bhatia-Davis: on [low, high] a variable with this mean cannot spread
                # more than this (times the n / (n - 1) of a sample SD); a larger "SD"
                # is a misprint or a different statistic.
                limit = math.sqrt(max(arm.mean - low, 0.0) * max(high - arm.mean, 0.0))
                if arm.n > 1:
                    limit *= math.sqrt(arm.n / (arm.n - 1))
            else:
                low, high, limit = -width, width, width
            if not low <= arm.mean <= high:
                raise ValueError(f"{name}.mean {arm.mean} is outside {low} to {high}")
            if arm.sd > limit:
                raise ValueError(
                    f"{name}.sd {arm.sd:.4g} is larger than a {self.kind} with mean "
                    f"{arm.mean} on {self.scale.low} to {self.scale.high} can have "
                    f"({limit:.4g})"
                )
        return self


class Study(_Model):
    """One source: every figure in it comes from the page at ``url``."""

    id: KebabId
    design: StudyDesign
    first_author: Text
    year: Annotated[int, Field(ge=1900, le=2100)]
    journal: Text
    pmid: Annotated[str, Field(pattern=PMID.pattern)] | None = None
    doi: Annotated[str, Field(pattern=DOI.pattern)] | None = None
    url: Annotated[str, Field(pattern=r"^https?://\S+$")]
    locator: Text
    grade: SourceGrade
    n_patients: Annotated[int, Field(ge=1)] | None = None
    comparator: Text | None = None
    injectate: Text | None = None
    instrument: Text | None = None
    follow_up: Text | None = None
    main_result: Text
    effect: Effect | None = None
    conclusion: Text
    conflict_of_interest: Text | None = None
    pooling: Pooling | None = None


class Claim(_Model):
    """A claim made about prolotherapy, checked against the file's studies."""

    claim: Text
    assessment: Text
    study_ids: Annotated[Seq[KebabId], Field(min_length=1)]


class Range(_Model):
    low: Annotated[float, Field(ge=0)]
    high: Annotated[float, Field(ge=0)]

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.low > self.high:
            raise ValueError("low is above high")
        return self


class IntRange(_Model):
    low: Annotated[int, Field(ge=1)]
    high: Annotated[int, Field(ge=1)]

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.low > self.high:
            raise ValueError("low is above high")
        return self


class ProtocolSource(_Model):
    study_id: KebabId
    locator: Text


_PROTOCOL_FIELDS = (
    "injectate",
    "dextrose_percent",
    "anaesthetic",
    "volume_per_site_ml",
    "sessions",
    "interval_weeks",
)


class Protocol(_Model):
    """A published injection protocol, or ``insufficient_evidence`` with no figures."""

    status: Literal["published", "insufficient_evidence"]
    injectate: Text | None = None
    dextrose_percent: Range | None = None
    anaesthetic: Text | None = None
    volume_per_site_ml: Range | None = None
    sessions: IntRange | None = None
    interval_weeks: Range | None = None
    sources: Seq[ProtocolSource] = ()

    @model_validator(mode="after")
    def _status_fits(self) -> Protocol:
        if self.status == "insufficient_evidence":
            filled = [name for name in _PROTOCOL_FIELDS if getattr(self, name) is not None]
            if filled or self.sources:
                named = ", ".join([*filled, *(["sources"] if self.sources else [])])
                raise ValueError(f"status insufficient_evidence must leave empty: {named}")
        else:
            if not self.sources:
                raise ValueError("a published protocol needs sources")
            if self.injectate is None:
                raise ValueError("a published protocol needs its injectate")
            if self.dextrose_percent is not None and self.dextrose_percent.high > 50:
                raise ValueError("dextrose_percent above 50 is not a prolotherapy dose")
        return self


class Match(_Model):
    """How screening recognises the condition."""

    icd10_prefixes: Seq[Annotated[str, Field(pattern=ICD10_PREFIX.pattern)]] = ()
    complaint_keys: Seq[ComplaintKey] = ()


class Condition(_Model):
    """One condition file. See docs/knowledge-format.md for each field's meaning."""

    id: KebabId
    version: Annotated[int, Field(ge=1)]
    reviewed: date
    parent: KebabId | None = None
    lay_name: Text
    clinical_name: Text
    synonyms: Seq[Text] = ()
    body_region: BodyRegion
    tissues: Seq[Text] = ()
    codes: Codes
    evidence_grade: EvidenceGrade
    grade_reason: Text
    summary_patient: Annotated[str, Field(min_length=40)]
    summary_clinician: Annotated[str, Field(min_length=40)]
    # validate_default: the grade check must also run when studies are left out.
    studies: Seq[Study] = Field(default=(), validate_default=True)
    claims: Seq[Claim] = ()
    protocol: Protocol
    instruments: Seq[KebabId] = ()
    match: Match

    # Cross-field checks are field validators (fields validate in declaration order,
    # so earlier fields are in ``info.data``) so that errors carry the field's path.

    @field_validator("id")
    @classmethod
    def _id_is_file_stem(cls, value: str, info: ValidationInfo) -> str:
        stem = (info.context or {}).get("file_stem")
        if stem is not None and value != stem:
            raise ValueError(f"id {value!r} must equal the file name {stem!r}")
        return value

    @field_validator("parent")
    @classmethod
    def _parent_not_self(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and value == info.data.get("id"):
            raise ValueError("parent must not be the condition itself")
        return value

    @field_validator("studies")
    @classmethod
    def _studies_fit(cls, value: tuple[Study, ...], info: ValidationInfo) -> tuple[Study, ...]:
        ids = [s.id for s in value]
        repeated = sorted({s for s in ids if ids.count(s) > 1})
        if repeated:
            raise ValueError(f"study ids repeat: {', '.join(repeated)}")
        grade = info.data.get("evidence_grade")
        if grade is not None and grade != "insufficient" and not value:
            raise ValueError(f"evidence_grade {grade!r} needs at least one study")
        # Pooled effects are "prolotherapy minus comparator": they point the same way
        # only if every pooled trial's outcome does, and SMDs of changes and of
        # follow-up scores do not mix.
        pooled = [s for s in value if s.design == "rct" and s.pooling is not None]
        for attr in ("better", "kind"):
            seen = {getattr(s.pooling, attr) for s in pooled}
            if len(seen) > 1:
                named = ", ".join(f"{s.id}: {getattr(s.pooling, attr)}" for s in pooled)
                raise ValueError(f"pooling.{attr} differs between trials ({named})")
        return value

    @field_validator("claims")
    @classmethod
    def _claims_cite_studies(
        cls, value: tuple[Claim, ...], info: ValidationInfo
    ) -> tuple[Claim, ...]:
        known = {s.id for s in info.data.get("studies", ())}
        for n, claim in enumerate(value):
            for sid in claim.study_ids:
                if sid not in known:
                    raise ValueError(f"claims[{n}].study_ids: unknown study {sid!r}")
        return value

    @field_validator("protocol")
    @classmethod
    def _protocol_cites_studies(cls, value: Protocol, info: ValidationInfo) -> Protocol:
        known = {s.id for s in info.data.get("studies", ())}
        for n, src in enumerate(value.sources):
            if src.study_id not in known:
                raise ValueError(f"sources[{n}].study_id: unknown study {src.study_id!r}")
        return value

    @field_validator("instruments")
    @classmethod
    def _instruments_unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("instrument ids repeat")
        return value

    def study(self, study_id: str) -> Study:
        """The study with this id; KeyError naming it when there is none."""
        for study in self.studies:
            if study.id == study_id:
                return study
        raise KeyError(f"condition {self.id!r} has no study {study_id!r}")


def parse_condition(data: Any, *, file_stem: str | None = None) -> Condition:
    """Validate one parsed file; ``file_stem`` (when given) must equal its id.

    Raises pydantic's ``ValidationError``; the loader turns it into a
    ``KnowledgeError`` naming the file and field.
    """
    return Condition.model_validate(data, context={"file_stem": file_stem})
