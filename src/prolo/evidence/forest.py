"""Forest plots as standalone, accessible SVG.

Charts render on the server (DESIGN.md), so this module writes SVG text itself
with no plotting library: one row per study (a square sized by weight and a line
for its confidence interval), the pooled diamond, the prediction interval and
the line of no effect. The SVG carries ``<title>`` and ``<desc>`` elements and
``role="img"`` so screen readers announce what the chart shows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from scipy import special

from prolo.evidence.meta import PooledEstimate

__all__ = ["ForestRow", "forest_plot_svg", "forest_rows"]

_FONT = (
    'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", sans-serif'
)
_INK = "#1f2933"
_MUTED = "#52606d"
_RULE = "#cbd2d9"
_AXIS = "#7b8794"
_MARK = "#334e68"
_POOLED = "#102a43"

_WIDTH = 880
_LABEL_X = 16
_PLOT_X0 = 290
_PLOT_X1 = 610
_TEXT_X = 632
_WEIGHT_X = 864
_ROW = 24
_MAX_LABEL = 36
_MAX_SQUARE = 15.0
_MIN_SQUARE = 4.0


@dataclass(frozen=True)
class ForestRow:
    """One study line of a forest plot, on the analysis scale (e.g. log risk ratio).

    ``weight`` is the study's share of the pooled weight in percent.
    """

    label: str
    estimate: float
    ci_low: float
    ci_high: float
    weight: float


def forest_rows(
    labels: Sequence[str],
    yi: Sequence[float],
    vi: Sequence[float],
    pooled: PooledEstimate,
) -> tuple[ForestRow, ...]:
    """Build forest-plot rows from study estimates and the pooled model.

    Study intervals use the normal distribution at ``pooled.level`` (as
    metafor's ``forest`` does for ``yi``/``vi`` input) and weights come from
    ``pooled.weights``.

    Parameters
    ----------
    labels : sequence of str
        Study labels, e.g. ``"Aronson 1948"``.
    yi, vi : sequence of float
        Study estimates and sampling variances, in the order used for pooling.
    pooled : PooledEstimate
        The model fitted to ``yi`` and ``vi``.

    Returns
    -------
    tuple of ForestRow

    Examples
    --------
    >>> from prolo.evidence.meta import fixed_effect
    >>> fe = fixed_effect([0.1, 0.3], [0.04, 0.04])
    >>> rows = forest_rows(["A", "B"], [0.1, 0.3], [0.04, 0.04], fe)
    >>> rows[0].label, round(rows[0].ci_high, 3), rows[0].weight
    ('A', 0.492, 50.0)
    """
    sizes = {"labels": len(labels), "yi": len(yi), "vi": len(vi), "pooled.k": pooled.k}
    if len(set(sizes.values())) != 1:
        detail = ", ".join(f"{name}={size}" for name, size in sizes.items())
        raise ValueError(f"labels, yi and vi must match the pooled model's k; got {detail}")
    crit = float(special.ndtri(0.5 + pooled.level / 2.0))
    rows = []
    for label, y, v, weight in zip(labels, yi, vi, pooled.weights, strict=True):
        if not v > 0.0:
            raise ValueError(f"vi must be positive; got vi={v!r} for {label!r}")
        half = crit * math.sqrt(v)
        rows.append(
            ForestRow(label=label, estimate=y, ci_low=y - half, ci_high=y + half, weight=weight)
        )
    return tuple(rows)


def _check_rows(rows: Sequence[ForestRow]) -> None:
    if not rows:
        raise ValueError("rows must contain at least one study; got an empty sequence")
    for i, row in enumerate(rows):
        values = (row.estimate, row.ci_low, row.ci_high, row.weight)
        if not all(math.isfinite(value) for value in values):
            raise ValueError(f"rows[{i}] must hold finite numbers; got {row!r}")
        if not row.ci_low <= row.estimate <= row.ci_high:
            raise ValueError(f"rows[{i}] must satisfy ci_low <= estimate <= ci_high; got {row!r}")
        if row.weight < 0.0:
            raise ValueError(f"rows[{i}].weight must not be negative; got {row.weight!r}")


def _linear_ticks(low: float, high: float) -> list[float]:
    """About five round tick values covering [low, high]."""
    span = high - low
    raw = span / 5.0
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    count = int(math.floor((high - first) / step + 1e-9)) + 1
    # Rounding to the step's decimals keeps labels free of binary noise (0.30000000000000004).
    decimals = max(0, -math.floor(math.log10(step)) + 1)
    return [round(first + i * step, decimals) for i in range(count)]


def _ratio_ticks(low: float, high: float) -> list[float]:
    """Round ratio values (0.1, 0.2, 0.5, 1, 2, ...) whose logs fall in [low, high]."""
    lo_decade = math.floor(math.log10(math.exp(low))) - 1
    hi_decade = math.ceil(math.log10(math.exp(high))) + 1
    for mantissas in ((1.0, 2.0, 5.0), (1.0,)):
        ticks = sorted(
            m * 10.0**d
            for d in range(lo_decade, hi_decade + 1)
            for m in mantissas
            if low <= math.log(m * 10.0**d) <= high
        )
        if len(ticks) <= 7:
            break
    if len(ticks) < 3:
        # A narrow range (all ratios between, say, 0.8 and 1.3) needs finer steps.
        return [math.log(t) for t in _linear_ticks(math.exp(low), math.exp(high)) if t > 0.0]
    return [math.log(t) for t in ticks]


def _minus(text: str) -> str:
    # A true minus sign (U+2212) is as wide as the digits and reads better than a hyphen.
    return text.replace("-", "\u2212")


def _format_number(value: float) -> str:
    if value == 0.0:
        return "0"
    if abs(value) >= 100 or abs(value) < 0.01:
        return _minus(f"{value:.3g}")
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else _minus(text)


def _format_tick(value: float) -> str:
    text = f"{value:.3g}"
    return "0" if text in ("-0", "0") else _minus(text)


def forest_plot_svg(
    rows: Sequence[ForestRow],
    pooled: PooledEstimate,
    *,
    title: str,
    x_label: str,
    null_value: float = 0.0,
    exp: bool = False,
    pooled_label: str | None = None,
    id_prefix: str = "forest",
    favours_left: str | None = None,
    favours_right: str | None = None,
) -> str:
    """Render a forest plot as a standalone SVG document.

    Parameters
    ----------
    rows : sequence of ForestRow
        Study rows on the analysis scale (see :func:`forest_rows`).
    pooled : PooledEstimate
        The pooled model; draws the diamond and, for random effects, the
        prediction interval.
    title : str
        Heading shown above the plot and used as the SVG ``<title>``.
    x_label : str
        Axis caption, e.g. ``"Risk ratio (log scale)"``.
    null_value : float, default=0.0
        Line of no effect on the analysis scale (0 for differences and log ratios).
    exp : bool, default=False
        Whether the analysis scale is logarithmic: tick labels and the numbers
        in the right-hand column are then exponentiated (ratios).
    pooled_label : str, optional
        Label of the pooled row; defaults to a description of the model.
    id_prefix : str, default="forest"
        Prefix for the element ids, unique per page when several plots share one.
    favours_left, favours_right : str, optional
        What an effect left or right of the line of no effect means, e.g.
        ``"Favours saline"`` and ``"Favours dextrose"``; drawn under the axis with
        arrows pointing away from the line and added to the description, so the
        reader never has to guess which direction is better.

    Returns
    -------
    str
        An SVG document.

    Examples
    --------
    >>> from prolo.evidence.meta import fixed_effect
    >>> fe = fixed_effect([0.1, 0.3], [0.04, 0.04])
    >>> rows = forest_rows(["Trial A", "Trial B"], [0.1, 0.3], [0.04, 0.04], fe)
    >>> svg = forest_plot_svg(rows, fe, title="Pain at 12 weeks", x_label="Mean difference")
    >>> svg.startswith("<svg") and "<title id=" in svg and "Trial B" in svg
    True
    """
    _check_rows(rows)
    if not title.strip():
        raise ValueError(f"title must not be blank; got title={title!r}")
    if not math.isfinite(null_value):
        raise ValueError(f"null_value must be finite; got null_value={null_value!r}")

    show = math.exp if exp else (lambda value: value)
    has_pi = pooled.method != "FE" and pooled.tau2 > 0.0
    level_pct = f"{pooled.level * 100:g}%"
    if pooled_label is None:
        pooled_label = (
            "Fixed-effect model"
            if pooled.method == "FE"
            else f"Random-effects model ({pooled.method}"
            + (", Hartung-Knapp" if pooled.test == "knha" else "")
            + ")"
        )

    bounds = [null_value, pooled.ci_low, pooled.ci_high]
    bounds += [v for row in rows for v in (row.ci_low, row.ci_high)]
    if has_pi:
        bounds += [pooled.pi_low, pooled.pi_high]
    low, high = min(bounds), max(bounds)
    if high - low < 1e-9:
        low, high = low - 1.0, high + 1.0
    pad = (high - low) * 0.04
    low, high = low - pad, high + pad
    ticks = _ratio_ticks(low, high) if exp else _linear_ticks(low, high)

    def x_of(value: float) -> float:
        return _PLOT_X0 + (value - low) / (high - low) * (_PLOT_X1 - _PLOT_X0)

    title_id = f"{id_prefix}-title"
    desc_id = f"{id_prefix}-desc"
    header_y = 64
    first_row_y = header_y + 26
    pooled_y = first_row_y + len(rows) * _ROW + 14
    pi_y = pooled_y + _ROW if has_pi else pooled_y
    axis_y = pi_y + 22
    has_favours = favours_left is not None or favours_right is not None
    label_y = axis_y + (62 if has_favours else 42)
    height = label_y + 16

    est_text = (
        f"{_format_number(show(pooled.estimate))} "
        f"({level_pct} CI {_format_number(show(pooled.ci_low))} "
        f"to {_format_number(show(pooled.ci_high))})"
    )
    description = (
        f"Forest plot of {pooled.k} {'study' if pooled.k == 1 else 'studies'}. "
        f"{pooled_label}: pooled estimate {est_text}"
    )
    if has_pi:
        description += (
            f", {level_pct} prediction interval {_format_number(show(pooled.pi_low))} "
            f"to {_format_number(show(pooled.pi_high))}"
        )
    description += (
        f". I\u00b2 = {pooled.i2:.0f}%. Line of no effect at {_format_number(show(null_value))}."
    )
    if has_favours:
        sides = [
            f"left of the line: {favours_left}" if favours_left else "",
            f"right of the line: {favours_right}" if favours_right else "",
        ]
        description += " " + "; ".join(side for side in sides if side) + "."

    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" '
        f'aria-labelledby="{escape(title_id)} {escape(desc_id)}" '
        f'width="{_WIDTH}" height="{height}" viewBox="0 0 {_WIDTH} {height}" '
        f'font-family="{escape(_FONT)}" font-size="13" fill="{_INK}">',
        f'<title id="{escape(title_id)}">{escape(title)}</title>',
        f'<desc id="{escape(desc_id)}">{escape(description)}</desc>',
        f'<rect width="{_WIDTH}" height="{height}" fill="#ffffff"/>',
        f'<text x="{_LABEL_X}" y="30" font-size="16" font-weight="600">{escape(title)}</text>',
        f'<g font-weight="600" fill="{_MUTED}" font-size="12">'
        f'<text x="{_LABEL_X}" y="{header_y}">Study</text>'
        f'<text x="{_TEXT_X}" y="{header_y}">Estimate [{level_pct} CI]</text>'
        f'<text x="{_WEIGHT_X}" y="{header_y}" text-anchor="end">Weight</text></g>',
        f'<line x1="{_LABEL_X}" x2="{_WEIGHT_X}" y1="{header_y + 8}" y2="{header_y + 8}" '
        f'stroke="{_RULE}"/>',
    ]

    # Line of no effect, drawn first so marks sit on top of it.
    null_x = x_of(null_value)
    out.append(
        f'<line x1="{null_x:.1f}" x2="{null_x:.1f}" y1="{header_y + 12}" y2="{axis_y}" '
        f'stroke="{_AXIS}" stroke-dasharray="4 3"/>'
    )

    max_weight = max(row.weight for row in rows) or 1.0
    for i, row in enumerate(rows):
        y = first_row_y + i * _ROW
        label = (
            row.label if len(row.label) <= _MAX_LABEL else row.label[: _MAX_LABEL - 1] + "\u2026"
        )
        ci_text = (
            f"{_format_number(show(row.estimate))} "
            f"[{_format_number(show(row.ci_low))}, {_format_number(show(row.ci_high))}]"
        )
        # Area, not side, proportional to weight, so the eye reads weight correctly.
        side = max(_MIN_SQUARE, _MAX_SQUARE * math.sqrt(row.weight / max_weight))
        cx = x_of(row.estimate)
        out.append(
            f"<g><title>{escape(row.label)}: {escape(ci_text)}, weight {row.weight:.1f}%</title>"
            f'<text x="{_LABEL_X}" y="{y + 4.5}">{escape(label)}</text>'
            f'<line x1="{x_of(row.ci_low):.1f}" x2="{x_of(row.ci_high):.1f}" '
            f'y1="{y}" y2="{y}" stroke="{_MARK}" stroke-width="1.5"/>'
            f'<rect x="{cx - side / 2:.1f}" y="{y - side / 2:.1f}" width="{side:.1f}" '
            f'height="{side:.1f}" fill="{_MARK}"/>'
            f'<text x="{_TEXT_X}" y="{y + 4.5}" font-variant-numeric="tabular-nums">'
            f"{escape(ci_text)}</text>"
            f'<text x="{_WEIGHT_X}" y="{y + 4.5}" text-anchor="end" '
            f'font-variant-numeric="tabular-nums" fill="{_MUTED}">{row.weight:.1f}%</text></g>'
        )

    rule_y = pooled_y - 14
    out.append(
        f'<line x1="{_LABEL_X}" x2="{_WEIGHT_X}" y1="{rule_y}" y2="{rule_y}" stroke="{_RULE}"/>'
    )
    left, mid, right = x_of(pooled.ci_low), x_of(pooled.estimate), x_of(pooled.ci_high)
    out.append(
        f"<g><title>{escape(pooled_label)}: {escape(est_text)}</title>"
        f'<text x="{_LABEL_X}" y="{pooled_y + 4.5}" font-weight="600">'
        f"{escape(pooled_label)}</text>"
        f'<polygon points="{left:.1f},{pooled_y} {mid:.1f},{pooled_y - 7} '
        f'{right:.1f},{pooled_y} {mid:.1f},{pooled_y + 7}" fill="{_POOLED}"/>'
        f'<text x="{_TEXT_X}" y="{pooled_y + 4.5}" font-weight="600" '
        f'font-variant-numeric="tabular-nums">{_format_number(show(pooled.estimate))} '
        f"[{_format_number(show(pooled.ci_low))}, {_format_number(show(pooled.ci_high))}]</text>"
        f'<text x="{_WEIGHT_X}" y="{pooled_y + 4.5}" text-anchor="end" fill="{_MUTED}" '
        f'font-variant-numeric="tabular-nums">100%</text></g>'
    )
    if has_pi:
        pi_text = f"{_format_number(show(pooled.pi_low))}, {_format_number(show(pooled.pi_high))}"
        x_lo, x_hi = x_of(pooled.pi_low), x_of(pooled.pi_high)
        out.append(
            f"<g><title>{level_pct} prediction interval: {escape(pi_text)}</title>"
            f'<text x="{_LABEL_X}" y="{pi_y + 4.5}" fill="{_MUTED}">'
            f"{level_pct} prediction interval</text>"
            f'<line x1="{x_lo:.1f}" x2="{x_hi:.1f}" y1="{pi_y}" y2="{pi_y}" '
            f'stroke="{_POOLED}" stroke-width="1.5"/>'
            f'<line x1="{x_lo:.1f}" x2="{x_lo:.1f}" y1="{pi_y - 5}" y2="{pi_y + 5}" '
            f'stroke="{_POOLED}" stroke-width="1.5"/>'
            f'<line x1="{x_hi:.1f}" x2="{x_hi:.1f}" y1="{pi_y - 5}" y2="{pi_y + 5}" '
            f'stroke="{_POOLED}" stroke-width="1.5"/>'
            f'<text x="{_TEXT_X}" y="{pi_y + 4.5}" fill="{_MUTED}" '
            f'font-variant-numeric="tabular-nums">[{escape(pi_text)}]</text></g>'
        )

    out.append(
        f'<g stroke="{_AXIS}"><line x1="{_PLOT_X0}" x2="{_PLOT_X1}" y1="{axis_y}" y2="{axis_y}"/>'
    )
    for tick in ticks:
        tx = x_of(tick)
        out.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{axis_y}" y2="{axis_y + 5}"/>')
    out.append("</g>")
    out.append(f'<g fill="{_MUTED}" font-size="12" text-anchor="middle">')
    for tick in ticks:
        tick_text = escape(_format_tick(show(tick)))
        out.append(f'<text x="{x_of(tick):.1f}" y="{axis_y + 19}">{tick_text}</text>')
    out.append("</g>")
    if has_favours:
        # Each side's meaning starts at the line of no effect and points away from it.
        favours_y = axis_y + 40
        out.append(f'<g font-size="12" fill="{_MUTED}">')
        if favours_left:
            out.append(
                f'<text x="{null_x - 6:.1f}" y="{favours_y}" text-anchor="end">'
                f"\u2190 {escape(favours_left)}</text>"
            )
        if favours_right:
            out.append(
                f'<text x="{null_x + 6:.1f}" y="{favours_y}" text-anchor="start">'
                f"{escape(favours_right)} \u2192</text>"
            )
        out.append("</g>")
    out.append(
        f'<text x="{(_PLOT_X0 + _PLOT_X1) / 2:.1f}" y="{label_y}" text-anchor="middle" '
        f'fill="{_INK}">{escape(x_label)}</text>'
    )
    out.append("</svg>")
    return "\n".join(out)
