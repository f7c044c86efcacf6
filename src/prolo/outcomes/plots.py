"""Outcome pictures as standalone, accessible SVG: trajectories and waterfalls.

The Kaplan-Meier curves come from :func:`prolo.outcomes.survival.km_svg` and the forest
plots from :func:`prolo.evidence.forest.forest_plot_svg`; this module adds the two
registry pictures and uses the same look (fonts, ink, white ground). Every SVG carries
``role="img"`` with a ``<title>`` and a ``<desc>`` that says in words what it shows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any

__all__ = ["trajectory_svg", "waterfall_svg"]

_FONT = (
    'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", sans-serif'
)
_INK = "#1f2933"
_MUTED = "#52606d"
_GRID = "#e4e7eb"
_AXIS = "#7b8794"
_LINE = "#0f766e"
_BAND = "#f0b429"
_IMPROVED = "#0f766e"
_OTHER = "#9aa5b1"


def _nice_step(span: float) -> float:
    raw = span / 5.0 if span > 0 else 1.0
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * magnitude >= raw)


def _ticks(low: float, high: float) -> list[float]:
    step = _nice_step(high - low)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _fmt(value: float) -> str:
    text = f"{value:.1f}".rstrip("0").rstrip(".")
    return text.replace("-", "\u2212")


def _head(width: int, height: int, prefix: str, title: str, desc: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" '
        f'aria-labelledby="{prefix}-title {prefix}-desc" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="{escape(_FONT)}" font-size="13" '
        f'fill="{_INK}">',
        f'<title id="{prefix}-title">{escape(title)}</title>',
        f'<desc id="{prefix}-desc">{escape(desc)}</desc>',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="16" y="28" font-size="16" font-weight="600">{escape(title)}</text>',
    ]


def trajectory_svg(instrument: dict[str, Any], *, id_prefix: str = "trajectory") -> str:
    """Mean change from baseline at each follow-up, with 95% CIs and the MCID band.

    ``instrument`` is one entry of the report's ``instruments`` list. The band runs from
    no change to one MCID of improvement: a mean inside it is a change smaller than the
    smallest change patients notice as important.
    """
    name = instrument["name"]
    mcid = instrument.get("mcid")
    better_up = bool(instrument.get("higher_is_better"))
    points: list[tuple[str, dict[str, Any] | None, int]] = [
        ("Baseline", None, instrument["baseline"]["n"])
    ]
    for row in instrument["follow_ups"]:
        points.append((row["label"], row["change"], row["change"]["n"]))
    values = [0.0]
    for _, change, _ in points[1:]:
        if change and change["mean"] is not None:
            values += [change["mean"]]
            values += [v for v in (change["ci_low"], change["ci_high"]) if v is not None]
    if mcid:
        values.append(mcid if better_up else -mcid)
    low, high = min(values), max(values)
    pad = max(0.5, (high - low) * 0.12)
    low, high = low - pad, high + pad
    ticks = _ticks(low, high)
    low, high = min(low, ticks[0]), max(high, ticks[-1])

    width, height = 720, 380
    x0, x1, y0, y1 = 84, width - 40, 60, height - 76

    def x_of(i: int) -> float:
        return x0 + i * (x1 - x0) / (len(points) - 1)

    def y_of(v: float) -> float:
        return y1 - (v - low) / (high - low) * (y1 - y0)

    said = []
    for label, change, n in points[1:]:
        if change and change["mean"] is not None:
            said.append(f"{label}: {_fmt(change['mean'])} points (n={n})")
        else:
            said.append(f"{label}: no data")
    desc = (
        f"Mean change in {name} from baseline at each follow-up with 95% confidence intervals. "
        + "; ".join(said)
        + "."
        + (
            f" Shaded band: a change smaller than the MCID of {_fmt(mcid)} points."
            if mcid
            else " No MCID is recorded for this instrument."
        )
    )
    title = f"{name}: change from baseline"
    out = _head(width, height, id_prefix, title, desc)
    if mcid:
        edge = mcid if better_up else -mcid
        top, bottom = (y_of(edge), y_of(0.0)) if better_up else (y_of(0.0), y_of(edge))
        out.append(
            f'<rect x="{x0}" y="{top:.1f}" width="{x1 - x0}" height="{bottom - top:.1f}" '
            f'fill="{_BAND}" fill-opacity="0.18"/>'
        )
        out.append(
            f'<text x="{x1 - 6}" y="{(top + bottom) / 2 + 4:.1f}" text-anchor="end" '
            f'font-size="12" fill="#7c5e10">Smaller than the MCID ({_fmt(mcid)} points)</text>'
        )
    out.append(f'<g stroke="{_GRID}">')
    for t in ticks:
        out.append(f'<line x1="{x0}" x2="{x1}" y1="{y_of(t):.1f}" y2="{y_of(t):.1f}"/>')
    out.append("</g>")
    out.append(
        f'<line x1="{x0}" x2="{x1}" y1="{y_of(0):.1f}" y2="{y_of(0):.1f}" stroke="{_AXIS}"/>'
    )
    out.append(f'<g fill="{_MUTED}" font-size="12" text-anchor="end">')
    for t in ticks:
        out.append(f'<text x="{x0 - 8}" y="{y_of(t) + 4:.1f}">{_fmt(t)}</text>')
    out.append("</g>")
    coords: list[tuple[float, float]] = [(x_of(0), y_of(0.0))]
    for i, (label, change, n) in enumerate(points):
        x = x_of(i)
        out.append(
            f'<text x="{x:.1f}" y="{y1 + 22}" text-anchor="middle" fill="{_MUTED}" '
            f'font-size="12">{escape(label)}</text>'
            f'<text x="{x:.1f}" y="{y1 + 40}" text-anchor="middle" fill="{_MUTED}" '
            f'font-size="12">n={n}</text>'
        )
        if i == 0:
            continue
        if not change or change["mean"] is None:
            out.append(
                f'<text x="{x:.1f}" y="{y_of(0) - 10:.1f}" text-anchor="middle" '
                f'fill="{_MUTED}" font-size="12" font-style="italic">no data</text>'
            )
            continue
        y = y_of(change["mean"])
        if change["ci_low"] is not None and change["ci_high"] is not None:
            ya, yb = y_of(change["ci_low"]), y_of(change["ci_high"])
            out.append(
                f'<g stroke="{_LINE}" stroke-width="1.5"><line x1="{x:.1f}" x2="{x:.1f}" '
                f'y1="{ya:.1f}" y2="{yb:.1f}"/><line x1="{x - 6:.1f}" x2="{x + 6:.1f}" '
                f'y1="{ya:.1f}" y2="{ya:.1f}"/><line x1="{x - 6:.1f}" x2="{x + 6:.1f}" '
                f'y1="{yb:.1f}" y2="{yb:.1f}"/></g>'
            )
        coords.append((x, y))
    if len(coords) > 1:
        path = " ".join(
            f"{'M' if j == 0 else 'L'}{x:.1f},{y:.1f}" for j, (x, y) in enumerate(coords)
        )
        out.append(f'<path d="{path}" fill="none" stroke="{_LINE}" stroke-width="2"/>')
    for x, y in coords:
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{_LINE}"/>')
    out.append(
        f'<text transform="translate(22 {(y0 + y1) / 2:.1f}) rotate(-90)" text-anchor="middle">'
        f"Change from baseline (points)</text>"
    )
    out.append("</svg>")
    return "\n".join(out)


def waterfall_svg(
    values: Sequence[float],
    *,
    n: int,
    percent: bool,
    mcid: float | None,
    sampled: bool,
    instrument_name: str = "Pain",
    id_prefix: str = "waterfall",
) -> str:
    """Each patient's change at their latest follow-up, sorted from worst to best.

    ``values`` are changes (negative = less pain), already sorted ascending or not; they
    are drawn descending so improvement falls to the right. With ``percent`` the lines
    mark 30% and 50% reductions; otherwise one MCID.
    """
    ordered = sorted((float(v) for v in values), reverse=True)
    width, height = 720, 360
    x0, x1, y0, y1 = 84, width - 24, 56, height - 56
    unit = "%" if percent else " points"
    lines = [-30.0, -50.0] if percent else ([-mcid] if mcid else [])
    if not ordered:
        out = _head(
            width,
            height,
            id_prefix,
            f"{instrument_name}: change per patient",
            "No patient has a follow-up yet.",
        )
        out.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="{_MUTED}">'
            "No follow-up data yet</text></svg>"
        )
        return "\n".join(out)
    low = min([*ordered, *lines, 0.0])
    high = max([*ordered, 0.0])
    pad = max(1.0, (high - low) * 0.06)
    low, high = low - pad, high + pad
    ticks = _ticks(low, high)
    low, high = min(low, ticks[0]), max(high, ticks[-1])

    def y_of(v: float) -> float:
        return y1 - (v - low) / (high - low) * (y1 - y0)

    threshold = -30.0 if percent else (-mcid if mcid else None)
    improved = sum(1 for v in ordered if threshold is not None and v <= threshold)
    what = (
        f"{improved} of {len(ordered)} shown reduced pain by at least 30%"
        if percent
        else (f"{improved} of {len(ordered)} shown improved by at least the MCID" if mcid else "")
    )
    desc = (
        f"Waterfall of {n} patients' change in {instrument_name.lower()} at their latest follow-up"
        + (f" ({len(ordered)} evenly spaced patients shown)" if sampled else "")
        + ", from the largest worsening on the left to the largest improvement on the right. "
        + what
        + "."
    )
    out = _head(width, height, id_prefix, f"{instrument_name}: change per patient", desc)
    out.append(f'<g stroke="{_GRID}">')
    for t in ticks:
        out.append(f'<line x1="{x0}" x2="{x1}" y1="{y_of(t):.1f}" y2="{y_of(t):.1f}"/>')
    out.append("</g>")
    out.append(f'<g fill="{_MUTED}" font-size="12" text-anchor="end">')
    for t in ticks:
        out.append(
            f'<text x="{x0 - 8}" y="{y_of(t) + 4:.1f}">{_fmt(t)}{"%" if percent else ""}</text>'
        )
    out.append("</g>")
    step = (x1 - x0) / len(ordered)
    bar = max(0.6, step * 0.82)
    zero = y_of(0.0)
    out.append("<g>")
    for i, v in enumerate(ordered):
        y = y_of(v)
        top, h = (y, zero - y) if v >= 0 else (zero, y - zero)
        colour = _IMPROVED if threshold is not None and v <= threshold else _OTHER
        out.append(
            f'<rect x="{x0 + i * step:.2f}" y="{top:.2f}" width="{bar:.2f}" '
            f'height="{max(h, 0.8):.2f}" fill="{colour}"/>'
        )
    out.append("</g>")
    out.append(f'<line x1="{x0}" x2="{x1}" y1="{zero:.1f}" y2="{zero:.1f}" stroke="{_AXIS}"/>')
    for value in lines:
        y = y_of(value)
        label = f"{_fmt(value)}{unit}" if percent else f"MCID ({_fmt(value)}{unit})"
        out.append(
            f'<line x1="{x0}" x2="{x1}" y1="{y:.1f}" y2="{y:.1f}" stroke="{_INK}" '
            f'stroke-dasharray="5 4"/><text x="{x0 + 6}" y="{y - 5:.1f}" font-size="12">'
            f"{escape(label)}</text>"
        )
    out.append(
        f'<text x="{(x0 + x1) / 2:.1f}" y="{height - 18}" text-anchor="middle" fill="{_MUTED}">'
        f"Patients, worst to best ({n}{' in all; evenly spaced sample' if sampled else ''})</text>"
        f'<text transform="translate(22 {(y0 + y1) / 2:.1f}) rotate(-90)" text-anchor="middle">'
        f"Change ({'percent of baseline' if percent else 'points'})</text>"
    )
    out.append("</svg>")
    return "\n".join(out)
