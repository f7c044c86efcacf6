"""What crosses the API for questionnaires, scores, the flare diary, alerts and links."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from prolo.web import MAX_ROW_ID

Timepoint = Literal["baseline", "pre_session", "week_6", "month_3", "month_6", "month_12", "ad_hoc"]
ResponseStatus = Literal["in-progress", "completed"]
FollowUp = Literal["week_6", "month_3", "month_6", "month_12"]
MAX_ITEMS = 200


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class AnswersIn(_In):
    """An answer set: ``{linkId: number or null}``; types are checked item by item."""

    answers: dict[str, Any] = Field(max_length=MAX_ITEMS)


class ResponseIn(AnswersIn):
    """A questionnaire response to store: completed (scored) or in progress (a draft)."""

    instrument_id: str = Field(min_length=1, max_length=40)
    timepoint: Timepoint = "ad_hoc"
    status: ResponseStatus = "completed"
    course_id: int | None = Field(default=None, ge=1, le=MAX_ROW_ID)
    authored_at: dt.datetime | None = Field(
        default=None, description="when it was answered (a paper form's date); default now"
    )
    idempotency_key: str | None = Field(
        default=None,
        min_length=8,
        max_length=80,
        pattern=r"^[A-Za-z0-9_.:\-]+$",
        description="a retry with the same key is not stored twice (or send Idempotency-Key)",
    )

    @field_validator("authored_at")
    @classmethod
    def _aware_and_past(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("must include a time zone offset")
        if value > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5):
            raise ValueError("must not be in the future")
        return value


class DraftUpdateIn(AnswersIn):
    """New answers for a draft, and whether to complete it now."""

    status: ResponseStatus = "in-progress"


class ScoreOut(BaseModel):
    """One score of a response: an Observation (instrument, score, subscale, time)."""

    model_config = ConfigDict(from_attributes=True)

    response_id: int
    instrument_id: str
    score_key: str
    value: float
    effective_at: dt.datetime


class ResponseOut(BaseModel):
    id: int
    patient_id: int
    course_id: int | None
    instrument_id: str
    timepoint: str
    status: str
    answers: dict[str, Any]
    authored_at: dt.datetime
    idempotency_key: str | None
    scores: list[ScoreOut]


class ComputedScore(BaseModel):
    key: str
    name: str
    value: float
    low: float
    high: float
    direction: str
    items_answered: int
    items_total: int
    mcid: float | None


class ScoreResultOut(BaseModel):
    """Scores of an answer set, computed and not stored."""

    instrument_id: str
    scores: list[ComputedScore]


class DueItemOut(BaseModel):
    course_id: int | None
    timepoint: str
    label: str
    instrument_id: str
    instrument_name: str
    status: str
    opens_at: dt.datetime
    due_by: dt.datetime | None
    closes_at: dt.datetime | None
    appointment_id: int | None
    response_id: int | None
    draft: bool


class DiaryEntryIn(_In):
    """One diary day after an injection session."""

    appointment_id: int = Field(ge=1, le=MAX_ROW_ID)
    day: int = Field(ge=1, le=7, description="1 is the day of the session")
    pain: int = Field(ge=0, le=10, strict=True, description="pain at the treated site, 0-10")
    swelling: Literal["none", "some", "marked"]
    redness: Literal["none", "at_site", "spreading"]
    warmth: bool = Field(strict=True)
    fever: bool = Field(strict=True)
    normal_activity: bool = Field(strict=True)


class RedFlagOut(BaseModel):
    sign_id: str
    sign: str
    reason: str
    patient_message: str


class DiaryEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    appointment_id: int
    day: int
    pain: int
    swelling: str
    redness: str
    warmth: bool
    fever: bool
    normal_activity: bool
    red_flags: list[str]
    recorded_at: dt.datetime


class DiaryResultOut(BaseModel):
    entry: DiaryEntryOut
    red_flags: list[RedFlagOut]
    advice: str | None
    alert_id: int | None


class AlertOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    patient_id: int
    kind: str
    signs: list[str]
    diary_entry_id: int | None
    created_at: dt.datetime
    acknowledged_at: dt.datetime | None


class PortalLinkIn(_In):
    hours: int = Field(default=72, ge=1, le=24 * 14, description="how long the link stays valid")


class PortalLinkOut(BaseModel):
    url: str
    expires_at: dt.datetime


class ScheduleIn(_In):
    """A clinic's questionnaire schedule (see ``prolo.portal.schedule``)."""

    pre_session: bool = True
    follow_up_days: dict[FollowUp, int] = Field(
        default={"week_6": 42, "month_3": 91, "month_6": 182, "month_12": 365}
    )
    open_days_before: int = Field(default=7, ge=0, le=60)
    due_hours_before_session: int = Field(default=24, ge=0, le=168)
    follow_up_due_days: int = Field(default=7, ge=0, le=60)
    last_follow_up_grace_days: int = Field(default=90, ge=0, le=365)


class ScheduleOut(ScheduleIn):
    model_config = ConfigDict(extra="ignore")


class LicensedTextIn(_In):
    """A clinic's licensed wording: the same shape as the file ``prolo.instruments.texts``
    reads (``{"items": {linkId: text or {text, answers}}}``)."""

    items: dict[str, Any] = Field(min_length=1, max_length=MAX_ITEMS)


class LicensedTextOut(BaseModel):
    instrument_id: str
    items: int
    complete: bool
    loaded_at: dt.datetime
