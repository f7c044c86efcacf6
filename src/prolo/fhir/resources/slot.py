"""Slot <- free starts computed by the scheduling service; Slot <-> a practitioner's
closure (``calendar_closure``).

See: https://hl7.org/fhir/R4/slot.html and the status value set
https://hl7.org/fhir/R4/valueset-slotstatus.html

Two kinds of Slot hang off a practitioner's Schedule:

- **free** (computed, never stored): a start at which the practitioner and at least one
  room are free for a whole visit of one kind
  (:func:`prolo.scheduling.service.find_free_slots`: working hours, closures, bookings,
  the visit type's length and phases). ``serviceType`` the kind of visit,
  ``start``/``end``. The id encodes practitioner, kind and start
  (``<practitioner>-<kind>-<unix minutes>``, always starting with a digit), so a read
  checks that the start is still free. A free Slot is taken by creating an Appointment;
  it is neither created nor updated here: free time comes from the Schedule's working
  hours, and prolo has no one-off availability to add (a create with status ``free`` is
  a 422 saying so).
- **busy-unavailable** (stored): a closure of that practitioner's calendar, whole local
  days in the clinic's time zone, ``start`` local midnight of the first day, ``end``
  local midnight after the last; ``comment`` the reason. The id is ``closure-<row id>``,
  so it never collides with a free Slot's. A create adds the closure
  (:func:`prolo.scheduling.service.add_closure`), an update moves, lengthens or shortens
  it (:func:`~prolo.scheduling.service.change_closure`); both are refused (409) while
  active appointments fall on those days, and a start or end that is not a local
  midnight is a 422 (closures are whole days). Closures of the whole clinic or of one
  room are no practitioner's Schedule, so they are not Slots (free Slots still skip
  them). ``busy`` and ``busy-tentative`` time is an Appointment: such a create is a 422
  naming it. Admins and the front desk write closures (as on the calendar page).

Search: ``schedule`` (required, a Schedule), ``start`` (``ge``/``gt``/``le``/``lt``
bounds; default the next 7 days, at most 31 days; a closure is listed when it overlaps
the window), ``service-type`` (default ``injection``; given, it lists free Slots only, as
a closure has no kind), ``status`` (``free``, ``busy-unavailable``). Staff only, like the
calendar.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy import and_, select, true

from prolo.clinic.models import Practitioner
from prolo.errors import AccessDenied, AppError
from prolo.fhir import codes
from prolo.fhir.errors import PreconditionFailed, Unprocessable
from prolo.fhir.models import ResourceVersion
from prolo.fhir.resources.appointment import KINDS
from prolo.fhir.resources.base import (
    CREATE,
    READ,
    SEARCH,
    UPDATE,
    Context,
    DataMapping,
    Meta,
    Resource,
    check_code,
    fhir_datetime,
    instant,
    named_fields,
    put,
    pydantic_problem,
    referenced_id,
)
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
from prolo.scheduling.models import CalendarClosure

DEFAULT_DAYS = 7
CLOSURE_PREFIX = "closure-"
STATUSES = ("free", "busy-unavailable")  # the ones prolo shows
# Slot.status, a required binding in R4: https://hl7.org/fhir/R4/valueset-slotstatus.html
SLOT_STATUSES = ("busy", "free", "busy-unavailable", "busy-tentative", "entered-in-error")
_FIELDS = {
    "first_day": "Slot.start",
    "last_day": "Slot.end",
    "practitioner_id": "Slot.schedule",
    "room_id": "Slot.schedule",
    "reason": "Slot.comment",
}


def slot_id(practitioner_id: int, kind: str, starts_at: dt.datetime) -> str:
    return f"{practitioner_id}-{kind}-{int(starts_at.timestamp()) // 60}"


def closure_slot_id(closure_id: int) -> str:
    return f"{CLOSURE_PREFIX}{closure_id}"


def to_fhir(
    practitioner_id: int, kind: str, starts_at: dt.datetime, ends_at: dt.datetime
) -> Resource:
    """A free Slot."""
    return {
        "resourceType": "Slot",
        "id": slot_id(practitioner_id, kind, starts_at),
        "serviceType": [codes.concept(codes.PROLO_APPOINTMENT_KIND, kind, KINDS[kind])],
        "schedule": {"reference": f"Schedule/{practitioner_id}"},
        "status": "free",
        "start": instant(starts_at),
        "end": instant(ends_at),
    }


def _midnight(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    from prolo.scheduling.slots import local_to_utc

    return local_to_utc(day, dt.time(0, 0), zone)


def closure_to_fhir(row: CalendarClosure, meta: Meta, zone: ZoneInfo) -> Resource:
    """A practitioner's closure as a busy-unavailable Slot."""
    resource: Resource = {
        "resourceType": "Slot",
        "id": closure_slot_id(row.id),
        "meta": meta.as_fhir(),
        "schedule": {"reference": f"Schedule/{row.practitioner_id}"},
        "status": "busy-unavailable",
        "start": instant(_midnight(row.first_day, zone)),
        "end": instant(_midnight(row.last_day + dt.timedelta(days=1), zone)),
    }
    put(resource, "comment", row.reason)
    return resource


