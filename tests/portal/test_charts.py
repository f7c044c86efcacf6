"""Server-side SVG charts: well-formed, accessible, no script, band and points where they belong."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prolo.portal.charts import FlareDay, Frame, Point, flare_svg, nice_step, trajectory_svg

SVG = "{http://www.w3.org/2000/svg}"
T0 = dt.datetime(2026, 1, 5, 15, tzinfo=dt.UTC)
UTC = ZoneInfo("UTC")


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314  (our own output)


def test_trajectory_is_accessible_svg_without_script_or_inline_style() -> None:
    svg = trajectory_svg(
        [Point(T0, 7), Point(T0 + dt.timedelta(days=90), 3)],
        chart_id="c1",
        title="Pain <NRS>",
        low=0,
        high=10,
        lower_is_better=True,
        tz=UTC,
        mcid=2,
    )
    root = parse(svg)
    assert root.get("role") == "img" and root.get("aria-labelledby") == "c1-t c1-d"
    assert root.find(f"{SVG}title").text == "Pain <NRS>"  # escaped in the markup
    assert "from 05 Jan 2026 (7) to 05 Apr 2026 (3)" in root.find(f"{SVG}desc").text
    assert "<script" not in svg and "style=" not in svg


def test_the_mcid_band_spans_baseline_to_one_mcid_of_improvement() -> None:
    frame = Frame(height=240, top=16, bottom=40)  # inner height 184 for 0-10
    points = [Point(T0, 6), Point(T0 + dt.timedelta(days=30), 5)]
    root = parse(
        trajectory_svg(
            points,
            chart_id="c",
            title="t",
            low=0,
            high=10,
            lower_is_better=True,
            tz=UTC,
            mcid=2,
            frame=frame,
        )
    )
    band = root.find(f"{SVG}rect")
    # baseline 6 -> y = 16 + 184 * (1 - 0.6) = 89.6; threshold 4 -> 16 + 184 * 0.6 = 126.4
    assert float(band.get("y")) == pytest.approx(89.6, abs=0.1)
    assert float(band.get("height")) == pytest.approx(126.4 - 89.6, abs=0.1)
    # higher is better: the band goes up from the baseline instead
    up = parse(
        trajectory_svg(
            points,
            chart_id="c",
            title="t",
            low=0,
            high=10,
            lower_is_better=False,
            tz=UTC,
            mcid=2,
            frame=frame,
        )
    ).find(f"{SVG}rect")
    assert float(up.get("y")) == pytest.approx(16 + 184 * 0.2, abs=0.1)  # 8 points


def test_no_band_without_an_mcid_and_an_empty_chart_says_so() -> None:
    svg = trajectory_svg([], chart_id="e", title="t", low=0, high=100, lower_is_better=True, tz=UTC)
    assert "No scores yet." in svg and "<rect" not in svg and "<circle" not in svg


def test_points_are_clamped_inside_the_frame() -> None:
    frame = Frame()
    root = parse(
        trajectory_svg(
            [Point(T0, -5), Point(T0 + dt.timedelta(days=1), 50)],
            chart_id="c",
            title="t",
            low=0,
            high=10,
            lower_is_better=True,
            tz=UTC,
            frame=frame,
        )
    )
    ys = [float(c.get("cy")) for c in root.iter(f"{SVG}circle")]
    assert min(ys) >= frame.top and max(ys) <= frame.height - frame.bottom


def test_flare_curve_marks_warning_days_and_the_baseline() -> None:
    root = parse(
        flare_svg(
            [FlareDay(1, 6, False), FlareDay(2, 5, False), FlareDay(4, 8, True)],
            chart_id="f",
            title="Flare",
            baseline_pain=5,
        )
    )
    assert len(list(root.iter(f"{SVG}circle"))) == 2
    assert len(list(root.iter(f"{SVG}rect"))) == 1
    desc = root.find(f"{SVG}desc").text
    assert desc == "Pain by day: day 1 6, day 2 5, day 4 8. Warning signs on day 4."
    assert sum(1 for t in root.iter(f"{SVG}text") if (t.text or "").startswith("day ")) == 7


def test_nice_step_refuses_an_empty_span() -> None:
    with pytest.raises(ValueError, match="positive"):
        nice_step(0)


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=12),
    gaps=st.lists(st.integers(0, 400), min_size=12, max_size=12),
)
def test_any_series_renders_well_formed_with_one_circle_per_point(values, gaps) -> None:
    points = [Point(T0 + dt.timedelta(days=sum(gaps[: n + 1])), v) for n, v in enumerate(values)]
    svg = trajectory_svg(
        points, chart_id="p", title="t", low=0, high=100, lower_is_better=True, tz=UTC, mcid=10
    )
    root = parse(svg)
    assert len(list(root.iter(f"{SVG}circle"))) == len(values)
    xs = [float(c.get("cx")) for c in root.iter(f"{SVG}circle")]
    assert xs == sorted(xs)
