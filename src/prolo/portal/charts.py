"""Server-rendered SVG charts: score trajectories and flare curves.

Pure: values in, an SVG string out (no scripts, no inline styles, so the page's
Content-Security-Policy holds). Each chart has a ``<title>`` and ``<desc>`` for
screen readers; pages print the same numbers in a table beside it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from zoneinfo import ZoneInfo

from markupsafe import Markup

INK = "#1e293b"
MUTED = "#475569"
GRID = "#e2e8f0"
LINE = "#0f766e"
BAND = "#fef3c7"
BAND_EDGE = "#b45309"
FLAG = "#b91c1c"


@dataclass(frozen=True)
class Point:
    """One score at one time."""

    at: dt.datetime
    value: float


@dataclass(frozen=True)
class Frame:
    """The plotting area inside the margins."""

    width: int = 640
    height: int = 240
    left: int = 48
    right: int = 16
    top: int = 16
    bottom: int = 40

    @property
    def inner_width(self) -> int:
        return self.width - self.left - self.right

    @property
    def inner_height(self) -> int:
        return self.height - self.top - self.bottom


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def nice_step(span: float, *, target: int = 5) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) giving about ``target`` ticks.

    Examples
    --------
    >>> nice_step(100)
    20.0
    >>> nice_step(10)
    2.0
    >>> nice_step(7)
    2.0
    """
    if span <= 0:
        raise ValueError(f"span must be positive, got {span}")
    raw = span / target
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return float(factor * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


def _ticks(low: float, high: float) -> list[float]:
    step = nice_step(high - low)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + 1e-9:
        ticks.append(round(value, 9))
        value += step
    return ticks


def _open(chart_id: str, frame: Frame, title: str, desc: str, css: str = "svg-chart") -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{css}" viewBox="0 0 {frame.width} '
        f'{frame.height}" role="img" aria-labelledby="{chart_id}-t {chart_id}-d" '
        f'font-family="system-ui, sans-serif" font-size="13">',
        f'<title id="{chart_id}-t">{escape(title)}</title>',
        f'<desc id="{chart_id}-d">{escape(desc)}</desc>',
    ]


def _y_axis(frame: Frame, low: float, high: float, y: object, caption: str) -> list[str]:
    parts = []
    for tick in _ticks(low, high):
        ty = y(tick)  # type: ignore[operator]
        parts.append(
            f'<line x1="{frame.left}" x2="{frame.width - frame.right}" y1="{ty:.1f}" '
            f'y2="{ty:.1f}" stroke="{GRID}"/>'
            f'<text x="{frame.left - 6}" y="{ty + 4:.1f}" text-anchor="end" '
            f'fill="{MUTED}">{_fmt(tick)}</text>'
        )
    parts.append(
        f'<text x="12" y="{frame.top + frame.inner_height / 2:.1f}" fill="{MUTED}" '
        f'text-anchor="middle" transform="rotate(-90 12 {frame.top + frame.inner_height / 2:.1f})"'
        f">{escape(caption)}</text>"
    )
    return parts


