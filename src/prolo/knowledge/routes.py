"""Public JSON API of the knowledge base: conditions with their evidence.

No login: this is published, sourced information, not anyone's health data, so it is
not audited. Unknown ids are a 404 problem+json that names the id.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from prolo.errors import NotFound, ValidationFailed
from prolo.knowledge.loader import get_condition, load_conditions
from prolo.knowledge.schema import ComplaintKey, EvidenceGrade
from prolo.knowledge.schemas import (
    About,
    ConditionOut,
    ConditionSummary,
    condition_detail,
    condition_summary,
    load_about,
    search_conditions,
)
from prolo.web import policy

router = APIRouter(prefix="/api", tags=["knowledge"], dependencies=[policy("public")])


@router.get("/conditions", response_model=list[ConditionSummary])
def list_conditions(
    region: Annotated[
        ComplaintKey | None, Query(description="where the pain is (a self-check choice)")
    ] = None,
    q: Annotated[
        str, Query(max_length=100, description="name, synonym or ICD-10-CM code contains")
    ] = "",
    grade: Annotated[EvidenceGrade | None, Query(description="only this evidence grade")] = None,
) -> list[ConditionSummary]:
    """Every condition in the knowledge base with its evidence grade and cited studies."""
    found = search_conditions(load_conditions(), region=region, query=q, grade=grade)
    return [condition_summary(c) for c in found]


@router.get("/conditions/{condition_id}", response_model=ConditionOut)
def read_condition(condition_id: str) -> ConditionOut:
    """One condition: summaries, studies, claims checked against them, and the protocol."""
    if len(condition_id) > 100:
        raise ValidationFailed("condition_id is longer than any condition id", field="condition_id")
    try:
        condition = get_condition(condition_id)
    except KeyError:
        raise NotFound(
            f"no condition with id {condition_id!r}",
            field="condition_id",
            extra={"condition_id": condition_id},
        ) from None
    return condition_detail(condition)


@router.get("/prolotherapy", response_model=About)
def about_prolotherapy() -> About:
    """What prolotherapy is and is not, each statement with its sources."""
    return load_about()
