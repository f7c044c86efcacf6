"""What crosses the API for the outcomes registry."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FollowUpTimepoint = Literal["baseline", "week_6", "month_3", "month_6", "month_12"]
# The opioids of the CDC table (prolo.outcomes.mme.CONVERSION_FACTORS; a test keeps them equal).
Drug = Literal[
    "codeine",
    "fentanyl_transdermal",
    "hydrocodone",
    "hydromorphone",
    "methadone",
    "morphine",
    "oxycodone",
    "oxymorphone",
    "tapentadol",
    "tramadol",
]


class OpioidIn(BaseModel):
    """One opioid and its total daily dose: mg/day, or mcg/hr for a fentanyl patch."""

    model_config = ConfigDict(extra="forbid")

    drug: Drug
    daily_dose: float = Field(ge=0, le=10_000)


class FollowUpIn(BaseModel):
    """Surgery plans and pain-medicine use at one course timepoint; omit what was not asked."""

    model_config = ConfigDict(extra="forbid")

    timepoint: FollowUpTimepoint
    surgery_planned: bool | None = None
    surgery_done: bool | None = None
    pain_medicine_use: bool | None = None
    opioid_use: bool | None = None
    opioids: list[OpioidIn] = Field(default_factory=list, max_length=10)

    @model_validator(mode="after")
    def _consistent(self) -> FollowUpIn:
        if self.timepoint == "baseline" and self.surgery_done is not None:
            raise ValueError("surgery_done is asked at follow-ups, not at baseline")
        if self.opioids and self.opioid_use is False:
            raise ValueError("opioids are listed but opioid_use is false")
        return self


class OpioidOut(BaseModel):
    drug: str
    daily_dose: float
    unit: str
    factor: float


class FollowUpOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    course_id: int
    timepoint: str
    surgery_planned: bool | None
    surgery_done: bool | None
    pain_medicine_use: bool | None
    opioid_use: bool | None
    opioid_mme_per_day: float | None
    opioids: list[OpioidOut]
    recorded_at: dt.datetime
