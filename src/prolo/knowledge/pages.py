"""The public explorer: "What can prolotherapy help with?", condition by condition.

No login needed; a logged-in visitor keeps their navigation. The pages show published,
sourced information only, so nothing here is audited.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from prolo import ui
from prolo.errors import NotFound
from prolo.knowledge.loader import get_condition, load_conditions
from prolo.knowledge.safety import load_safety_rules
from prolo.knowledge.schema import COMPLAINT_KEYS, Condition
from prolo.knowledge.schemas import (
    COMPLAINT_LABELS,
    DESIGN_LABELS,
    GRADE_LABELS,
    GRADE_MEANINGS,
    REGION_LABELS,
    SOURCE_KIND_LABELS,
    load_about,
    search_conditions,
)
from prolo.knowledge.synthesis import condition_syntheses
from prolo.web import DbSession, policy, resolve_principal

router = APIRouter(include_in_schema=False, dependencies=[policy("public")])

GRADE_ORDER = ("high", "moderate", "low", "very_low", "insufficient")


def explorer_context() -> dict[str, Any]:
    """Labels every explorer and self-check template uses."""
    return {
        "grade_labels": GRADE_LABELS,
        "grade_meanings": GRADE_MEANINGS,
        "region_labels": REGION_LABELS,
        "complaint_labels": COMPLAINT_LABELS,
        "design_labels": DESIGN_LABELS,
        "source_kind_labels": SOURCE_KIND_LABELS,
    }


@router.get("/conditions", response_class=HTMLResponse)
def condition_list(
    request: Request,
    session: DbSession,
    region: Annotated[str, Query(max_length=40)] = "",
    q: Annotated[str, Query(max_length=100)] = "",
    grade: Annotated[str, Query(max_length=20)] = "",
) -> HTMLResponse:
    """Every condition with its evidence grade; filter by where it hurts, name or grade."""
    # Unknown filter values are ignored rather than refused: a stale bookmark should
    # still show the list.
    region_key = region if region in COMPLAINT_KEYS else ""
    grade_key = grade if grade in GRADE_LABELS else ""
    conditions = load_conditions()
    found = search_conditions(
        conditions, region=region_key or None, query=q, grade=grade_key or None
    )
    return ui.render(
        request,
        "knowledge/list.html",
        principal=resolve_principal(request, session),
        conditions=found,
        total=len(conditions),
        region=region_key,
        q=q,
        grade=grade_key,
        grade_order=GRADE_ORDER,
        about=load_about(),
        **explorer_context(),
    )


@router.get("/conditions/{condition_id}", response_class=HTMLResponse)
def condition_page(request: Request, session: DbSession, condition_id: str) -> HTMLResponse:
    """One condition in plain language: evidence, studies, claims, protocol, and limits."""
    try:
        condition = get_condition(condition_id[:100])
    except KeyError:
        raise NotFound(
            "We have no page for that condition. The list of conditions shows every one we cover."
        ) from None
    conditions = load_conditions()
    return ui.render(
        request,
        "knowledge/detail.html",
        principal=resolve_principal(request, session),
        condition=condition,
        parent=conditions.get(condition.parent) if condition.parent else None,
        children=_children(condition, conditions),
        syntheses=[r.as_dict() for r in condition_syntheses(condition.id)],
        about=load_about(),
        warning_signs=load_safety_rules().post_injection_warning_signs,
        **explorer_context(),
    )


def _children(condition: Condition, conditions: dict[str, Condition]) -> list[Condition]:
    return sorted(
        (c for c in conditions.values() if c.parent == condition.id), key=lambda c: c.lay_name
    )
