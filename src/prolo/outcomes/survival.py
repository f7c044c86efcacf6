"""Kaplan-Meier survival curves for the outcomes registry.

A clinic uses these for time-to-event questions such as "how long until pain
returns after the last injection session?" or "how long do patients stay
improved?". The estimator, the Greenwood standard error and the confidence
band follow R's ``survival::survfit`` (Therneau), so a registry export can be
checked against R line by line:

- ``survival`` is S(t) just after each distinct event time; subjects censored at
  an event time count as at risk at that time (events happen first).
- ``std_err`` is the Greenwood standard error of S(t), the column that
  ``summary(survfit(...))`` prints.
- The band uses ``conf_type="log-log"`` by default (survfit's
  ``conf.type="log-log"``); ``"log"`` (survfit's default) and ``"plain"`` are
  available for comparison.

:func:`km_svg` draws the step curve with its band and a number-at-risk row as a
standalone, accessible SVG.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Literal

from scipy import special

__all__ = ["KaplanMeier", "kaplan_meier", "kaplan_meier_from_counts", "km_svg"]

ConfType = Literal["log-log", "log", "plain"]


@dataclass(frozen=True)
class KaplanMeier:
    """A Kaplan-Meier curve: one entry per distinct event time, in time order.

    Attributes
    ----------
    time : tuple of float
        Distinct times at which at least one event happened.
    n_risk : tuple of int
        Subjects still under observation just before each time.
    n_event : tuple of int
        Events at each time.
    survival : tuple of float
        S(t) just after each time.
    std_err : tuple of float or None
        Greenwood standard error of S(t); ``None`` once S(t) reaches 0, where it
        is undefined (R prints NaN).
    ci_low, ci_high : tuple of float or None
        Pointwise confidence band at ``level``; ``None`` where undefined (R
        prints NA).
    level : float
        Confidence level.
    conf_type : str
        Scale of the band: ``"log-log"``, ``"log"`` or ``"plain"``.
    n : int
        Number of subjects.
    censor_times : tuple of float
        Times of censored observations (with repeats), for plotting.
    last_time : float
        The largest observed time, event or censored.
    """

    time: tuple[float, ...]
    n_risk: tuple[int, ...]
    n_event: tuple[int, ...]
    survival: tuple[float, ...]
    std_err: tuple[float | None, ...]
    ci_low: tuple[float | None, ...]
    ci_high: tuple[float | None, ...]
    level: float
    conf_type: str
    n: int
    censor_times: tuple[float, ...]
    last_time: float

    def survival_at(self, t: float) -> float | None:
        """S(t) at any time ``t``: the step function, right-continuous.

        Returns 1.0 before the first event and ``None`` after the last observed
        time, where the data say nothing.

        Examples
        --------
        >>> km = kaplan_meier([2, 3, 3, 5], [1, 1, 0, 1])
        >>> km.survival_at(0), km.survival_at(2), km.survival_at(4.9), km.survival_at(6)
        (1.0, 0.75, 0.5, None)
        """
        index = self._index_at(t)
        if index is None:
            return None
        return 1.0 if index < 0 else self.survival[index]

    def interval_at(self, t: float) -> tuple[float | None, float | None]:
        """The confidence band ``(low, high)`` at any time ``t``.

        ``(1.0, 1.0)`` before the first event; ``(None, None)`` after the last
        observed time or where the band is undefined.
        """
        index = self._index_at(t)
        if index is None:
            return None, None
        if index < 0:
            return 1.0, 1.0
        return self.ci_low[index], self.ci_high[index]

    def n_at_risk(self, t: float) -> int:
        """Subjects still under observation just before time ``t``."""
        if not math.isfinite(t):
            raise ValueError(f"t must be finite; got t={t!r}")
        events_before = sum(d for time, d in zip(self.time, self.n_event, strict=True) if time < t)
        censored_before = bisect.bisect_left(self.censor_times, t)
        return self.n - events_before - censored_before

    def _index_at(self, t: float) -> int | None:
        if not math.isfinite(t):
            raise ValueError(f"t must be finite; got t={t!r}")
        if t > self.last_time:
            return None
        return bisect.bisect_right(self.time, t) - 1


def _check_level(level: float) -> None:
    if not (isinstance(level, int | float) and 0.0 < float(level) < 1.0):
        raise ValueError(f"level must be strictly between 0 and 1; got level={level!r}")


def _band(
    surv: float, var_cumhaz: float, z: float, conf_type: str
) -> tuple[float | None, float | None]:
    """Pointwise interval for S(t), as ``survival:::survfit_confint`` builds it."""
    if surv <= 0.0 or not math.isfinite(var_cumhaz):
        return None, None
    se_cumhaz = math.sqrt(var_cumhaz)
    if conf_type == "plain":
        half = z * se_cumhaz * surv
        return max(0.0, surv - half), min(1.0, surv + half)
    if conf_type == "log":
        return surv * math.exp(-z * se_cumhaz), min(1.0, surv * math.exp(z * se_cumhaz))
    if surv >= 1.0:
        # log(-log(1)) is undefined; survfit returns NA here too.
        return None, None
    # log-log: an interval for log(-log S) with se = se(H) / |log S|, mapped back.
    log_surv = math.log(surv)
    shift = z * se_cumhaz / log_surv  # negative, since log S < 0
    centre = math.log(-log_surv)
    return math.exp(-math.exp(centre - shift)), math.exp(-math.exp(centre + shift))


def kaplan_meier(
    times: Sequence[float],
    events: Sequence[bool | int],
    *,
    level: float = 0.95,
    conf_type: ConfType = "log-log",
) -> KaplanMeier:
    """Kaplan-Meier estimate with Greenwood standard errors and a confidence band.

    Parameters
    ----------
    times : sequence of float
        Follow-up time of each subject (non-negative, finite).
    events : sequence of bool or {0, 1}
        1 (True) if the event was observed at that time, 0 (False) if the
        subject was censored.
    level : float, default=0.95
        Confidence level of the band.
    conf_type : {"log-log", "log", "plain"}, default="log-log"
        Scale on which the band is symmetric, as survfit's ``conf.type``.

    Returns
    -------
    KaplanMeier

    Examples
    --------
    >>> km = kaplan_meier([2, 3, 3, 5], [1, 1, 0, 1])
    >>> km.time, km.n_risk, km.n_event, km.survival
    ((2.0, 3.0, 5.0), (4, 3, 1), (1, 1, 1), (0.75, 0.5, 0.0))
    >>> round(km.std_err[0], 4), [round(x, 4) for x in (km.ci_low[0], km.ci_high[0])]
    (0.2165, [0.1279, 0.9605])
    """
    _check_level(level)
    if conf_type not in ("log-log", "log", "plain"):
        raise ValueError(
            f"conf_type must be 'log-log', 'log' or 'plain'; got conf_type={conf_type!r}"
        )
    if isinstance(times, str | bytes) or isinstance(events, str | bytes):
        raise ValueError("times and events must be sequences, not strings")
    if len(times) != len(events):
        raise ValueError(
            f"times and events must have the same length; "
            f"got len(times)={len(times)}, len(events)={len(events)}"
        )
    if len(times) == 0:
        raise ValueError("times must contain at least one subject; got an empty sequence")

    observations: list[tuple[float, bool]] = []
    for i, (raw_time, raw_event) in enumerate(zip(times, events, strict=True)):
        try:
            time = float(raw_time)
        except (TypeError, ValueError):
            raise ValueError(f"times must be numbers; got times[{i}]={raw_time!r}") from None
        if not math.isfinite(time) or time < 0.0:
            raise ValueError(f"times must be finite and non-negative; got times[{i}]={raw_time!r}")
        if raw_event not in (0, 1):
            raise ValueError(f"events must be 0/1 or False/True; got events[{i}]={raw_event!r}")
        observations.append((time, bool(raw_event)))
    observations.sort()

    z = float(special.ndtri(0.5 + level / 2.0))
    n = len(observations)
    out_time: list[float] = []
    out_risk: list[int] = []
    out_event: list[int] = []
    out_surv: list[float] = []
    out_se: list[float | None] = []
    out_low: list[float | None] = []
    out_high: list[float | None] = []
    censor_times: list[float] = []

    surv = 1.0
    var_cumhaz = 0.0  # Greenwood sum of d / (n (n - d)), the variance of -log S
    at_risk = n
    i = 0
    while i < n:
        time = observations[i][0]
        deaths = 0
        censored = 0
        while i < n and observations[i][0] == time:
            if observations[i][1]:
                deaths += 1
            else:
                censored += 1
                censor_times.append(time)
            i += 1
        if deaths:
            surv *= (at_risk - deaths) / at_risk
            if deaths < at_risk:
                var_cumhaz += deaths / (at_risk * (at_risk - deaths))
            else:
                var_cumhaz = math.inf
            low, high = _band(surv, var_cumhaz, z, conf_type)
            out_time.append(time)
            out_risk.append(at_risk)
            out_event.append(deaths)
            out_surv.append(surv)
            out_se.append(surv * math.sqrt(var_cumhaz) if surv > 0.0 else None)
            out_low.append(low)
            out_high.append(high)
        at_risk -= deaths + censored

    return KaplanMeier(
        time=tuple(out_time),
        n_risk=tuple(out_risk),
        n_event=tuple(out_event),
        survival=tuple(out_surv),
        std_err=tuple(out_se),
        ci_low=tuple(out_low),
        ci_high=tuple(out_high),
        level=float(level),
        conf_type=conf_type,
        n=n,
        censor_times=tuple(censor_times),
        last_time=observations[-1][0],
    )


def kaplan_meier_from_counts(
    times: Sequence[float],
    events: Sequence[int],
    censored: Sequence[int],
    *,
    level: float = 0.95,
    conf_type: ConfType = "log-log",
) -> KaplanMeier:
    """The same estimate as :func:`kaplan_meier`, from counts per distinct time.

    A registry engine groups millions of subjects into a few hundred distinct times
    (days); this turns ``(time, events at time, censored at time)`` rows into the
    curve without expanding them back to one entry per subject in Python.

    Examples
    --------
    >>> km = kaplan_meier_from_counts([2, 3, 5], [1, 1, 1], [0, 1, 0])
    >>> km == kaplan_meier([2, 3, 3, 5], [1, 1, 0, 1])
    True
    """
    _check_level(level)
    if conf_type not in ("log-log", "log", "plain"):
        raise ValueError(
            f"conf_type must be 'log-log', 'log' or 'plain'; got conf_type={conf_type!r}"
        )
    if not len(times) == len(events) == len(censored):
        raise ValueError(
            "times, events and censored must have the same length; got "
            f"{len(times)}, {len(events)} and {len(censored)}"
        )
    rows = sorted(zip((float(t) for t in times), events, censored, strict=True))
    for time, d, c in rows:
        if not math.isfinite(time) or time < 0.0:
            raise ValueError(f"times must be finite and non-negative; got {time!r}")
        if d < 0 or c < 0:
            raise ValueError(f"counts must not be negative; got events={d!r}, censored={c!r}")
    merged: list[tuple[float, int, int]] = []
    for time, d, c in rows:
        if merged and merged[-1][0] == time:
            merged[-1] = (time, merged[-1][1] + int(d), merged[-1][2] + int(c))
        else:
            merged.append((time, int(d), int(c)))
    merged = [row for row in merged if row[1] or row[2]]
    n = sum(d + c for _, d, c in merged)
    if n == 0:
        raise ValueError("the counts hold no subject; got an empty or all-zero table")
    z = float(special.ndtri(0.5 + level / 2.0))
    out: dict[str, list[object]] = {k: [] for k in ("t", "r", "d", "s", "se", "lo", "hi")}
    censor_times: list[float] = []
    surv, var_cumhaz, at_risk = 1.0, 0.0, n
    for time, deaths, cens in merged:
        censor_times.extend([time] * cens)
        if deaths:
            surv *= (at_risk - deaths) / at_risk
            if deaths < at_risk:
                var_cumhaz += deaths / (at_risk * (at_risk - deaths))
            else:
                var_cumhaz = math.inf
            low, high = _band(surv, var_cumhaz, z, conf_type)
            for key, value in (
                ("t", time),
                ("r", at_risk),
                ("d", deaths),
                ("s", surv),
                ("se", surv * math.sqrt(var_cumhaz) if surv > 0.0 else None),
                ("lo", low),
                ("hi", high),
            ):
                out[key].append(value)
        at_risk -= deaths + cens
    return KaplanMeier(
        time=tuple(out["t"]),  # type: ignore[arg-type]
        n_risk=tuple(out["r"]),  # type: ignore[arg-type]
        n_event=tuple(out["d"]),  # type: ignore[arg-type]
        survival=tuple(out["s"]),  # type: ignore[arg-type]
        std_err=tuple(out["se"]),  # type: ignore[arg-type]
        ci_low=tuple(out["lo"]),  # type: ignore[arg-type]
        ci_high=tuple(out["hi"]),  # type: ignore[arg-type]
        level=float(level),
        conf_type=conf_type,
        n=n,
        censor_times=tuple(censor_times),
        last_time=merged[-1][0],
    )


# --------------------------------------------------------------------------- #
# plot

_FONT = (
    'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", sans-serif'
)
_INK = "#1f2933"
_MUTED = "#52606d"
_GRID = "#e4e7eb"
_AXIS = "#7b8794"
_LINE = "#334e68"
_BAND = "#9fb3c8"


def _time_ticks(high: float) -> list[float]:
    """About five round ticks from 0 to at least ``high``."""
    if high <= 0.0:
        return [0.0, 1.0]
    raw = high / 5.0
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * magnitude >= raw)
    count = math.ceil(high / step - 1e-9)
    decimals = max(0, -math.floor(math.log10(step)) + 1)
    return [round(i * step, decimals) for i in range(count + 1)]


def _tick_text(value: float) -> str:
    return f"{value:g}"


def km_svg(
    curve: KaplanMeier,
    *,
    title: str,
    x_label: str = "Time",
    y_label: str = "Probability still free of the event",
    band: bool = True,
    id_prefix: str = "km",
) -> str:
    """Render a Kaplan-Meier curve as a standalone SVG step plot.

    Parameters
    ----------
    curve : KaplanMeier
        The estimate to draw.
    title : str
        Heading above the plot and the SVG ``<title>``.
    x_label : str, default="Time"
        Time axis caption, with its unit (e.g. ``"Weeks since last session"``).
    y_label : str, default="Probability still free of the event"
        Probability axis caption.
    band : bool, default=True
        Whether to shade the pointwise confidence band.
    id_prefix : str, default="km"
        Prefix for element ids, unique per page when several plots share one.

    Returns
    -------
    str
        An SVG document: the step curve, the shaded band, censoring marks and a
        number-at-risk row under the time axis.

    Examples
    --------
    >>> km = kaplan_meier([2, 3, 3, 5], [1, 1, 0, 1])
    >>> svg = km_svg(km, title="Time to pain recurrence", x_label="Weeks")
    >>> svg.startswith("<svg") and "Number at risk" in svg
    True
    """
    if not title.strip():
        raise ValueError(f"title must not be blank; got title={title!r}")

    width, height = 760, 440
    x0, x1 = 84, width - 32
    y0, y1 = 64, 316  # y0 is S = 1, y1 is S = 0
    ticks = _time_ticks(curve.last_time)
    t_max = ticks[-1]

    def x_of(t: float) -> float:
        return x0 + t / t_max * (x1 - x0)

    def y_of(s: float) -> float:
        return y1 - s * (y1 - y0)

    title_id, desc_id = f"{id_prefix}-title", f"{id_prefix}-desc"
    level_pct = f"{curve.level * 100:g}%"
    events = sum(curve.n_event)
    final = curve.survival[-1] if curve.survival else 1.0
    description = (
        f"Kaplan-Meier curve for {curve.n} {'person' if curve.n == 1 else 'people'} with "
        f"{events} {'event' if events == 1 else 'events'}; "
        f"estimated {final * 100:.0f}% still free of the event at "
        f"{_tick_text(curve.time[-1] if curve.time else 0.0)} "
        f"({x_label.lower()}). Shaded band: {level_pct} confidence interval "
        f"({curve.conf_type} scale)."
    )

    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" '
        f'aria-labelledby="{escape(title_id)} {escape(desc_id)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'font-family="{escape(_FONT)}" font-size="13" fill="{_INK}">',
        f'<title id="{escape(title_id)}">{escape(title)}</title>',
        f'<desc id="{escape(desc_id)}">{escape(description)}</desc>',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="16" y="30" font-size="16" font-weight="600">{escape(title)}</text>',
    ]

    # Horizontal grid and probability axis (as percentages, the clinic's words).
    out.append(f'<g stroke="{_GRID}">')
    for s in (0.0, 0.25, 0.5, 0.75, 1.0):
        out.append(f'<line x1="{x0}" x2="{x1}" y1="{y_of(s):.1f}" y2="{y_of(s):.1f}"/>')
    out.append("</g>")
    out.append(f'<g fill="{_MUTED}" font-size="12" text-anchor="end">')
    for s in (0.0, 0.25, 0.5, 0.75, 1.0):
        out.append(f'<text x="{x0 - 8}" y="{y_of(s) + 4:.1f}">{s * 100:.0f}%</text>')
    out.append("</g>")

    # Step coordinates: S is flat on [t_i, t_{i+1}) and drops at each event time.
    knots = [(0.0, 1.0, 1.0, 1.0)]
    for t, s, low, high in zip(
        curve.time, curve.survival, curve.ci_low, curve.ci_high, strict=True
    ):
        knots.append((t, s, s if low is None else low, s if high is None else high))
    end = curve.last_time

    if band and len(knots) > 1:
        upper: list[str] = []
        lower: list[str] = []
        for j, (t, _, low, high) in enumerate(knots):
            t_next = knots[j + 1][0] if j + 1 < len(knots) else end
            upper += [f"{x_of(t):.1f},{y_of(high):.1f}", f"{x_of(t_next):.1f},{y_of(high):.1f}"]
            lower += [f"{x_of(t):.1f},{y_of(low):.1f}", f"{x_of(t_next):.1f},{y_of(low):.1f}"]
        points = " ".join(upper + lower[::-1])
        out.append(f'<polygon points="{points}" fill="{_BAND}" fill-opacity="0.35" stroke="none"/>')

    path = [f"M{x_of(0.0):.1f},{y_of(1.0):.1f}"]
    for j, (_, s, _, _) in enumerate(knots):
        if j > 0:
            path.append(f"V{y_of(s):.1f}")
        t_next = knots[j + 1][0] if j + 1 < len(knots) else end
        path.append(f"H{x_of(t_next):.1f}")
    out.append(
        f'<path d="{" ".join(path)}" fill="none" stroke="{_LINE}" stroke-width="2" '
        f'stroke-linejoin="round"/>'
    )

    if curve.censor_times:
        out.append(f'<g stroke="{_LINE}" stroke-width="1.5"><title>Censored</title>')
        for t in sorted(set(curve.censor_times)):
            at = curve.survival_at(t)
            cy = y_of(1.0 if at is None else at)
            out.append(
                f'<line x1="{x_of(t):.1f}" x2="{x_of(t):.1f}" y1="{cy - 5:.1f}" y2="{cy + 5:.1f}"/>'
            )
        out.append("</g>")

    out.append(
        f'<line x1="{x0}" x2="{x1}" y1="{y1}" y2="{y1}" stroke="{_AXIS}"/>'
        f'<g stroke="{_AXIS}">'
        + "".join(
            f'<line x1="{x_of(t):.1f}" x2="{x_of(t):.1f}" y1="{y1}" y2="{y1 + 5}"/>' for t in ticks
        )
        + "</g>"
    )
    out.append(f'<g fill="{_MUTED}" font-size="12" text-anchor="middle">')
    for t in ticks:
        out.append(f'<text x="{x_of(t):.1f}" y="{y1 + 19}">{escape(_tick_text(t))}</text>')
    out.append("</g>")
    out.append(
        f'<text x="{(x0 + x1) / 2:.1f}" y="{y1 + 40}" text-anchor="middle">{escape(x_label)}</text>'
        f'<text transform="translate(22 {(y0 + y1) / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )

    risk_y = y1 + 80
    out.append(
        f'<text x="16" y="{risk_y - 18}" font-size="12" font-weight="600" fill="{_MUTED}">'
        f"Number at risk</text>"
    )
    out.append('<g font-size="12" text-anchor="middle" font-variant-numeric="tabular-nums">')
    for t in ticks:
        at_risk = curve.n_at_risk(t) if t <= end else 0
        out.append(f'<text x="{x_of(t):.1f}" y="{risk_y}">{at_risk}</text>')
    out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)
