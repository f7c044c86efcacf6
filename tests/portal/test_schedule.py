"""When questionnaires are due: the pure schedule, by example and by property."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prolo.portal.schedule import (
    Answered,
    Course,
    ScheduleSettings,
    Session,
    due_items,
    outstanding,
)

UTC = dt.UTC
NY = ZoneInfo("America/New_York")
T0 = dt.datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # first session, 10:00 in New York
DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)


def course(*sessions: Session, status: str = "active", ended_on: dt.date | None = None) -> Course:
    return Course(
        id=1,
        status=status,
        created_at=T0 - 30 * DAY,
        ended_on=ended_on,
        instruments=("pain-nrs", "womac", "pgic"),
        sessions=sessions,
    )


def at(items: list, timepoint: str, instrument: str = "pain-nrs", n: int | None = None):
    found = [
        i
        for i in items
        if i.timepoint == timepoint
        and i.instrument_id == instrument
        and (n is None or i.session_number == n)
    ]
    assert len(found) == 1, found
    return found[0]


def answered(rid: int, timepoint: str, when: dt.datetime, *, done: bool = True, **kw) -> Answered:
    return Answered(
        response_id=rid,
        instrument_id=kw.get("instrument", "pain-nrs"),
        timepoint=timepoint,
        course_id=kw.get("course_id", 1),
        authored_at=when,
        completed=done,
    )


def test_baseline_is_due_from_planning_until_the_day_before_then_overdue_then_missed() -> None:
    c = course(Session(10, T0, "booked"), status="planned")
    assert at(due_items([c], [], now=T0 - 29 * DAY, tz=NY), "baseline").status == "due"
    item = at(due_items([c], [], now=T0 - 12 * HOUR, tz=NY), "baseline")
    assert item.status == "overdue"
    assert item.due_by == T0 - 24 * HOUR and item.closes_at == T0
    assert at(due_items([c], [], now=T0 + HOUR, tz=NY), "baseline").status == "missed"


def test_a_change_rating_is_not_asked_before_treatment() -> None:
    items = due_items([course(Session(10, T0, "booked"))], [], now=T0 - DAY, tz=NY)
    assert {i.instrument_id for i in items if i.timepoint == "baseline"} == {"pain-nrs", "womac"}


def test_an_answer_inside_the_window_counts_and_one_after_the_session_does_not() -> None:
    c = course(Session(10, T0, "fulfilled"), Session(11, T0 + 28 * DAY, "booked"))
    before = answered(1, "baseline", T0 - 2 * HOUR)
    items = due_items([c], [before], now=T0 + DAY, tz=NY)
    assert at(items, "baseline").status == "done"
    assert at(items, "baseline").response_id == 1
    late = answered(2, "baseline", T0 + HOUR)
    assert at(due_items([c], [late], now=T0 + DAY, tz=NY), "baseline").status == "missed"


def test_pre_session_windows_open_a_week_before_and_never_before_the_last_session() -> None:
    s1, s2, s3 = T0, T0 + 28 * DAY, T0 + 33 * DAY
    c = course(Session(10, s1, "fulfilled"), Session(11, s2, "booked"), Session(12, s3, "booked"))
    items = due_items([c], [], now=s2 - 8 * DAY, tz=NY)
    second = at(items, "pre_session", n=2)
    assert second.status == "upcoming" and second.opens_at == s2 - 7 * DAY
    third = at(items, "pre_session", n=3)
    assert third.opens_at == s2  # five days apart: opens when session 2 starts
    assert at(items, "pre_session", "pgic", n=2).status == "upcoming"
    assert at(due_items([c], [], now=s2 - 3 * DAY, tz=NY), "pre_session", n=2).status == "due"


def test_cancelled_and_missed_visits_are_not_sessions() -> None:
    c = course(
        Session(10, T0 - 7 * DAY, "cancelled"),
        Session(11, T0, "booked"),
        Session(12, T0 + 28 * DAY, "noshow"),
    )
    items = due_items([c], [], now=T0 - DAY, tz=NY)
    assert at(items, "baseline").appointment_id == 11
    assert not [i for i in items if i.timepoint == "pre_session"]


def test_follow_ups_count_from_the_end_of_the_course_in_the_clinic_zone() -> None:
    end = dt.date(2026, 5, 1)
    c = course(Session(10, T0, "fulfilled"), status="completed", ended_on=end)
    # week 6 target: 1 May + 42 days = 12 June, local midnight (04:00 UTC in summer time)
    target = dt.datetime(2026, 6, 12, 4, 0, tzinfo=UTC)
    week6 = at(due_items([c], [], now=target, tz=NY), "week_6")
    assert week6.status == "due"
    assert week6.opens_at == target - 7 * DAY and week6.due_by == target + 7 * DAY
    # overdue after a week, missed once the 3-month window opens (1 May + 91 - 7 days)
    assert at(due_items([c], [], now=target + 8 * DAY, tz=NY), "week_6").status == "overdue"
    month3_opens = dt.datetime(2026, 7, 24, 4, 0, tzinfo=UTC)
    assert week6.closes_at == month3_opens
    assert at(due_items([c], [], now=month3_opens, tz=NY), "week_6").status == "missed"
    assert at(due_items([c], [], now=month3_opens, tz=NY), "month_3").status == "due"
    last = at(due_items([c], [], now=target, tz=NY), "month_12")
    assert last.closes_at == last.due_by + 90 * DAY  # type: ignore[operator]


def test_an_ended_course_without_an_end_date_counts_from_its_last_session() -> None:
    c = course(Session(10, T0, "fulfilled"), Session(11, T0 + 28 * DAY, "fulfilled"))
    c = Course(**{**c.__dict__, "status": "stopped"})
    week6 = at(due_items([c], [], now=T0, tz=NY), "week_6")
    assert week6.opens_at.astimezone(NY).date() == dt.date(2026, 3, 30) + 35 * DAY
    running = course(Session(10, T0, "fulfilled"))
    assert not [i for i in due_items([running], [], now=T0, tz=NY) if i.timepoint == "week_6"]


def test_a_clinic_can_drop_follow_ups_and_pre_session_questionnaires() -> None:
    c = course(
        Session(10, T0, "fulfilled"), Session(11, T0 + 28 * DAY, "fulfilled"), status="completed"
    )
    mine = ScheduleSettings(pre_session=False, follow_up_days=(("month_3", 90), ("month_12", 360)))
    items = due_items([c], [], now=T0, tz=NY, settings=mine)
    assert sorted({i.timepoint for i in items}) == ["baseline", "month_12", "month_3"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"follow_up_days": (("week_2", 14),)}, "unknown follow-up"),
        ({"follow_up_days": (("month_3", 91), ("week_6", 42))}, "increase"),
        ({"follow_up_days": (("week_6", 42), ("week_6", 50))}, "repeat"),
        ({"open_days_before": 61}, "open_days_before"),
    ],
)
def test_settings_refuse_nonsense(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScheduleSettings(**kwargs)


def test_drafts_keep_an_item_due_and_requests_show_as_ad_hoc() -> None:
    c = course(Session(10, T0, "booked"))
    draft = answered(1, "baseline", T0 - 3 * DAY, done=False)
    request = answered(2, "ad_hoc", T0 - 2 * DAY, done=False, course_id=None)
    stale = answered(3, "pre_session", T0 - 60 * DAY, done=False)
    items = due_items([c], [draft, request, stale], now=T0 - 2 * DAY, tz=NY)
    baseline = at(items, "baseline")
    assert (baseline.status, baseline.draft, baseline.response_id) == ("due", True, 1)
    ad_hoc = at(items, "ad_hoc")
    assert (ad_hoc.status, ad_hoc.response_id, ad_hoc.label) == (
        "due",
        2,
        "Requested by your clinic",
    )
    assert [i.timepoint for i in outstanding(items)].count("pre_session") == 0


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        due_items([], [], now=dt.datetime(2026, 1, 1), tz=NY)  # noqa: DTZ001


sessions_strategy = st.lists(
    st.tuples(st.integers(0, 400), st.sampled_from(["booked", "fulfilled", "cancelled"])),
    min_size=0,
    max_size=6,
)


@settings(max_examples=100, deadline=None)
@given(
    offsets=sessions_strategy,
    now_days=st.integers(-40, 900),
    status=st.sampled_from(["planned", "active", "completed", "stopped"]),
    answers=st.lists(
        st.tuples(
            st.integers(-40, 900),
            st.sampled_from(["baseline", "pre_session", "week_6", "month_3", "month_12"]),
            st.sampled_from(["pain-nrs", "womac"]),
            st.booleans(),
        ),
        max_size=8,
    ),
)
def test_schedule_invariants(offsets, now_days, status, answers) -> None:
    sessions = tuple(Session(100 + n, T0 + d * DAY, s) for n, (d, s) in enumerate(sorted(offsets)))
    c = course(*sessions, status=status)
    stored = [
        answered(n + 1, tp, T0 + d * DAY, done=done, instrument=instrument)
        for n, (d, tp, instrument, done) in enumerate(answers)
    ]
    now = T0 + now_days * DAY
    items = due_items([c], stored, now=now, tz=NY)
    used = [i.response_id for i in items if i.response_id is not None]
    assert len(used) == len(set(used)), "a response counted for two items"
    for item in items:
        if item.due_by is not None:
            assert item.opens_at <= item.due_by
        if item.closes_at is not None and item.due_by is not None:
            assert item.due_by <= item.closes_at
        if item.status == "upcoming":
            assert now < item.opens_at
        if item.status in ("due", "overdue"):
            assert item.opens_at <= now and (item.closes_at is None or now < item.closes_at)
        if item.status == "done":
            response = next(a for a in stored if a.response_id == item.response_id)
            assert response.completed and response.instrument_id == item.instrument_id
            assert response.timepoint == item.timepoint
        assert item.timepoint != "baseline" or item.instrument_id != "pgic"
    # the windows of one instrument never overlap, so an answer belongs to one timepoint
    windows = sorted(
        (i.opens_at, i.closes_at)
        for i in items
        if i.instrument_id == "pain-nrs" and i.closes_at is not None
    )
    for (_, close), (nxt, _) in zip(windows, windows[1:], strict=False):
        assert close is not None and close <= nxt
