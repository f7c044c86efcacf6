"""Schedule <-> a practitioner's calendar (``practitioner`` and their ``working_hours``).

See: https://hl7.org/fhir/R4/schedule.html

Each practitioner has one Schedule with the same id: ``actor`` the Practitioner,
``active`` as the practitioner. Its working hours, in the clinic's local wall-clock
time (the zone is named in ``comment``), are one extension per weekly window,
``.../StructureDefinition/working-hours``, whose parts are named after
PractitionerRole.availableTime (https://hl7.org/fhir/R4/practitionerrole.html):
``daysOfWeek`` (valueCode ``mon`` .. ``sun``, repeatable), ``availableStartTime`` and
``availableEndTime`` (valueTime, on 5-minute marks). Slots hang off it: free starts
(computed from those hours, closures and bookings) and closures.

Writes go through :func:`prolo.scheduling.service.set_working_hours` (admins only, as on
the calendar page; booked visits are not moved):

- an update replaces the working hours with the extensions sent (none sent: no hours);
  ``actor`` must stay the practitioner, ``active`` must equal the practitioner's (it is
  Practitioner.active: update the Practitioner), and ``planningHorizon`` is refused
  (prolo has no per-practitioner horizon: every calendar books up to two years ahead);
- a create sets up the calendar of a practitioner who has no working hours yet (for
  example one created in the same transaction Bundle) and answers 201 with
  ``Schedule/<practitioner id>``; a practitioner who has hours already has their
  Schedule, so that create is a 409 naming it (PUT it instead), and ``If-None-Exist:
  actor=Practitioner/<id>`` returns it with 200 as a conditional create.

The identifiers a Schedule is created or updated with are kept (it has none of its own:
the NPI is the Practitioner's) and found by ``identifier``, so ``If-None-Exist:
identifier=system|value`` also answers 200 with a Schedule created before.

``meta`` follows the practitioner row: any change of the working hours, through this
resource or ``/api`` or any other caller of ``set_working_hours``, bumps its version once
(:data:`prolo.fhir.models.DEPENDENT_TABLES`); the same hours again bump nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import ColumnElement, String, cast, false, literal, select
from sqlalchemy.sql.functions import aggregate_strings

from prolo.clinic.models import Clinic, Practitioner
from prolo.errors import Conflict
from prolo.fhir import codes
from prolo.fhir.errors import Unprocessable
from prolo.fhir.resources.base import (
    CREATE,
    READ,
    SEARCH,
    UPDATE,
    Context,
    Meta,
    Resource,
    TableMapping,
    identifier_list,
    named_fields,
    put,
    pydantic_problem,
    ref,
    referenced_id,
)
from prolo.fhir.search import Param, reference_param
from prolo.scheduling.models import WorkingHours

HOURS_EXT = f"{codes.PROLO}/StructureDefinition/working-hours"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # FHIR days-of-week, Monday = 0
_FIELDS = {"windows": "Schedule.extension"}


def _active(value: str, modifier: str | None) -> ColumnElement[bool]:
    if value not in ("true", "false"):
        return false()
    return Practitioner.active.is_(value == "true")


def _windows_column() -> Any:
    """The practitioner's windows as ``weekday|starts|ends`` joined by commas (any order)."""
    window = (
        cast(WorkingHours.weekday, String)
        + literal("|")
        + cast(WorkingHours.starts_local, String)
        + literal("|")
        + cast(WorkingHours.ends_local, String)
    )
    return (
        select(aggregate_strings(window, ","))
        .where(WorkingHours.practitioner_id == Practitioner.id)
        .scalar_subquery()
        .label("working_hours")
    )


def _zone_column() -> Any:
    return (
        select(Clinic.timezone)
        .where(Clinic.id == Practitioner.clinic_id)
        .scalar_subquery()
        .label("clinic_timezone")
    )


def parse_windows(text: str | None) -> list[tuple[int, dt.time, dt.time]]:
    """``weekday|starts|ends,...`` (the aggregate above) as sorted tuples.

    >>> text = "4|08:00:00.000000|12:00:00.000000,0|09:00:00|17:30:00"
    >>> [(d, str(s), str(e)) for d, s, e in parse_windows(text)]
    [(0, '09:00:00', '17:30:00'), (4, '08:00:00', '12:00:00')]
    """
    found = []
    for part in (text or "").split(","):
        if part:
            day, starts, ends = part.split("|")
            found.append((int(day), dt.time.fromisoformat(starts), dt.time.fromisoformat(ends)))
    return sorted(found)


def hours_extension(weekday: int, starts: dt.time, ends: dt.time) -> dict[str, Any]:
    return {
        "url": HOURS_EXT,
        "extension": [
            {"url": "daysOfWeek", "valueCode": DAYS[weekday]},
            {"url": "availableStartTime", "valueTime": starts.strftime("%H:%M:%S")},
            {"url": "availableEndTime", "valueTime": ends.strftime("%H:%M:%S")},
        ],
    }