def trajectory_svg(
    points: Sequence[Point],
    *,
    chart_id: str,
    title: str,
    low: float,
    high: float,
    lower_is_better: bool,
    tz: ZoneInfo,
    mcid: float | None = None,
    frame: Frame | None = None,
) -> Markup:
    """A score over time; with ``mcid``, the band of change smaller than the MCID.

    The band runs from the first (baseline) score to one MCID in the improving
    direction; a later score beyond the dashed line is a clinically important
    improvement for this measure.

    Examples
    --------
    >>> at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    >>> svg = trajectory_svg([Point(at, 7), Point(at + dt.timedelta(days=40), 4)],
    ...     chart_id="c1", title="Pain", low=0, high=10, lower_is_better=True,
    ...     tz=ZoneInfo("UTC"), mcid=2)
    >>> svg.count("<circle"), "MCID" in svg
    (2, True)
    """
    if high <= low:
        raise ValueError(f"high ({high}) must be above low ({low})")
    frame = frame or Frame()
    if mcid is not None:  # room for the legend line under the dates
        frame = Frame(
            width=frame.width,
            height=frame.height + 20,
            left=frame.left,
            right=frame.right,
            top=frame.top,
            bottom=frame.bottom + 20,
        )
    ordered = sorted(points, key=lambda p: p.at)

    def y(value: float) -> float:
        clamped = min(max(value, low), high)
        return frame.top + frame.inner_height * (1 - (clamped - low) / (high - low))

    if ordered:
        start, end = ordered[0].at, ordered[-1].at
        span = (end - start).total_seconds()
    else:
        start, span = dt.datetime.now(dt.UTC), 0.0

    def x(at: dt.datetime) -> float:
        if span <= 0:
            return frame.left + frame.inner_width / 2
        return frame.left + frame.inner_width * (at - start).total_seconds() / span

    better = "lower is better" if lower_is_better else "higher is better"
    if ordered:
        first, last = ordered[0], ordered[-1]
        desc = (
            f"{len(ordered)} score{'s' if len(ordered) != 1 else ''} from "
            f"{first.at.astimezone(tz):%d %b %Y} ({_fmt(first.value)}) to "
            f"{last.at.astimezone(tz):%d %b %Y} ({_fmt(last.value)}); "
            f"scale {_fmt(low)} to {_fmt(high)}, {better}."
        )
    else:
        desc = "No scores yet."
    parts = _open(chart_id, frame, title, desc)
    if mcid is not None and ordered:
        base = ordered[0].value
        threshold = base - mcid if lower_is_better else base + mcid
        top, bottom = sorted((y(base), y(threshold)))
        parts.append(
            f'<rect x="{frame.left}" y="{top:.1f}" width="{frame.inner_width}" '
            f'height="{max(bottom - top, 1):.1f}" fill="{BAND}"/>'
        )
    parts.extend(_y_axis(frame, low, high, y, better))
    if mcid is not None and ordered:
        ty = y(threshold)
        parts.append(
            f'<line x1="{frame.left}" x2="{frame.width - frame.right}" y1="{ty:.1f}" '
            f'y2="{ty:.1f}" stroke="{BAND_EDGE}" stroke-dasharray="6 4" stroke-width="1.5"/>'
        )
        legend_y = frame.height - 8
        side = "below" if lower_is_better else "above"
        parts.append(
            f'<rect x="{frame.left}" y="{legend_y - 10}" width="14" height="12" fill="{BAND}" '
            f'stroke="{BAND_EDGE}"/><text x="{frame.left + 20}" y="{legend_y}" fill="{INK}">'
            f"Change smaller than the MCID ({_fmt(mcid)}); {side} the dashed line is an "
            "important improvement</text>"
        )
    if ordered:
        path = " ".join(
            f"{'M' if n == 0 else 'L'}{x(p.at):.1f},{y(p.value):.1f}" for n, p in enumerate(ordered)
        )
        parts.append(f'<path d="{path}" fill="none" stroke="{LINE}" stroke-width="2.5"/>')
        for p in ordered:
            parts.append(
                f'<circle cx="{x(p.at):.1f}" cy="{y(p.value):.1f}" r="4" fill="{LINE}">'
                f"<title>{p.at.astimezone(tz):%d %b %Y}: {_fmt(p.value)}</title></circle>"
            )
        baseline_y = frame.height - frame.bottom + 18
        parts.append(
            f'<text x="{frame.left}" y="{baseline_y}" fill="{MUTED}">'
            f"{ordered[0].at.astimezone(tz):%d %b %Y}</text>"
        )
        if span > 0:
            parts.append(
                f'<text x="{frame.width - frame.right}" y="{baseline_y}" text-anchor="end" '
                f'fill="{MUTED}">{ordered[-1].at.astimezone(tz):%d %b %Y}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704  (built from numbers and escaped text)


@dataclass(frozen=True)
class FlareDay:
    """One diary day on the flare curve."""

    day: int
    pain: int
    flagged: bool


def flare_svg(
    days: Sequence[FlareDay],
    *,
    chart_id: str,
    title: str,
    baseline_pain: float | None = None,
    diary_days: int = 7,
    frame: Frame | None = None,
) -> Markup:
    """Pain 0-10 on each diary day after a session; red-flag days drawn as red squares.

    Examples
    --------
    >>> svg = flare_svg([FlareDay(1, 6, False), FlareDay(2, 8, True)], chart_id="f",
    ...                 title="Flare", baseline_pain=5)
    >>> svg.count("<rect"), "baseline" in svg
    (1, True)
    """
    frame = frame or Frame(width=480, height=220)

    def x(day: int) -> float:
        return frame.left + frame.inner_width * (day - 1) / max(diary_days - 1, 1)

    def y(value: float) -> float:
        return frame.top + frame.inner_height * (1 - min(max(value, 0), 10) / 10)

    ordered = sorted(days, key=lambda d: d.day)
    flagged = [d.day for d in ordered if d.flagged]
    desc = (
        "Pain by day: " + ", ".join(f"day {d.day} {d.pain}" for d in ordered) + "."
        if ordered
        else "No diary days yet."
    )
    if flagged:
        desc += " Warning signs on day " + ", ".join(str(d) for d in flagged) + "."
    parts = _open(chart_id, frame, title, desc, css="svg-chart flare-chart")
    parts.extend(_y_axis(frame, 0, 10, y, "pain 0-10"))
    for day in range(1, diary_days + 1):
        parts.append(
            f'<text x="{x(day):.1f}" y="{frame.height - frame.bottom + 18}" '
            f'text-anchor="middle" fill="{MUTED}">day {day}</text>'
        )
    if baseline_pain is not None:
        by = y(baseline_pain)
        parts.append(
            f'<line x1="{frame.left}" x2="{frame.width - frame.right}" y1="{by:.1f}" '
            f'y2="{by:.1f}" stroke="{MUTED}" stroke-dasharray="4 4"/>'
            f'<text x="{frame.width - frame.right - 4}" y="{by - 5:.1f}" text-anchor="end" '
            f'fill="{MUTED}">baseline {_fmt(baseline_pain)}</text>'
        )
    if ordered:
        path = " ".join(
            f"{'M' if n == 0 else 'L'}{x(d.day):.1f},{y(d.pain):.1f}" for n, d in enumerate(ordered)
        )
        parts.append(f'<path d="{path}" fill="none" stroke="{LINE}" stroke-width="2.5"/>')
        for d in ordered:
            label = f"<title>day {d.day}: pain {d.pain}{', warning sign' if d.flagged else ''}"
            if d.flagged:
                parts.append(
                    f'<rect x="{x(d.day) - 6:.1f}" y="{y(d.pain) - 6:.1f}" width="12" '
                    f'height="12" fill="{FLAG}">{label}</title></rect>'
                )
            else:
                parts.append(
                    f'<circle cx="{x(d.day):.1f}" cy="{y(d.pain):.1f}" r="4" fill="{LINE}">'
                    f"{label}</title></circle>"
                )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704  (built from numbers and escaped text)
