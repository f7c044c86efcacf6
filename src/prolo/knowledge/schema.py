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


class ArmEvents(_Model):
    """One arm's count of participants with the event (e.g. responders) out of ``n``."""

    label: Text | None = None
    events: Annotated[int, Field(ge=0)]
    n: Annotated[int, Field(ge=1)]

    @model_validator(mode="after")
    def _events_fit(self) -> ArmEvents:
        if self.events > self.n:
            raise ValueError(f"events {self.events} is more than n {self.n}")
        return self


class ArmSize(_Model):
    """An arm known only by its size, when the trial printed a between-group difference.

    ``n`` is left out (null) when the source prints only the total randomised.
    """

    label: Text | None = None
    n: Annotated[int, Field(ge=1)] | None = None


Arm = ArmSummary | ArmEvents | ArmSize


def _arm(value: Any) -> Any:
    """Pick the arm shape by its keys, so an error names the fields of the intended shape."""
    if isinstance(value, dict):
        if "events" in value:
            return ArmEvents.model_validate(value)
        if "mean" in value:
            return ArmSummary.model_validate(value)
        if set(value) <= {"label", "n"}:
            return ArmSize.model_validate(value)
        return ArmSummary.model_validate(value)  # names what an arm with means needs
    return value


# The 97.5% point of the standard normal distribution, to more digits than the
# usual 1.96 so a difference read as "MD (95% CI)" round-trips exactly.
Z_975 = 1.959963984540054


class Difference(_Model):
    """A between-group difference (prolotherapy minus comparator) and its 95% CI, as printed.

    The sampling variance for generic inverse-variance pooling is derived here:
    ``se = (ci_high - ci_low) / (2 x 1.96)`` (Cochrane Handbook 6.3.1, "obtaining
    standard errors from confidence intervals"), which assumes the printed interval is
    symmetric on this scale; an interval that is not is refused (it is likely a ratio).
    """

    value: float
    ci_low: float
    ci_high: float

    @model_validator(mode="after")
    def _symmetric(self) -> Difference:
        if not self.ci_low < self.value < self.ci_high:
            raise ValueError(
                f"value {self.value} must lie inside its interval {self.ci_low} to {self.ci_high}"
            )
        mid = (self.ci_low + self.ci_high) / 2
        # Printed to two decimals, a symmetric interval's midpoint is within rounding of the value.
        if abs(mid - self.value) > 0.02 + 0.02 * (self.ci_high - self.ci_low):
            raise ValueError(
                f"interval {self.ci_low} to {self.ci_high} is not symmetric about {self.value}; "
                "a ratio or a skewed interval cannot give a standard error this way"
            )
        return self

    @property
    def se(self) -> float:
        """The standard error behind the 95% interval: width / (2 x 1.96)."""
        return (self.ci_high - self.ci_low) / (2 * Z_975)


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
    """One trial's numbers for one synthesis of its condition, with where they were read.

    Three shapes (docs/knowledge-format.md): arm means with a spread (``treatment`` and
    ``control`` with ``mean``), a between-group ``difference`` with its 95% CI (arms
    give only ``n``), or event counts (arms with ``events``; ``kind: responders``).
    ``better`` says which direction of this block's own numbers is good for the
    patient; the synthesis orients every trial to its own ``better`` (a difference
    reported the other way round is negated), so effects are only ever compared in
    the same direction. ``url``, ``locator`` and ``grade`` say where these numbers were
    read, which may be a different page from the study's own.
    """

    synthesis: KebabId
    outcome: Text
    better: Literal["higher", "lower"]
    kind: Literal["score", "change", "responders"]
    scale: Scale | None = None
    treatment: Arm
    control: Arm
    difference: Difference | None = None
    url: Annotated[str, Field(pattern=r"^https?://\S+$")]
    locator: Text
    grade: SourceGrade

    @field_validator("treatment", "control", mode="before")
    @classmethod
    def _arm_shape(cls, value: Any) -> Any:
        return _arm(value)

    @property
    def shape(self) -> Literal["means", "difference", "events"]:
        """Which of the three shapes this block has."""
        if self.kind == "responders":
            return "events"
        return "difference" if self.difference is not None else "means"

    @model_validator(mode="after")
    def _plausible(self) -> Pooling:
        arms = (self.treatment, self.control)
        if self.kind == "responders":
            if not all(isinstance(a, ArmEvents) for a in arms) or self.difference is not None:
                raise ValueError("kind responders takes arms with events and n, no difference")
            if self.scale is not None:
                raise ValueError("kind responders has no scale")
            return self
        if any(isinstance(a, ArmEvents) for a in arms):
            raise ValueError("arms with events need kind responders")
        if self.scale is None:
            raise ValueError(f"kind {self.kind} needs the instrument's scale")
        width = self.scale.high - self.scale.low
        if self.difference is not None:
            if not all(isinstance(a, ArmSize) for a in arms):
                raise ValueError("with a difference, arms give only label and n")
            d = self.difference
            if max(abs(d.ci_low), abs(d.ci_high)) > width:
                raise ValueError(f"difference interval is wider than the scale ({width:g})")
            return self
        if not all(isinstance(a, ArmSummary) for a in arms):
            raise ValueError("without a difference, both arms need mean, spread and n")
        for name in ("treatment", "control"):
            arm = cast(ArmSummary, getattr(self, name))
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


