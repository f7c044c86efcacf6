"""What crosses the API for procedure records: the documented injection session.

Numeric bounds here are plausibility checks on typed input (a volume of 0 or 5000 mL is
a typing error), not clinical limits; the clinician decides doses and sites.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

from prolo.knowledge.schema import BodyRegion

Id = Annotated[int, Field(ge=1, le=2_147_483_647)]
Side = Literal["left", "right", "midline", "bilateral"]
Guidance = Literal["landmark", "ultrasound"]
AdverseKind = Literal[
    "pain", "bleeding", "nerve_irritation", "vasovagal", "allergic_reaction", "other"
]
Severity = Literal["mild", "moderate", "severe"]
Percent = Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]
Millilitres = Annotated[float, Field(gt=0, le=200, allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1, max_length=100)]
Note = Annotated[str, Field(max_length=4000)]
VOLUME_TOLERANCE_ML = 0.05  # rounding of typed volumes; larger gaps are a mismatch

ADVERSE_LABELS: dict[str, str] = {
    "pain": "Pain beyond the expected injection discomfort",
    "bleeding": "Bleeding",
    "nerve_irritation": "Nerve irritation (numbness, tingling)",
    "vasovagal": "Fainting or near-fainting (vasovagal)",
    "allergic_reaction": "Allergic reaction",
    "other": "Other (describe)",
}


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class InjectateIn(_In):
    """What was injected: the solution and its strength, the anaesthetic, the total."""

    solution: Name = Field(description="for example dextrose")
    concentration_percent: Percent
    anaesthetic: Name | None = Field(default=None, description="for example lidocaine")
    anaesthetic_concentration_percent: Percent | None = None
    total_volume_ml: Millilitres

    @model_validator(mode="after")
    def _anaesthetic_pair(self) -> InjectateIn:
        if (self.anaesthetic is None) != (self.anaesthetic_concentration_percent is None):
            raise ValueError("give the anaesthetic and its concentration together, or neither")
        return self


class SiteIn(_In):
    """One injection: a site from the region's list, the side, the volume given there."""

    site_id: str = Field(min_length=1, max_length=60)
    side: Side
    volume_ml: Millilitres


class NeedleIn(_In):
    gauge: int = Field(ge=10, le=34, description="needle gauge (G)")
    length_mm: float = Field(ge=3, le=200, allow_inf_nan=False)


class AdverseEventIn(_In):
    """An immediate adverse event during or right after the session."""

    kind: AdverseKind
    severity: Severity
    description: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _other_described(self) -> AdverseEventIn:
        if self.kind == "other" and not self.description:
            raise ValueError("describe an adverse event of kind 'other'")
        return self


class AftercareIn(_In):
    """Which parts of the aftercare advice (``prolo.courses.procedures.AFTERCARE``) were given."""

    normal_activity: StrictBool
    expected_inflammation: StrictBool
    pain_advice: StrictBool
    when_to_call: StrictBool
    note: str | None = Field(default=None, max_length=1000)


class HistoryCheck(_In):
    """The safety history re-checked before injecting (the screening engine's questions)."""

    infection_at_site: StrictBool
    systemic_infection: StrictBool
    bleeding_disorder: StrictBool
    fracture_at_site: StrictBool
    prosthetic_joint_at_site: StrictBool
    immunosuppressed: StrictBool
    malignancy_at_site: StrictBool
    diabetes: StrictBool
    diabetes_controlled: StrictBool | None = None


class PreCheckIn(_In):
    """The clinician's answers for the pre-procedure re-check.

    Allergies to the injectate's own components are also read from the chart, and the
    consent from the course: neither can be answered away here.
    """

    pain_duration_weeks: float = Field(ge=0, le=5200, allow_inf_nan=False)
    red_flags: dict[str, StrictBool]
    history: HistoryCheck
    anticoagulant: StrictBool
    antiplatelet: StrictBool
    allergy_local_anaesthetic: StrictBool
    allergy_dextrose: StrictBool
    pregnant: StrictBool | None = None


class ProcedureIn(_In):
    """A procedure record as documented (a draft until signed)."""

    performed_at: AwareDatetime
    appointment_id: Id | None = None
    course_id: Id | None = None
    practitioner_id: Id | None = None
    body_region: BodyRegion
    injectate: InjectateIn
    sites: list[SiteIn] = Field(min_length=1, max_length=60)
    guidance: Guidance
    needle: NeedleIn
    checks: PreCheckIn
    adverse_events: list[AdverseEventIn] = Field(default_factory=list, max_length=20)
    aftercare: AftercareIn
    note: Note | None = None

    @field_validator("performed_at")
    @classmethod
    def _not_in_future(cls, value: dt.datetime) -> dt.datetime:
        if value > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10):
            raise ValueError("must not be in the future")
        return value

    @model_validator(mode="after")
    def _volumes_add_up(self) -> ProcedureIn:
        given = sum(site.volume_ml for site in self.sites)
        if abs(given - self.injectate.total_volume_ml) > VOLUME_TOLERANCE_ML:
            raise ValueError(
                f"the sites' volumes add up to {given:g} mL but the total volume is "
                f"{self.injectate.total_volume_ml:g} mL"
            )
        return self


class AmendmentIn(ProcedureIn):
    """A correction of a signed record: the whole corrected record and why."""

    reason: str = Field(min_length=3, max_length=1000)


class ProcedureUpdate(ProcedureIn):
    """A draft's new content; a draft amendment may also restate its reason."""

    reason: str | None = Field(default=None, min_length=3, max_length=1000)


class ScreeningReasonOut(BaseModel):
    rule_id: str
    kind: str
    clinician_message: str


class PreCheckOut(BaseModel):
    consent_on_file: bool
    consent_id: int | None
    decision: str
    reasons: list[ScreeningReasonOut]
    checked_at: dt.datetime
    safety_rules_version: int


class ProcedureOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    status: Literal["draft", "signed"]
    patient_id: int
    course_id: int | None
    appointment_id: int | None
    practitioner_id: int
    performed_at: dt.datetime
    body_region: str | None
    injectate: InjectateIn
    sites: list[SiteIn]
    guidance: Guidance
    needle: NeedleIn
    checks: PreCheckIn
    pre_check: PreCheckOut
    adverse_events: list[AdverseEventIn]
    aftercare: AftercareIn
    note: str | None
    signed_at: dt.datetime | None
    signed_by_name: str | None
    amends_id: int | None
    amended_by_id: int | None = None
    amendment_reason: str | None
    created_at: dt.datetime
    updated_at: dt.datetime | None


class SiteOut(BaseModel):
    id: str
    label: str
    cited: bool


class RegionSitesOut(BaseModel):
    body_region: str
    label: str
    sites: list[SiteOut]