def _windows_in(resource: Resource) -> Any:
    """The working hours a Schedule's extensions describe, checked by the scheduling schema."""
    from prolo.scheduling.schemas import WorkingHoursIn

    windows: list[dict[str, Any]] = []
    for index, extension in enumerate(resource.get("extension") or []):
        if not isinstance(extension, dict) or extension.get("url") != HOURS_EXT:
            continue
        path = f"Schedule.extension[{index}]"
        parts = [p for p in extension.get("extension") or [] if isinstance(p, dict)]
        days = [p.get("valueCode") for p in parts if p.get("url") == "daysOfWeek"]
        times = {
            p.get("url"): p.get("valueTime")
            for p in parts
            if p.get("url") in ("availableStartTime", "availableEndTime")
        }
        if not days or any(d not in DAYS for d in days) or len(times) != 2:
            raise Unprocessable(
                f"{path}: a working-hours window needs daysOfWeek ({', '.join(DAYS)}), "
                "availableStartTime and availableEndTime",
                expression=[path],
            )
        try:
            starts, ends = (
                dt.time.fromisoformat(str(times[k]))
                for k in ("availableStartTime", "availableEndTime")
            )
        except ValueError:
            raise Unprocessable(f"{path}: times are hh:mm:ss", expression=[path]) from None
        windows.extend({"weekday": DAYS.index(d), "starts": starts, "ends": ends} for d in days)
    try:
        return WorkingHoursIn.model_validate({"windows": windows})
    except ValidationError as exc:
        raise pydantic_problem("Schedule", exc, _FIELDS, default="Schedule.extension") from None


class ScheduleMapping(TableMapping):
    type_name = "Schedule"
    model = Practitioner
    interactions = frozenset({READ, SEARCH, CREATE, UPDATE})
    readers = frozenset({"admin", "clinician", "front_desk", "patient"})
    writers = frozenset({"admin"})
    in_patient_compartment = False
    documentation = (
        "A practitioner's calendar (one per practitioner): its working hours; its Slots "
        "are free starts and closures."
    )

    def search_params(self) -> Sequence[Param]:
        return (
            reference_param("actor", Practitioner.id, "Practitioner", "The practitioner"),
            Param("active", "token", _active, "Whether the practitioner is active"),
        )

    def extra_columns(self) -> Sequence[Any]:
        return (_windows_column(), _zone_column())

    def patient_of(self, row: Any) -> int | None:
        return None

    def to_fhir(self, row: Any, meta: Meta) -> Resource:
        name = f"{row.given_name} {row.family_name}"
        resource: Resource = {
            "resourceType": "Schedule",
            "id": str(row.id),
            "meta": meta.as_fhir(),
        }
        put(resource, "identifier", identifier_list(meta))
        windows = parse_windows(row.working_hours)
        if windows:
            resource["extension"] = [hours_extension(*w) for w in windows]
        resource["active"] = bool(row.active)
        resource["actor"] = [{**(ref("Practitioner", row.id) or {}), "display": name}]
        resource["comment"] = (
            f"Calendar of {name}; working hours in {row.clinic_timezone} local time; "
            "its Slots are free starts and closures"
        )
        return resource

    def _practitioner(self, ctx: Context, resource: Resource) -> Practitioner:
        """The one Practitioner ``actor`` names, in the writer's clinic; 422 otherwise."""
        actors = resource.get("actor") or []
        if len(actors) != 1:
            raise Unprocessable(
                "Schedule.actor: a prolo Schedule has exactly one actor, its Practitioner",
                expression=["Schedule.actor"],
            )
        practitioner_id = referenced_id(ctx, actors[0], "Practitioner", path="Schedule.actor[0]")
        practitioner = ctx.session.get(Practitioner, practitioner_id)
        if practitioner is None or practitioner.clinic_id != ctx.clinic_id:
            raise Unprocessable(
                "Schedule.actor[0] refers to a Practitioner that does not exist here",
                expression=["Schedule.actor[0]"],
            )
        return practitioner

    def _check(self, resource: Resource, practitioner: Practitioner) -> None:
        active = resource.get("active")
        if active is not None and active != practitioner.active:
            raise Unprocessable(
                "Schedule.active follows Practitioner.active: update the Practitioner",
                expression=["Schedule.active"],
            )
        if resource.get("planningHorizon") is not None:
            raise Unprocessable(
                "Schedule.planningHorizon: prolo has no per-practitioner planning horizon "
                "(every calendar takes bookings up to two years ahead); leave it out",
                expression=["Schedule.planningHorizon"],
            )

    def _write_hours(self, ctx: Context, practitioner: Practitioner, data: Any) -> None:
        from prolo.scheduling import service as scheduling

        with named_fields(_FIELDS):
            scheduling.set_working_hours(
                session=ctx.session,
                principal=ctx.principal,
                practitioner_id=practitioner.id,
                data=data,
            )

    def create(self, ctx: Context, resource: Resource) -> Any:
        """Set up a practitioner's calendar (working hours); 409 when they have one."""
        from prolo.scheduling import service as scheduling

        practitioner = self._practitioner(ctx, resource)
        self._check(resource, practitioner)
        if scheduling.working_hours_rows(session=ctx.session, practitioner_id=practitioner.id):
            raise Conflict(
                f"Practitioner/{practitioner.id} already has Schedule/{practitioner.id}; "
                "PUT it to change the working hours"
            )
        data = _windows_in(resource)
        if not data.windows:
            raise Unprocessable(
                f"Schedule.extension: a new Schedule needs its working hours ({HOURS_EXT})",
                expression=["Schedule.extension"],
            )
        self._write_hours(ctx, practitioner, data)
        return practitioner

    def update(self, ctx: Context, row: Any, resource: Resource) -> Any:
        """Replace the practitioner's working hours."""
        practitioner = self._practitioner(ctx, resource)
        if practitioner.id != row.id:
            raise Unprocessable(
                f"Schedule.actor: Schedule/{row.id} is the calendar of Practitioner/{row.id}",
                expression=["Schedule.actor[0]"],
            )
        self._check(resource, row)
        self._write_hours(ctx, row, _windows_in(resource))
        return row


MAPPING = ScheduleMapping()
