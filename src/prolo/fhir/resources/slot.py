"""Slot <- free starts computed by the scheduling service (never stored).

See: https://hl7.org/fhir/R4/slot.html

A Slot is a start at which the practitioner and at least one room are free for a whole
visit of one kind (:func:`prolo.scheduling.service.find_free_slots`: working hours,
closures, bookings, the visit type's length and phases). ``schedule`` is the
practitioner's Schedule, ``status`` always ``free`` (a busy time is an Appointment),
``serviceType`` the kind of visit, ``start``/``end``. The id encodes practitioner,
kind and start (``<practitioner>-<kind>-<unix minutes>``), so a Slot read checks that
the start is still free.

Search: ``schedule`` (required, a Schedule), ``start`` (``ge``/``gt``/``le``/``lt``
bounds; default the next 7 days, at most 31 days), ``service-type`` (default
``injection``), ``status`` (``free``). Staff only, like the calendar. Read and search
only: a slot is taken by creating an Appointment.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import true

from prolo.clinic.models import Practitioner
from prolo.errors import AccessDenied, AppError
from prolo.fhir import codes
from prolo.fhir.resources.appointment import KINDS
from prolo.fhir.resources.base import READ, SEARCH, Context, DataMapping, Resource, instant
from prolo.fhir.search import (
    DEFAULT_COUNT,
    MAX_COUNT,
    Param,
    SearchError,
    SearchQuery,
    parse_instant,
    reference_id,
    split_prefix,
    split_token,
)

DEFAULT_DAYS = 7


def slot_id(practitioner_id: int, kind: str, starts_at: dt.datetime) -> str:
    return f"{practitioner_id}-{kind}-{int(starts_at.timestamp()) // 60}"


def to_fhir(
    practitioner_id: int, kind: str, starts_at: dt.datetime, ends_at: dt.datetime
) -> Resource:
    return {
        "resourceType": "Slot",
        "id": slot_id(practitioner_id, kind, starts_at),
        "serviceType": [codes.concept(codes.PROLO_APPOINTMENT_KIND, kind, KINDS[kind])],
        "schedule": {"reference": f"Schedule/{practitioner_id}"},
        "status": "free",
        "start": instant(starts_at),
        "end": instant(ends_at),
    }


class SlotMapping(DataMapping):
    type_name = "Slot"
    interactions = frozenset({READ, SEARCH})
    readers = frozenset({"admin", "clinician", "front_desk"})
    writers = frozenset[str]()
    documentation = "A free start for a visit of one kind with one practitioner (computed)."

    def __init__(self) -> None:
        specs = (
            ("schedule", "reference", "The practitioner's Schedule (required)"),
            ("start", "date", "Bounds on the start (default: the next 7 days)"),
            ("service-type", "token", "consultation | injection | follow_up"),
            ("status", "token", "free"),
        )
        self.params = {n: Param(n, t, lambda v, m: true(), d) for n, t, d in specs}  # type: ignore[arg-type]

    def _free(
        self, ctx: Context, practitioner_id: int, kind: str, first: dt.date, last: dt.date
    ) -> list[Any]:
        from prolo.scheduling import service as scheduling

        _type, slots, _truncated = scheduling.find_free_slots(
            session=ctx.session,
            principal=ctx.principal,
            kind=kind,
            first_day=first,
            last_day=last,
            practitioner_id=practitioner_id,
        )
        return slots

    def read(self, ctx: Context, resource_id: str) -> Resource:
        parts = resource_id.split("-")
        if len(parts) < 3 or not parts[0].isdigit() or not parts[-1].isdigit():
            raise AccessDenied("no such Slot", entity_type="Slot", entity_id=resource_id)
        practitioner_id, kind = int(parts[0]), "-".join(parts[1:-1])
        if kind not in KINDS or len(parts[-1]) > 12:
            raise AccessDenied("no such Slot", entity_type="Slot", entity_id=resource_id)
        starts_at = dt.datetime.fromtimestamp(int(parts[-1]) * 60, dt.UTC)
        day = starts_at.date()
        known = ctx.session.get(Practitioner, practitioner_id)
        if known is None or known.clinic_id != ctx.clinic_id:
            raise AccessDenied("no such Slot", entity_type="Slot", entity_id=resource_id)
        window = (day - dt.timedelta(days=1), day + dt.timedelta(days=1))
        try:
            slots = self._free(ctx, practitioner_id, kind, *window)
        except AppError as exc:
            if isinstance(exc, AccessDenied):
                raise
            raise AccessDenied("no such Slot", entity_type="Slot", entity_id=resource_id) from None
        for slot in slots:
            if slot.starts_at == starts_at:
                return to_fhir(practitioner_id, kind, slot.starts_at, slot.ends_at)
        raise AccessDenied("no such Slot", entity_type="Slot", entity_id=resource_id)

    def search(
        self, ctx: Context, items: Sequence[tuple[str, str]], *, strict: bool
    ) -> tuple[list[Resource], int, SearchQuery]:
        query = SearchQuery()
        practitioner_id: int | None = None
        kind = "injection"
        today = dt.datetime.now(dt.UTC).date()
        first, last = today, today + dt.timedelta(days=DEFAULT_DAYS - 1)
        low: dt.datetime | None = None
        high: dt.datetime | None = None
        for key, raw in items:
            name, _, _modifier = key.partition(":")
            if name in ("_count", "_offset"):
                if not raw.isdigit():
                    raise SearchError(f"{name}: {raw!r} is not a whole number")
                if name == "_count":
                    query.count = min(int(raw), MAX_COUNT)
                else:
                    query.offset = int(raw)
                continue
            if name == "schedule":
                practitioner_id = reference_id(raw, "Schedule", name="schedule")
            elif name == "service-type":
                _system, code = split_token(raw)
                if code not in KINDS:
                    raise SearchError(f"service-type: {raw!r} is not one of {', '.join(KINDS)}")
                kind = code
            elif name == "status":
                if split_token(raw)[1] != "free":
                    query.applied.append((key, raw))
                    return [], 0, query  # only free slots exist here
            elif name == "start":
                prefix, text = split_prefix(raw)
                lo, hi = parse_instant(text, name="start")
                if prefix in ("ge", "sa", "gt"):
                    low = hi if prefix in ("gt", "sa") else lo
                elif prefix in ("le", "lt", "eb"):
                    high = hi if prefix == "le" else lo
                elif prefix == "eq":
                    low, high = lo, hi
                else:
                    raise SearchError(f"start: prefix {prefix} is not supported for Slots")
            elif name in ("_format", "_total"):
                continue
            elif strict:
                raise SearchError(f"Slot has no search parameter {name!r}")
            else:
                query.ignored.append(key)
                continue
            query.applied.append((key, raw))
        if practitioner_id is None:
            raise SearchError("Slot searches need schedule=Schedule/<id> (one practitioner)")
        known = ctx.session.get(Practitioner, practitioner_id)
        if known is None or known.clinic_id != ctx.clinic_id:
            return [], 0, query  # no such schedule here: nothing matches
        if low is not None:
            first = max(today, low.date())
        if high is not None:
            last = (high - dt.timedelta(microseconds=1)).date()
        elif low is not None:
            last = first + dt.timedelta(days=DEFAULT_DAYS - 1)
        if last < first:
            return [], 0, query
        if (last - first).days >= 31:
            raise SearchError("start: ask for at most 31 days of Slots at a time")
        slots = [
            s
            for s in self._free(ctx, practitioner_id, kind, first, last)
            if (low is None or s.starts_at >= low) and (high is None or s.starts_at < high)
        ]
        total = len(slots)
        page = slots[query.offset : query.offset + (query.count if query.count else DEFAULT_COUNT)]
        if query.count == 0:
            page = []
        return [to_fhir(practitioner_id, kind, s.starts_at, s.ends_at) for s in page], total, query


MAPPING = SlotMapping()
