"""FHIR search parameters: parsing the query string and turning it into SQL.

Supported (https://hl7.org/fhir/R4/search.html):

- parameter types ``token`` (``[system]|[code]``, ``:not``), ``reference``
  (``123``, ``Patient/123`` or an absolute URL ending in ``Patient/123``), ``date``
  (prefixes ``eq ne gt lt ge le sa eb ap`` on any precision from a year to a
  fraction of a second), ``string`` (starts-with, case-insensitive; ``:exact``,
  ``:contains``) and ``uri``;
- comma-separated values are OR-ed, repeated parameters AND-ed;
- ``_id``, ``_lastUpdated``, ``_count`` (default 20, at most 1000; ``0`` for the total
  only), ``_offset`` (the paging links use it), ``_summary=count``, ``_sort`` on
  ``_id`` and ``_lastUpdated`` (``-`` for descending), ``_include=Type:param``,
  ``_total`` (``none`` skips counting the matches: the page costs no count).

Dates and times without a zone are read as UTC. Unknown parameters are ignored and
reported in an OperationOutcome entry of the Bundle, unless the client sent
``Prefer: handling=strict``, which makes them an error.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import ColumnElement, Date, and_, false, func, not_, or_, true

from prolo.fhir.errors import InvalidResource

ParamType = Literal["token", "reference", "date", "string", "uri", "number"]
DEFAULT_COUNT = 20
MAX_COUNT = 1000
DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
RESULT_PARAMS = frozenset(
    {"_count", "_offset", "_summary", "_sort", "_include", "_format", "_total", "_elements"}
)

_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d+)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


class SearchError(InvalidResource):
    """A search parameter value the server cannot read."""


Clause = ColumnElement[bool]
Builder = Callable[[str, str | None], Clause]


@dataclass(frozen=True)
class Param:
    """One search parameter of a resource type: its name, type and SQL builder.

    ``build(value, modifier)`` returns the clause for one value; ``target`` names the
    type a reference parameter points to and ``column`` the foreign key, which
    ``_include`` follows.
    """

    name: str
    type: ParamType
    build: Builder
    documentation: str
    target: str | None = None
    column: Any = None


@dataclass
class SearchQuery:
    """A parsed search: filters (AND of ORs), paging, sort and includes."""

    clauses: list[Clause] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    offset: int = 0
    summary_count: bool = False
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (name, descending)
    includes: list[tuple[str, str]] = field(default_factory=list)  # (source type, param)
    applied: list[tuple[str, str]] = field(default_factory=list)  # echoed in the links
    ignored: list[str] = field(default_factory=list)
    with_total: bool = True  # False for ``_total=none``: no count, Bundle.total left out
    more: bool = False  # without a total: whether a row beyond this page exists


def parse_instant(text: str, *, name: str = "value") -> tuple[dt.datetime, dt.datetime]:
    """The half-open UTC range ``[start, end)`` a FHIR date/dateTime value covers.

    >>> lo, hi = parse_instant("2024-02")
    >>> lo.isoformat(), hi.isoformat()
    ('2024-02-01T00:00:00+00:00', '2024-03-01T00:00:00+00:00')
    """
    match = _DATE.match(text.strip())
    if match is None:
        raise SearchError(f"{name}: {text!r} is not a FHIR date or dateTime")
    g = match.groupdict()
    try:
        tz = dt.UTC
        if g["tz"] and g["tz"] != "Z":
            sign = 1 if g["tz"][0] == "+" else -1
            hours, minutes = int(g["tz"][1:3]), int(g["tz"][4:6])
            tz = dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))
        year = int(g["y"])
        if g["m"] is None:
            return (
                dt.datetime(year, 1, 1, tzinfo=dt.UTC),
                dt.datetime(year + 1, 1, 1, tzinfo=dt.UTC),
            )
        month = int(g["m"])
        if g["d"] is None:
            start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
            end = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=dt.UTC)
            return start, end
        day = int(g["d"])
        if g["H"] is None:
            start = dt.datetime(year, month, day, tzinfo=dt.UTC)
            return start, start + dt.timedelta(days=1)
        second = int(g["S"]) if g["S"] else 0
        micro = int((g["f"] or ".0")[1:7].ljust(6, "0"))
        start = dt.datetime(year, month, day, int(g["H"]), int(g["M"]), second, micro, tzinfo=tz)
        step = (
            dt.timedelta(minutes=1)
            if g["S"] is None
            else dt.timedelta(microseconds=1)
            if g["f"]
            else dt.timedelta(seconds=1)
        )
        return start.astimezone(dt.UTC), (start + step).astimezone(dt.UTC)
    except ValueError:
        raise SearchError(f"{name}: {text!r} is not a valid date") from None


def split_prefix(value: str) -> tuple[str, str]:
    """``ge2024-01-01`` -> (``ge``, ``2024-01-01``); no prefix means ``eq``."""
    if len(value) > 2 and value[:2] in DATE_PREFIXES and not value[:2].isdigit():
        return value[:2], value[2:]
    return "eq", value


def date_clause(column: Any, value: str, *, name: str, now: dt.datetime | None = None) -> Clause:
    """The clause for one date search value against a date or datetime column.

    The column holds a point in time (or a whole day for a date column); a search
    value covers a range, so ``gt2024`` means after the end of 2024.
    """
    prefix, text = split_prefix(value)
    lo, hi = parse_instant(text, name=name)
    if prefix == "ap":
        now = now or dt.datetime.now(dt.UTC)
        slack = max(abs(now - lo), abs(hi - now)) * 0.1
        lo, hi = lo - slack, hi + slack
    is_date = isinstance(getattr(column, "type", None), Date)
    low: Any = lo.date() if is_date else lo
    high: Any = hi.date() if is_date else hi
    if is_date and (hi - lo) < dt.timedelta(days=1) and hi.date() == lo.date():
        high = lo.date() + dt.timedelta(days=1)  # a time inside one day still means that day
    clauses: dict[str, Clause] = {
        "eq": and_(column >= low, column < high),
        "ne": or_(column < low, column >= high),
        "gt": column >= high,
        "sa": column >= high,
        "lt": column < low,
        "eb": column < low,
        "ge": column >= low,
        "le": column < high,
        "ap": and_(column >= low, column < high),
    }
    return clauses[prefix]


def split_token(value: str) -> tuple[str | None, str | None]:
    """``system|code`` -> (system, code); ``code`` -> (None, code); ``|code`` -> ("", code)."""
    if "|" not in value:
        return None, value
    system, _, code = value.partition("|")
    return system, (code or None)


def reference_id(value: str, target: str, *, name: str) -> int:
    """The row id a reference search value names (``12``, ``Patient/12``, a URL)."""
    text = value.strip().rstrip("/")
    parts = text.split("/")
    if len(parts) >= 2:
        if parts[-2] != target:
            raise SearchError(f"{name}: {value!r} does not refer to a {target}")
        text = parts[-1]
    if not text.isdigit() or len(text) > 10:
        raise SearchError(f"{name}: {value!r} is not a {target} id")
    return int(text)


# -- builders -----------------------------------------------------------------------------


def id_param(column: Any, type_name: str) -> Param:
    """``_id``: the logical id."""

    def build(value: str, modifier: str | None) -> Clause:
        if not value.isdigit() or len(value) > 10:
            return false()
        return column == int(value)  # type: ignore[no-any-return]

    return Param("_id", "token", build, f"The {type_name}'s logical id")


def date_param(name: str, column: Any, documentation: str) -> Param:
    def build(value: str, modifier: str | None) -> Clause:
        return date_clause(column, value, name=name)

    return Param(name, "date", build, documentation)


def reference_param(name: str, column: Any, target: str, documentation: str) -> Param:
    def build(value: str, modifier: str | None) -> Clause:
        if modifier and modifier != target:
            raise SearchError(f"{name}: only {target} references are searchable here")
        return column == reference_id(value, target, name=name)  # type: ignore[no-any-return]

    return Param(name, "reference", build, documentation, target=target, column=column)


def string_param(name: str, columns: Sequence[Any], documentation: str) -> Param:
    def build(value: str, modifier: str | None) -> Clause:
        text = value.strip()
        if modifier == "exact":
            return or_(*(c == text for c in columns))
        if modifier not in (None, "contains"):
            raise SearchError(f"{name}: modifier :{modifier} is not supported")
        escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%" if modifier == "contains" else f"{escaped}%"
        return or_(*(func.lower(c).like(pattern, escape="\\") for c in columns))

    return Param(name, "string", build, documentation)


def code_param(
    name: str,
    column: Any,
    documentation: str,
    *,
    system: str | None,
    to_db: Callable[[str], str | None] | None = None,
    nullable: bool = False,
) -> Param:
    """A token on a column whose codes come from one system (``system`` None: any).

    ``to_db`` maps a FHIR code to the stored one (None when it has no counterpart).
    ``nullable``: a NULL column is a resource without the element, which ``system|``
    does not match and ``:not`` does (https://hl7.org/fhir/R4/search.html#token); SQL's
    ``NOT (NULL = x)`` would drop it. ``column`` may be a constant (``literal``) for an
    element every resource reads back the same.
    """

    def build(value: str, modifier: str | None) -> Clause:
        sys, code = split_token(value)
        if sys is not None and sys != (system or sys):
            clause: Clause = false()
        elif code is None:
            clause = column.is_not(None) if nullable else true()
        else:
            stored = to_db(code) if to_db else code
            clause = false() if stored is None else column == stored
        if modifier == "not":
            return or_(not_(clause), column.is_(None)) if nullable else not_(clause)
        if modifier not in (None, "not"):
            raise SearchError(f"{name}: modifier :{modifier} is not supported")
        return clause

    return Param(name, "token", build, documentation)


def custom_param(name: str, type_: ParamType, build: Builder, documentation: str) -> Param:
    return Param(name, type_, build, documentation)


# -- parsing --------------------------------------------------------------------------------


def parse_search(
    type_name: str,
    params: dict[str, Param],
    items: Sequence[tuple[str, str]],
    *,
    strict: bool,
    includable: Callable[[str], bool],
) -> SearchQuery:
    """Read the query string into a :class:`SearchQuery`.

    Raises :class:`SearchError` for a value that cannot be read, and for an unknown
    parameter when ``strict``.
    """
    query = SearchQuery()
    for key, raw in items:
        name, _, modifier = key.partition(":")
        if name == "_count":
            query.count = _int(raw, "_count", high=MAX_COUNT)
            continue
        if name == "_offset":
            query.offset = _int(raw, "_offset", high=10**9)
            continue
        if name == "_summary":
            if raw == "count":
                query.summary_count = True
                query.applied.append((key, raw))
            elif raw != "false":
                _unknown(query, key, strict, "only _summary=count is supported")
            continue
        if name == "_sort":
            for part in raw.split(","):
                field_name = part.lstrip("-")
                if field_name not in ("_id", "_lastUpdated"):
                    raise SearchError(
                        f"_sort: only _id and _lastUpdated are sortable, not {part!r}"
                    )
                query.sort.append((field_name, part.startswith("-")))
            query.applied.append((key, raw))
            continue
        if name == "_include":
            if modifier:
                _unknown(query, key, strict, "_include modifiers are not supported")
                continue
            source, _, target_param = raw.partition(":")
            target_param = target_param.split(":")[0]
            if source != type_name or not includable(target_param):
                raise SearchError(f"_include: {raw!r} is not an include this server supports")
            query.includes.append((source, target_param))
            query.applied.append((key, raw))
            continue
        if name == "_total":
            if raw not in ("none", "estimate", "accurate"):
                raise SearchError(f"_total: {raw!r} is not one of none, estimate, accurate")
            query.with_total = raw != "none"  # an estimate is the accurate count here
            query.applied.append((key, raw))
            continue
        if name in ("_format", "_elements"):
            continue
        param = params.get(name)
        if param is None:
            _unknown(query, key, strict, f"{type_name} has no search parameter {name!r}")
            continue
        if modifier == "missing":
            raise SearchError(f"{name}: :missing is not supported")
        values = [v for v in raw.split(",") if v != ""]
        if not values:
            continue
        query.clauses.append(or_(*(param.build(v, modifier or None) for v in values)))
        query.applied.append((key, raw))
    return query


def _int(raw: str, name: str, *, high: int) -> int:
    if not raw.isdigit():
        raise SearchError(f"{name}: {raw!r} is not a whole number")
    return min(int(raw), high)


def _unknown(query: SearchQuery, key: str, strict: bool, why: str) -> None:
    if strict:
        raise SearchError(why)
    query.ignored.append(key)