SynthesisMeasure = Literal["MD", "SMD", "RR"]


class Synthesis(_Model):
    """One comparison the condition's trials are pooled for (a forest plot of its own).

    Trials join it through their ``pooling.synthesis``. ``better`` is the direction of
    the pooled effect (prolotherapy versus comparator) that favours prolotherapy: MD
    and SMD effects of trials reported the other way round are negated to match; for
    ``RR`` the events must be of the kind ``better`` says (responders: higher).
    ``comparable_because`` says, in a sentence or two, why these trials belong
    together (condition, comparison, outcome construct, follow-up); ``caveats`` what
    still differs between them.
    """

    id: KebabId
    title: Text
    measure: SynthesisMeasure
    comparison: Text
    outcome: Text
    better: Literal["higher", "lower"]
    unit: Text | None = None
    comparable_because: Annotated[str, Field(min_length=40)]
    caveats: Text | None = None

    @model_validator(mode="after")
    def _unit_for_md(self) -> Synthesis:
        if self.measure == "MD" and self.unit is None:
            raise ValueError("measure MD needs the unit of the difference (e.g. WOMAC points)")
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
    syntheses: Seq[Synthesis] = ()
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
        _check_pooling(value, info.data.get("syntheses", ()))
        return value

    @field_validator("syntheses")
    @classmethod
    def _syntheses_unique(cls, value: tuple[Synthesis, ...]) -> tuple[Synthesis, ...]:
        ids = [s.id for s in value]
        repeated = sorted({s for s in ids if ids.count(s) > 1})
        if repeated:
            raise ValueError(f"synthesis ids repeat: {', '.join(repeated)}")
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


def _check_pooling(studies: tuple[Study, ...], syntheses: tuple[Synthesis, ...]) -> None:
    """Every pooled trial names a declared synthesis whose measure its numbers can give.

    Effects are "prolotherapy minus comparator", oriented by the synthesis's ``better``;
    SMDs of changes and of follow-up scores do not mix, raw MDs only share one scale,
    and a risk ratio only pools counts of the same kind of event.
    """
    declared = {s.id: s for s in syntheses}
    blocks = [(s, s.pooling) for s in studies if s.pooling is not None]
    for study, p in blocks:
        if study.design != "rct":
            raise ValueError(f"{study.id}: only randomised trials are pooled")
        if p.synthesis not in declared:
            raise ValueError(f"{study.id}: pooling.synthesis {p.synthesis!r} is not declared")
        synthesis = declared[p.synthesis]
        if synthesis.measure == "RR" and p.shape != "events":
            raise ValueError(f"{study.id}: synthesis {synthesis.id} (RR) needs event counts")
        if synthesis.measure != "RR" and p.shape == "events":
            raise ValueError(f"{study.id}: event counts need a synthesis with measure RR")
        if synthesis.measure == "SMD" and p.shape == "difference":
            raise ValueError(
                f"{study.id}: an SMD needs arm means and SDs, not a printed difference"
            )
        if synthesis.measure == "RR" and p.better != synthesis.better:
            raise ValueError(
                f"{study.id}: pooling.better {p.better!r} differs from synthesis "
                f"{synthesis.id}'s {synthesis.better!r}; a risk ratio cannot be turned round"
            )
    for synthesis in syntheses:
        members = [(s, p) for s, p in blocks if p.synthesis == synthesis.id]
        if synthesis.measure != "RR" and len({p.kind for _, p in members}) > 1:
            listing = ", ".join(f"{s.id}: {p.kind}" for s, p in members)
            raise ValueError(f"pooling.kind differs within synthesis {synthesis.id} ({listing})")
        if synthesis.measure == "MD":
            scales = {(p.scale.low, p.scale.high) for _, p in members if p.scale is not None}
            if len(scales) > 1:
                listing = ", ".join(
                    f"{s.id}: {p.scale.low:g} to {p.scale.high:g}"
                    for s, p in members
                    if p.scale is not None
                )
                raise ValueError(
                    f"a raw mean difference pools one scale; synthesis {synthesis.id} mixes "
                    f"{listing} (use SMD)"
                )


def parse_condition(data: Any, *, file_stem: str | None = None) -> Condition:
    """Validate one parsed file; ``file_stem`` (when given) must equal its id.

    Raises pydantic's ``ValidationError``; the loader turns it into a
    ``KnowledgeError`` naming the file and field.
    """
    return Condition.model_validate(data, context={"file_stem": file_stem})