def _zone(ctx: Context) -> ZoneInfo:
    from prolo.scheduling import service as scheduling

    return scheduling.clinic_zone(ctx.session, ctx.clinic_id)


def _closures(ctx: Context, *clauses: Any) -> list[tuple[CalendarClosure, Meta]]:
    """The clinic's practitioner closures matching ``clauses``, with their versions."""
    version = ResourceVersion
    rows = ctx.session.execute(
        select(CalendarClosure, version.version, version.last_updated)
        .outerjoin(
            version,
            and_(
                version.table_name == CalendarClosure.__tablename__,
                version.row_id == CalendarClosure.id,
            ),
        )
        .where(
            CalendarClosure.clinic_id == ctx.clinic_id,
            CalendarClosure.practitioner_id.is_not(None),
            *clauses,
        )
        .order_by(CalendarClosure.first_day, CalendarClosure.id)
    ).all()
    return [
        (row, Meta(version=number or 1, last_updated=last or row.created_at))
        for row, number, last in rows
    ]


def _closure_id(resource_id: str) -> int | None:
    text = resource_id.removeprefix(CLOSURE_PREFIX)
    if resource_id.startswith(CLOSURE_PREFIX) and text.isdigit() and len(text) <= 10:
        return int(text)
    return None


class SlotMapping(DataMapping):
    type_name = "Slot"
    interactions = frozenset({READ, SEARCH, CREATE, UPDATE})
    readers = frozenset({"admin", "clinician", "front_desk"})
    writers = frozenset({"admin", "front_desk"})
    documentation = (
        "A free start for a visit of one kind with one practitioner (computed), or a "
        "practitioner's closure (busy-unavailable, whole local days: create and update)."
    )
    conditional_refusal = (
        "a Slot is a free start (computed) or a closure of a Schedule, and keeps no "
        "identifiers; search Slot?schedule=...&status=busy-unavailable for closures"
    )

    def __init__(self) -> None:
        specs = (
            ("schedule", "reference", "The practitioner's Schedule (required)"),
            ("start", "date", "Bounds on the start (default: the next 7 days)"),
            ("service-type", "token", "consultation | injection | follow_up (free Slots)"),
            ("status", "token", "free | busy-unavailable"),
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

    # -- reads -------------------------------------------------------------------------

    def _read_closure(self, ctx: Context, resource_id: str) -> tuple[CalendarClosure, Meta]:
        closure_id = _closure_id(resource_id)
        found = _closures(ctx, CalendarClosure.id == closure_id) if closure_id else []
        if not found:
            raise AccessDenied("no such Slot", entity_type="Slot", entity_id=resource_id)
        return found[0]

    def read(self, ctx: Context, resource_id: str) -> Resource:
        if resource_id.startswith(CLOSURE_PREFIX):
            row, meta = self._read_closure(ctx, resource_id)
            return closure_to_fhir(row, meta, _zone(ctx))
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
        kind_given = False
        wanted = set(STATUSES)
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
                kind, kind_given = code, True
            elif name == "status":
                # Comma-separated values are OR-ed; repeated parameters AND-ed.
                wanted &= {split_token(v)[1] for v in raw.split(",")}
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
        found: list[tuple[dt.datetime, str, Resource]] = []
        if "free" in wanted:
            found.extend(
                (s.starts_at, "", to_fhir(practitioner_id, kind, s.starts_at, s.ends_at))
                for s in self._free(ctx, practitioner_id, kind, first, last)
                if (low is None or s.starts_at >= low) and (high is None or s.starts_at < high)
            )
        if "busy-unavailable" in wanted and not kind_given:
            zone = _zone(ctx)
            for row, meta in _closures(
                ctx,
                CalendarClosure.practitioner_id == practitioner_id,
                CalendarClosure.first_day <= last,
                CalendarClosure.last_day >= first,
            ):
                resource = closure_to_fhir(row, meta, zone)
                starts = _midnight(row.first_day, zone)
                ends = _midnight(row.last_day + dt.timedelta(days=1), zone)
                if (low is None or ends > low) and (high is None or starts < high):
                    found.append((starts, resource["id"], resource))
        found.sort(key=lambda item: (item[0], item[1]))
        total = len(found)
        page = found[query.offset : query.offset + (query.count if query.count else DEFAULT_COUNT)]
        if query.count == 0:
            page = []
        return [resource for _start, _id, resource in page], total, query

    # -- writes (closures) ---------------------------------------------------------------

    def _closure_in(self, ctx: Context, resource: Resource) -> Any:
        """The closure a busy-unavailable Slot describes; 422 naming what does not fit."""
        from prolo.scheduling.schemas import ClosureIn

        # FHIR's own rules (a code outside its required value set, a malformed instant:
        # 400) before prolo's (422).
        status = resource.get("status")
        check_code(status, SLOT_STATUSES, path="Slot.status")
        moments = {
            key: fhir_datetime(resource.get(key), path=f"Slot.{key}") for key in ("start", "end")
        }
        if status == "free":
            raise Unprocessable(
                "Slot.status 'free' is not supported by prolo: free Slots are computed from "
                "the Schedule's working hours, closures and bookings; prolo has no one-off "
                "availability to add. Change the working hours with PUT Schedule/<id> instead",
                expression=["Slot.status"],
            )
        if status in ("busy", "busy-tentative"):
            raise Unprocessable(
                f"Slot.status {status!r} is not supported by prolo: busy time is an "
                "Appointment in prolo, so POST an Appointment",
                expression=["Slot.status"],
            )
        if status != "busy-unavailable":
            said = "is missing" if status is None else f"{status!r} is not supported by prolo"
            raise Unprocessable(
                f"Slot.status {said}: a Slot written to prolo is busy-unavailable (a closure)",
                expression=["Slot.status"],
            )
        if resource.get("serviceType"):
            raise Unprocessable(
                "Slot.serviceType: a closure blocks every kind of visit; leave serviceType out",
                expression=["Slot.serviceType"],
            )
        practitioner_id = referenced_id(
            ctx, resource.get("schedule"), "Schedule", path="Slot.schedule"
        )
        zone = _zone(ctx)
        days: list[dt.date] = []
        for key in ("start", "end"):
            moment = moments[key]
            local = moment.astimezone(zone) if moment else None
            if local is None or local.time() != dt.time(0, 0):
                raise Unprocessable(
                    f"Slot.{key}: a closure covers whole days in the clinic's time zone "
                    f"({zone.key}), so it starts and ends at local midnight",
                    expression=[f"Slot.{key}"],
                )
            days.append(local.date())
        if days[1] <= days[0]:
            raise Unprocessable("Slot.end must be after Slot.start", expression=["Slot.end"])
        reason = resource.get("comment")
        try:
            return ClosureIn(
                first_day=days[0],
                last_day=days[1] - dt.timedelta(days=1),
                practitioner_id=practitioner_id,
                reason=reason.strip() if isinstance(reason, str) else "",
            )
        except ValidationError as exc:
            raise pydantic_problem("Slot", exc, _FIELDS) from None

    def create(self, ctx: Context, resource: Resource) -> Resource:
        """Close the practitioner's calendar on whole days (scheduling.service.add_closure)."""
        from prolo.scheduling import service as scheduling

        data = self._closure_in(ctx, resource)
        with named_fields(_FIELDS):
            closure = scheduling.add_closure(
                session=ctx.session, principal=ctx.principal, data=data
            )
        ctx.session.flush()
        row, meta = self._read_closure(ctx, closure_slot_id(closure.id))
        return closure_to_fhir(row, meta, _zone(ctx))

    def update(
        self, ctx: Context, resource_id: str, resource: Resource, *, if_match: str | None
    ) -> Resource:
        """Move, lengthen or shorten a closure (scheduling.service.change_closure)."""
        from prolo.scheduling import service as scheduling

        if not resource_id.startswith(CLOSURE_PREFIX):
            self.read(ctx, resource_id)  # 404 when there is no such free Slot
            check_code(resource.get("status"), SLOT_STATUSES, path="Slot.status")
            raise Unprocessable(
                f"Slot/{resource_id} is a computed free start: book it with POST Appointment; "
                "free time changes with the Schedule's working hours or a closure",
                expression=["Slot.id"],
            )
        row, meta = self._read_closure(ctx, resource_id)
        if if_match is not None:
            wanted = if_match.strip().removeprefix("W/").strip('"')
            if wanted != str(meta.version):
                raise PreconditionFailed(
                    f"Slot/{resource_id} is at version {meta.version}, not {wanted}"
                )
        data = self._closure_in(ctx, resource)
        if data.practitioner_id != row.practitioner_id:
            raise Unprocessable(
                "Slot.schedule: a closure stays on its Schedule; create a new Slot for "
                "another practitioner",
                expression=["Slot.schedule"],
            )
        with named_fields(_FIELDS):
            scheduling.change_closure(
                session=ctx.session, principal=ctx.principal, closure_id=row.id, data=data
            )
        ctx.session.flush()
        ctx.session.expire(row)
        row, meta = self._read_closure(ctx, resource_id)
        return closure_to_fhir(row, meta, _zone(ctx))


MAPPING = SlotMapping()
