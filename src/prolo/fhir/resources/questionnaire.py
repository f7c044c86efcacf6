"""Questionnaire <- the instrument data files (``prolo.instruments``).

See: https://hl7.org/fhir/R4/questionnaire.html

Each instrument already ships as a FHIR R4 Questionnaire (``instruments/data/<id>.json``);
the server serves those files as they are. Their ids are the instrument ids and their
``url`` is the canonical a QuestionnaireResponse names. Read and search only: an
instrument is data plus scoring code, changed by a release, not through the API.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from sqlalchemy import true

from prolo.errors import AccessDenied
from prolo.fhir.errors import NotAllowed
from prolo.fhir.resources.base import READ, SEARCH, Context, DataMapping, Resource
from prolo.fhir.search import (
    DEFAULT_COUNT,
    MAX_COUNT,
    Param,
    SearchError,
    SearchQuery,
    split_token,
)


@cache
def all_questionnaires() -> dict[str, Resource]:
    """Every instrument's Questionnaire, keyed by id."""
    from prolo.instruments.catalog import instruments
    from prolo.instruments.questionnaire import load_questionnaire

    return {iid: load_questionnaire(iid) for iid in instruments()}


def by_url() -> dict[str, Resource]:
    return {q["url"]: q for q in all_questionnaires().values()}


def _token_match(values: list[dict[str, Any]], value: str, key: str) -> bool:
    system, code = split_token(value)
    for item in values:
        if system not in (None, "") and item.get("system") != system:
            continue
        if code is None or item.get(key) == code:
            return True
    return False


Filter = Callable[[Resource, str, str | None], bool]
FILTERS: dict[str, tuple[str, Filter, str]] = {
    "_id": ("token", lambda q, v, m: q["id"] == v, "The instrument id"),
    "url": ("uri", lambda q, v, m: q.get("url") == v, "The canonical URL"),
    "name": (
        "string",
        lambda q, v, m: str(q.get("name", "")).lower().startswith(v.lower()),
        "Computer-friendly name",
    ),
    "title": (
        "string",
        lambda q, v, m: (
            v.lower() in str(q.get("title", "")).lower()
            if m == "contains"
            else str(q.get("title", "")).lower().startswith(v.lower())
        ),
        "Human-friendly title",
    ),
    "status": ("token", lambda q, v, m: q.get("status") == split_token(v)[1], "draft | active"),
    "identifier": (
        "token",
        lambda q, v, m: _token_match(q.get("identifier", []), v, "value"),
        "urn:prolo:instrument|<id>",
    ),
    "code": (
        "token",
        lambda q, v, m: _token_match(q.get("code", []), v, "code"),
        "The panel's LOINC code where one was found",
    ),
}


class QuestionnaireMapping(DataMapping):
    type_name = "Questionnaire"
    interactions = frozenset({READ, SEARCH})
    readers = frozenset({"admin", "clinician", "front_desk", "patient"})
    writers = frozenset[str]()
    documentation = "An outcome instrument (structure and scoring anchors)."
    refusal = (
        "prolo's Questionnaires are published outcome instruments, shipped with the "
        "release with their licensed wording and scored by their published rules; a "
        "client-defined Questionnaire would have no scoring rule (answer one with a "
        "QuestionnaireResponse instead)"
    )

    def __init__(self) -> None:
        self.params = {
            name: Param(name, kind, lambda v, m: true(), doc)  # type: ignore[arg-type]
            for name, (kind, _f, doc) in FILTERS.items()
        }

    def read(self, ctx: Context, resource_id: str) -> Resource:
        found = all_questionnaires().get(resource_id)
        if found is None:
            raise AccessDenied(
                "no such Questionnaire", entity_type="Questionnaire", entity_id=resource_id
            )
        return found

    def search(
        self, ctx: Context, items: Sequence[tuple[str, str]], *, strict: bool
    ) -> tuple[list[Resource], int, SearchQuery]:
        query = SearchQuery()
        found = list(all_questionnaires().values())
        for key, raw in items:
            name, _, modifier = key.partition(":")
            if name in ("_count", "_offset"):
                if not raw.isdigit():
                    raise SearchError(f"{name}: {raw!r} is not a whole number")
                if name == "_count":
                    query.count = min(int(raw), MAX_COUNT)
                else:
                    query.offset = int(raw)
                continue
            if name == "_summary" and raw == "count":
                query.summary_count = True
                continue
            if name in ("_format", "_total"):
                continue
            spec = FILTERS.get(name)
            if spec is None:
                if strict:
                    raise SearchError(f"Questionnaire has no search parameter {name!r}")
                query.ignored.append(key)
                continue
            values = [v for v in raw.split(",") if v]
            test = spec[1]
            found = [q for q in found if any(test(q, v, modifier or None) for v in values)]
            query.applied.append((key, raw))
        total = len(found)
        if query.summary_count or query.count == 0:
            return [], total, query
        page = found[query.offset : query.offset + (query.count or DEFAULT_COUNT)]
        return page, total, query

    def create(self, ctx: Context, resource: Resource) -> Any:
        raise NotAllowed("Questionnaires are instrument definitions and cannot be created here")


MAPPING = QuestionnaireMapping()
