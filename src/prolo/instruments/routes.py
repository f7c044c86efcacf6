"""JSON API for the instrument catalog: list, describe, score without storing, and a
clinic's licensed wording."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel

from prolo.errors import NotFound
from prolo.instruments.base import Instrument, Source
from prolo.instruments.catalog import get_instrument, instruments
from prolo.instruments.questionnaire import is_structure_only, load_questionnaire
from prolo.portal import service as portal
from prolo.portal.answers import form_items
from prolo.portal.schemas import (
    AnswersIn,
    ComputedScore,
    LicensedTextIn,
    LicensedTextOut,
    ScoreResultOut,
)
from prolo.security.principal import Principal
from prolo.web import DbSession, policy

router = APIRouter(prefix="/api/instruments", tags=["instruments"])

Anyone = Annotated[Principal, policy("authenticated")]
Scorer = Annotated[Principal, policy("authenticated", scope="read")]
Admin = Annotated[Principal, policy("admin")]
InstrumentId = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[a-z0-9\-]+$")]


class SourceOut(BaseModel):
    source: str
    url: str
    locator: str
    grade: Literal["primary", "secondary"]


class McidOut(BaseModel):
    value: float
    unit: str
    note: str
    source: SourceOut


class ScoreSpecOut(BaseModel):
    key: str
    name: str
    low: float
    high: float
    direction: str
    mcid: McidOut | None


class InstrumentOut(BaseModel):
    id: str
    name: str
    short_name: str
    loinc: str | None
    licence: str
    licence_note: str
    items: int
    scores: list[ScoreSpecOut]
    scoring_source: SourceOut


class OptionOut(BaseModel):
    code: str
    display: str
    ordinal: float


class ItemOut(BaseModel):
    link_id: str
    type: str
    text: str
    prefix: str
    group: str
    required: bool
    low: float
    high: float
    options: list[OptionOut]


class InstrumentDetailOut(InstrumentOut):
    structure_only: bool
    questionnaire_items: list[ItemOut]


def _source(source: Source) -> SourceOut:
    return SourceOut(
        source=source.source, url=source.url, locator=source.locator, grade=source.grade
    )


def _out(instrument: Instrument) -> dict[str, Any]:
    return {
        "id": instrument.id,
        "name": instrument.name,
        "short_name": instrument.short_name,
        "loinc": instrument.loinc,
        "licence": instrument.licence,
        "licence_note": instrument.licence_note,
        "items": len(instrument.item_ids),
        "scores": [
            ScoreSpecOut(
                key=spec.key,
                name=spec.name,
                low=spec.low,
                high=spec.high,
                direction=spec.direction,
                mcid=McidOut(
                    value=spec.mcid.value,
                    unit=spec.mcid.unit,
                    note=spec.mcid.note,
                    source=_source(spec.mcid.source),
                )
                if spec.mcid
                else None,
            )
            for spec in instrument.scores
        ],
        "scoring_source": _source(instrument.scoring_source),
    }


def _known(instrument_id: str) -> Instrument:
    try:
        return get_instrument(instrument_id)
    except KeyError:
        raise NotFound(f"unknown instrument {instrument_id!r}", field="instrument_id") from None


@router.get("", response_model=list[InstrumentOut])
def list_instruments(principal: Anyone) -> list[InstrumentOut]:
    """Every instrument: id, name, LOINC where any, score ranges, direction, MCID, licence."""
    return [InstrumentOut(**_out(i)) for i in instruments().values()]


@router.get("/{instrument_id}", response_model=InstrumentDetailOut)
def describe_instrument(
    session: DbSession, principal: Anyone, instrument_id: InstrumentId
) -> InstrumentDetailOut:
    """One instrument with its items, in the wording the caller's clinic loaded if any."""
    instrument = _known(instrument_id)
    questionnaire = (
        portal.clinic_questionnaire(session, principal.clinic_id, instrument.id)
        if principal.role != "researcher"
        else load_questionnaire(instrument.id)
    )
    items = [
        ItemOut(
            link_id=f.item.link_id,
            type=f.item.type,
            text=f.item.text,
            prefix=f.item.prefix,
            group=f.group,
            required=f.item.required,
            low=f.item.low,
            high=f.item.high,
            options=[
                OptionOut(code=o.code, display=o.display, ordinal=o.ordinal) for o in f.item.options
            ],
        )
        for f in form_items(questionnaire)
    ]
    return InstrumentDetailOut(
        **_out(instrument),
        structure_only=is_structure_only(questionnaire),
        questionnaire_items=items,
    )


@router.post("/{instrument_id}/score", response_model=ScoreResultOut)
def score_instrument(
    principal: Scorer, instrument_id: InstrumentId, data: AnswersIn
) -> ScoreResultOut:
    """Score an answer set without storing it (for integrations).

    An unknown item, a wrong type or an out-of-range value is a 422 naming the item;
    too many missing items is a 422 naming the items the rule concerns.
    """
    instrument = _known(instrument_id)
    scores = portal.score_answers(instrument, data.answers)
    return ScoreResultOut(
        instrument_id=instrument.id,
        scores=[
            ComputedScore(
                key=s.key,
                name=instrument.spec(s.key).name,
                value=s.value,
                low=s.low,
                high=s.high,
                direction=s.direction,
                items_answered=s.items_answered,
                items_total=s.items_total,
                mcid=m.value if (m := instrument.spec(s.key).mcid) else None,
            )
            for s in scores.scores
        ],
    )


@router.put("/{instrument_id}/licensed-text", response_model=LicensedTextOut)
def load_licensed_text(
    session: DbSession, principal: Admin, instrument_id: InstrumentId, data: LicensedTextIn
) -> LicensedTextOut:
    """Load the clinic's licensed wording (validated against the questionnaire first)."""
    row, complete = portal.load_instrument_text(
        session=session, principal=principal, instrument_id=instrument_id, items=data.items
    )
    return LicensedTextOut(
        instrument_id=row.instrument_id,
        items=len(data.items),
        complete=complete,
        loaded_at=row.loaded_at,
    )
