"""Descriptive statistics for registry outcomes: means, proportions, paired change.

These summarise a clinic's own patients ("mean pain score fell by 2.1 points,
95% CI 1.4 to 2.8"; "31 of 48 patients, 65%, reached the MCID"). They never
return NaN: an interval that cannot be computed (one patient, no spread) is
``None`` or degenerate, and the page says so in words.

- :func:`mean_ci`: mean with a Student t interval.
- :func:`proportion_ci`: proportion with the Wilson score interval, which keeps
  sensible bounds at 0% and 100% and for small samples (Wilson 1927,
  https://doi.org/10.1080/01621459.1927.10502953).
- :func:`paired_change`: follow-up minus baseline for the same patients.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import special

__all__ = ["MeanCI", "PairedChange", "ProportionCI", "mean_ci", "paired_change", "proportion_ci"]


@dataclass(frozen=True)
class MeanCI:
    """Mean with its t confidence interval.

    ``sd``, ``ci_low`` and ``ci_high`` are ``None`` when ``n < 2``.
    """

    n: int
    mean: float
    sd: float | None
    ci_low: float | None
    ci_high: float | None
    level: float


@dataclass(frozen=True)
class ProportionCI:
    """Proportion ``successes / n`` with its Wilson score interval."""

    successes: int
    n: int
    proportion: float
    ci_low: float
    ci_high: float
    level: float


@dataclass(frozen=True)
class PairedChange:
    """Change from baseline (``follow_up - baseline``) over complete pairs.

    Attributes
    ----------
    n : int
        Number of complete pairs used.
    n_excluded : int
        Pairs dropped because one of the two values was missing.
    baseline_mean, follow_up_mean : float
        Means over the complete pairs.
    change : MeanCI
        Mean change with its t interval (``None`` bounds when ``n < 2``).
    p_value : float or None
        Two-sided paired t-test of "mean change = 0"; ``None`` when ``n < 2``.
    standardized_response_mean : float or None
        Mean change divided by the SD of the changes; ``None`` when ``n < 2``
        or every patient changed by the same amount.
    """

    n: int
    n_excluded: int
    baseline_mean: float
    follow_up_mean: float
    change: MeanCI
    p_value: float | None
    standardized_response_mean: float | None


def _check_level(level: float) -> None:
    if not (isinstance(level, int | float) and 0.0 < float(level) < 1.0):
        raise ValueError(f"level must be strictly between 0 and 1; got level={level!r}")


def _values(name: str, values: Sequence[float]) -> list[float]:
    if isinstance(values, str | bytes):
        raise ValueError(f"{name} must be a sequence of numbers; got {name}={values!r}")
    out = []
    for i, value in enumerate(values):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must hold numbers; got {name}[{i}]={value!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"{name} must be finite; got {name}[{i}]={value!r}")
        out.append(number)
    return out


def _mean_and_sd(values: list[float]) -> tuple[float, float | None]:
    # Scaling by the largest magnitude keeps sums and squares inside the float range,
    # so inputs near 1e308 give a finite mean instead of inf or NaN.
    scale = max(abs(v) for v in values)
    if scale == 0.0:
        return 0.0, (0.0 if len(values) > 1 else None)
    scaled = [v / scale for v in values]
    centre = math.fsum(scaled) / len(scaled)
    mean = min(max(centre * scale, min(values)), max(values))
    if len(values) < 2:
        return mean, None
    sum_sq = math.fsum((v - centre) ** 2 for v in scaled)
    return mean, scale * math.sqrt(sum_sq / (len(values) - 1))


def mean_ci(values: Sequence[float], *, level: float = 0.95) -> MeanCI:
    """Mean with a two-sided Student t confidence interval.

    Parameters
    ----------
    values : sequence of float
        Finite observations, at least one.
    level : float, default=0.95
        Confidence level.

    Returns
    -------
    MeanCI
        With ``sd`` and the interval set to ``None`` when there is a single
        value (no spread to estimate).

    Examples
    --------
    >>> ci = mean_ci([4.0, 6.0, 5.0, 7.0])
    >>> ci.n, ci.mean, round(ci.sd, 4), round(ci.ci_low, 4), round(ci.ci_high, 4)
    (4, 5.5, 1.291, 3.4457, 7.5543)
    >>> mean_ci([3.0])
    MeanCI(n=1, mean=3.0, sd=None, ci_low=None, ci_high=None, level=0.95)
    """
    _check_level(level)
    data = _values("values", values)
    if not data:
        raise ValueError("values must contain at least one number; got an empty sequence")
    mean, sd = _mean_and_sd(data)
    n = len(data)
    if sd is None:
        return MeanCI(n=n, mean=mean, sd=None, ci_low=None, ci_high=None, level=float(level))
    crit = float(special.stdtrit(n - 1, 0.5 + level / 2.0))
    half = crit * (sd / math.sqrt(n))
    return MeanCI(
        n=n, mean=mean, sd=sd, ci_low=mean - half, ci_high=mean + half, level=float(level)
    )


def proportion_ci(successes: int, n: int, *, level: float = 0.95) -> ProportionCI:
    """Proportion with the Wilson score confidence interval.

    Parameters
    ----------
    successes : int
        Number of patients with the outcome, ``0 <= successes <= n``.
    n : int
        Number of patients, at least 1.
    level : float, default=0.95
        Confidence level.

    Returns
    -------
    ProportionCI

    Examples
    --------
    >>> ci = proportion_ci(31, 48)
    >>> round(ci.proportion, 4), round(ci.ci_low, 4), round(ci.ci_high, 4)
    (0.6458, 0.5044, 0.7657)
    >>> proportion_ci(0, 10).ci_low
    0.0
    """
    _check_level(level)
    for name, value in (("successes", successes), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be a whole number; got {name}={value!r}")
    if n < 1:
        raise ValueError(f"n must be at least 1; got n={n!r}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n; got successes={successes!r}, n={n!r}")
    z = float(special.ndtri(0.5 + level / 2.0))
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n))
    # At 0 or n successes the bound is exactly 0 or 1 in theory; rounding must not
    # turn that into -1e-17.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return ProportionCI(
        successes=successes, n=n, proportion=p, ci_low=low, ci_high=high, level=float(level)
    )


def paired_change(
    baseline: Sequence[float | None],
    follow_up: Sequence[float | None],
    *,
    level: float = 0.95,
) -> PairedChange:
    """Change from baseline to follow-up in the same patients.

    Pairs where either value is ``None`` (a questionnaire not returned) are
    left out, and counted in ``n_excluded``, so the change is always computed
    on the same patients at both times.

    Parameters
    ----------
    baseline : sequence of float or None
        Scores before treatment, one per patient.
    follow_up : sequence of float or None
        Scores at follow-up, same patients in the same order.
    level : float, default=0.95
        Confidence level of the interval for the mean change.

    Returns
    -------
    PairedChange

    Examples
    --------
    >>> pc = paired_change([7, 6, 8, None], [4, 5, 5, 3])
    >>> pc.n, pc.n_excluded, pc.change.mean, round(pc.standardized_response_mean, 3)
    (3, 1, -2.3333333333333335, -2.021)
    """
    _check_level(level)
    if isinstance(baseline, str | bytes) or isinstance(follow_up, str | bytes):
        raise ValueError("baseline and follow_up must be sequences of numbers, not strings")
    if len(baseline) != len(follow_up):
        raise ValueError(
            f"baseline and follow_up must have the same length; "
            f"got len(baseline)={len(baseline)}, len(follow_up)={len(follow_up)}"
        )
    pairs = [
        (b, f) for b, f in zip(baseline, follow_up, strict=True) if b is not None and f is not None
    ]
    if not pairs:
        raise ValueError("baseline and follow_up have no complete pair; got none to compare")
    before = _values("baseline", [b for b, _ in pairs])
    after = _values("follow_up", [f for _, f in pairs])
    # Subtracting halves keeps the change finite even for values near the float limit.
    changes = [2.0 * (a / 2.0 - b / 2.0) for b, a in zip(before, after, strict=True)]
    if any(math.isinf(c) for c in changes):
        raise ValueError("follow_up - baseline overflows; the scores are out of range")
    change = mean_ci(changes, level=level)
    p_value: float | None = None
    srm: float | None = None
    if change.sd is not None:
        if change.sd > 0.0:
            t = change.mean / (change.sd / math.sqrt(change.n))
            p_value = float(2.0 * special.stdtr(change.n - 1, -abs(t)))
            srm = change.mean / change.sd
        else:
            # Everyone changed by exactly the same amount: no sampling spread at all.
            p_value = 1.0 if change.mean == 0.0 else 0.0
    return PairedChange(
        n=len(pairs),
        n_excluded=len(baseline) - len(pairs),
        baseline_mean=mean_ci(before).mean,
        follow_up_mean=mean_ci(after).mean,
        change=change,
        p_value=p_value,
        standardized_response_mean=srm,
    )
