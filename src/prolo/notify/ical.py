"""iCalendar (RFC 5545) documents: one appointment for an email, a practitioner's feed.

Pure: takes values, returns bytes. Times are written in UTC (RFC 5545 3.3.5, form #2,
``19980119T070000Z``), which every calendar client shows in its own zone, so no
VTIMEZONE has to be shipped. Every VEVENT carries the two properties RFC 5545 3.6.1
requires, UID and DTSTAMP; the UID of an appointment never changes, and SEQUENCE
(3.8.7.4) grows each time it moves, so a client updates the entry it already has.

See: https://www.rfc-editor.org/rfc/rfc5545
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from icalendar import Calendar, Event

PRODID = "-//prolo//prolo reminders//EN"


@dataclass(frozen=True)
class CalendarEntry:
    """What a calendar shows of one appointment; no diagnosis, no clinical detail."""

    uid: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    summary: str
    location: str | None = None
    description: str | None = None
    sequence: int = 0
    cancelled: bool = False


def appointment_uid(appointment_id: int, domain: str) -> str:
    """The stable UID of an appointment's calendar entry."""
    return f"appointment-{appointment_id}@{domain}"


def _aware(value: dt.datetime, name: str) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")
    return value.astimezone(dt.UTC)


def _event(entry: CalendarEntry, stamp: dt.datetime) -> Event:
    if entry.ends_at <= entry.starts_at:
        raise ValueError(f"ends_at {entry.ends_at!r} is not after starts_at {entry.starts_at!r}")
    event = Event()
    event.add("uid", entry.uid)
    event.add("dtstamp", _aware(stamp, "stamp"))
    event.add("dtstart", _aware(entry.starts_at, "starts_at"))
    event.add("dtend", _aware(entry.ends_at, "ends_at"))
    event.add("sequence", entry.sequence)
    event.add("summary", entry.summary)
    event.add("status", "CANCELLED" if entry.cancelled else "CONFIRMED")
    if entry.location:
        event.add("location", entry.location)
    if entry.description:
        event.add("description", entry.description)
    return event


def _calendar(name: str | None, method: str | None) -> Calendar:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    if method:
        cal.add("method", method)
    if name:
        cal.add("x-wr-calname", name)
    return cal


def appointment_invite(entry: CalendarEntry, *, stamp: dt.datetime) -> bytes:
    """A one-event calendar to attach to a reminder (METHOD:PUBLISH, RFC 5546 1.4).

    >>> e = CalendarEntry("a-1@x", dt.datetime(2030, 1, 2, 15, tzinfo=dt.UTC),
    ...                   dt.datetime(2030, 1, 2, 15, 30, tzinfo=dt.UTC), "Visit")
    >>> b"DTSTART:20300102T150000Z" in appointment_invite(e, stamp=e.starts_at)
    True
    """
    cal = _calendar(None, "PUBLISH")
    cal.add_component(_event(entry, stamp))
    return bytes(cal.to_ical())


def feed(entries: Iterable[CalendarEntry], *, name: str, stamp: dt.datetime) -> bytes:
    """A subscription feed: every entry as a VEVENT, without METHOD (RFC 5545 3.7.2)."""
    cal = _calendar(name, None)
    for entry in entries:
        cal.add_component(_event(entry, stamp))
    return bytes(cal.to_ical())
