"""Effect sizes and inverse-variance pooling for evidence synthesis.

The numbers a clinic sees on the "does prolotherapy help?" pages come from here,
so every formula follows R's ``metafor`` package (Viechtbauer 2010,
https://doi.org/10.18637/jss.v036.i03) and the tests pin them to metafor's own
published output for the BCG vaccine data set.

Effect sizes
    :func:`mean_difference`, :func:`hedges_g` and :func:`log_risk_ratio` return an
    :class:`EffectSize` ``(yi, vi)`` exactly as ``escalc`` does for the measures
    ``"MD"``, ``"SMD"`` and ``"RR"`` (default ``vtype="LS"``, ``add=1/2``,
    ``to="only0"``). :func:`log_risk_ratios` is the vectorised form.

Pooling
    :func:`fixed_effect` (``rma(method="FE")``) and :func:`random_effects`
    (``rma(method="REML" | "DL", test="z" | "knha")``) return a frozen
    :class:`PooledEstimate`.

All functions are pure: values in, values out, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, special

__all__ = [
    "EffectSize",
    "EffectSizes",
    "PooledEstimate",
    "fixed_effect",
    "hedges_g",
    "log_risk_ratio",
    "log_risk_ratios",
    "mean_difference",
    "random_effects",
]

FloatArray = NDArray[np.float64]

# metafor's Fisher scoring stops when tau^2 moves less than 1e-5 or after 100
# iterations; we iterate to a much tighter tolerance so the result is the REML root
# itself, which agrees with metafor to every printed decimal.
_REML_TOLERANCE = 1e-12
_REML_MAX_ITERATIONS = 100


@dataclass(frozen=True)
class EffectSize:
    """One study's effect estimate ``yi`` and its sampling variance ``vi``."""

    yi: float
    vi: float


@dataclass(frozen=True)
class EffectSizes:
    """Effect estimates and sampling variances for several studies, in input order."""

    yi: tuple[float, ...]
    vi: tuple[float, ...]


@dataclass(frozen=True)
class PooledEstimate:
    """The result of pooling ``k`` studies.

    Attributes
    ----------
    method : str
        ``"FE"``, ``"REML"`` or ``"DL"``.
    test : str
        ``"z"`` (normal reference distribution) or ``"knha"``
        (Hartung-Knapp-Sidik-Jonkman, t with ``k - 1`` degrees of freedom).
    k : int
        Number of studies.
    estimate, se : float
        Pooled effect and its standard error.
    ci_low, ci_high : float
        Confidence interval for the pooled effect at ``level``.
    statistic, p_value : float
        z (or t for ``knha``) statistic for "pooled effect = 0" and its
        two-sided p-value.
    tau2, tau : float
        Between-study variance and its square root (0 for FE).
    i2 : float
        I^2 in percent.
    h2 : float
        H^2 (total variability / sampling variability).
    q, q_df, q_p : float, int, float
        Cochran's Q, its degrees of freedom ``k - 1`` and p-value.
    pi_low, pi_high : float
        Prediction interval for the true effect in a new study (equal to the
        confidence interval when tau^2 is 0 or the model is FE).
    level : float
        Confidence level, e.g. 0.95.
    weights : tuple of float
        Each study's share of the total weight, in percent.
    """

    method: str
    test: str
    k: int
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    statistic: float
    p_value: float
    tau2: float
    tau: float
    i2: float
    h2: float
    q: float
    q_df: int
    q_p: float
    pi_low: float
    pi_high: float
    level: float
    weights: tuple[float, ...]


# --------------------------------------------------------------------------- #
# validation helpers


def _check_level(level: float) -> None:
    if not (isinstance(level, int | float) and 0.0 < float(level) < 1.0):
        raise ValueError(f"level must be strictly between 0 and 1; got level={level!r}")


def _finite(name: str, value: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number; got {name}={value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite; got {name}={value!r}")
    return number


def _positive(name: str, value: float) -> float:
    number = _finite(name, value)
    if number <= 0.0:
        raise ValueError(f"{name} must be positive; got {name}={value!r}")
    return number


def _count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be a whole number; got {name}={value!r}")
    if value < 0:
        raise ValueError(f"{name} must not be negative; got {name}={value!r}")
    return int(value)


def _as_vector(name: str, values: Sequence[float]) -> FloatArray:
    if isinstance(values, str | bytes):
        raise ValueError(f"{name} must be a sequence of numbers; got {name}={values!r}")
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of numbers; got {name}={values!r}") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional; got shape {array.shape}")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name} must be finite; got {name}[{i}]={array[i]!r}")
    return array


def _study_data(yi: Sequence[float], vi: Sequence[float]) -> tuple[FloatArray, FloatArray]:
    y = _as_vector("yi", yi)
    v = _as_vector("vi", vi)
    if y.size != v.size:
        raise ValueError(
            f"yi and vi must have the same length; got len(yi)={y.size}, len(vi)={v.size}"
        )
    if y.size == 0:
        raise ValueError("yi must contain at least one study; got an empty sequence")
    bad = np.flatnonzero(v <= 0.0)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"vi must be positive; got vi[{i}]={v[i]!r}")
    return y, v


# --------------------------------------------------------------------------- #
# effect sizes


def mean_difference(
    *, m1: float, sd1: float, n1: int, m2: float, sd2: float, n2: int
) -> EffectSize:
    """Raw mean difference ``m1 - m2`` with its sampling variance.

    Same as metafor's ``escalc(measure="MD")``: the variance
    ``sd1**2/n1 + sd2**2/n2`` does not assume equal variances.

    Parameters
    ----------
    m1, sd1, n1 : float, float, int
        Mean, standard deviation and size of group 1 (e.g. prolotherapy).
    m2, sd2, n2 : float, float, int
        The same for group 2 (e.g. control).

    Returns
    -------
    EffectSize

    Examples
    --------
    >>> es = mean_difference(m1=2.0, sd1=2.0, n1=20, m2=4.0, sd2=3.0, n2=25)
    >>> round(es.yi, 4), round(es.vi, 4)
    (-2.0, 0.56)
    """
    m1_ = _finite("m1", m1)
    m2_ = _finite("m2", m2)
    sd1_ = _positive("sd1", sd1)
    sd2_ = _positive("sd2", sd2)
    n1_ = _count("n1", n1)
    n2_ = _count("n2", n2)
    if n1_ < 1:
        raise ValueError(f"n1 must be at least 1; got n1={n1!r}")
    if n2_ < 1:
        raise ValueError(f"n2 must be at least 1; got n2={n2!r}")
    return EffectSize(yi=m1_ - m2_, vi=sd1_**2 / n1_ + sd2_**2 / n2_)


def _small_sample_correction(df: int) -> float:
    # Hedges (1981) exact factor Gamma(df/2) / (sqrt(df/2) Gamma((df-1)/2)), computed
    # on the log scale because the gammas overflow for a few hundred subjects.
    return math.exp(
        special.gammaln(df / 2.0) - 0.5 * math.log(df / 2.0) - special.gammaln((df - 1) / 2.0)
    )


def hedges_g(*, m1: float, sd1: float, n1: int, m2: float, sd2: float, n2: int) -> EffectSize:
    """Standardized mean difference with the small-sample correction (Hedges' g).

    Same as metafor's ``escalc(measure="SMD")`` with its default ``vtype="LS"``:
    ``g = c(m) (m1 - m2) / s_pooled`` with the exact correction ``c(m)``,
    ``m = n1 + n2 - 2``, and variance ``1/n1 + 1/n2 + g**2 / (2 (n1 + n2))``.

    Parameters
    ----------
    m1, sd1, n1 : float, float, int
        Mean, standard deviation and size of group 1.
    m2, sd2, n2 : float, float, int
        The same for group 2. ``n1 + n2`` must be at least 3.

    Returns
    -------
    EffectSize

    Examples
    --------
    >>> es = hedges_g(m1=10.0, sd1=2.0, n1=10, m2=8.0, sd2=2.0, n2=10)
    >>> round(es.yi, 4), round(es.vi, 4)
    (0.9576, 0.2229)
    """
    m1_ = _finite("m1", m1)
    m2_ = _finite("m2", m2)
    sd1_ = _positive("sd1", sd1)
    sd2_ = _positive("sd2", sd2)
    n1_ = _count("n1", n1)
    n2_ = _count("n2", n2)
    if n1_ < 1:
        raise ValueError(f"n1 must be at least 1; got n1={n1!r}")
    if n2_ < 1:
        raise ValueError(f"n2 must be at least 1; got n2={n2!r}")
    df = n1_ + n2_ - 2
    if df < 1:
        raise ValueError(f"n1 + n2 must be at least 3; got n1={n1!r}, n2={n2!r}")
    pooled_sd = math.sqrt(((n1_ - 1) * sd1_**2 + (n2_ - 1) * sd2_**2) / df)
    if pooled_sd == 0.0:
        raise ValueError(f"pooled standard deviation is zero; got sd1={sd1!r}, sd2={sd2!r}")
    g = _small_sample_correction(df) * (m1_ - m2_) / pooled_sd
    vi = 1.0 / n1_ + 1.0 / n2_ + g**2 / (2.0 * (n1_ + n2_))
    return EffectSize(yi=g, vi=vi)


def log_risk_ratio(
    *, events1: int, n1: int, events2: int, n2: int, correction: float = 0.5
) -> EffectSize:
    """Log risk ratio of group 1 versus group 2 with its sampling variance.

    Same as metafor's ``escalc(measure="RR")`` with its defaults ``add=1/2,
    to="only0"``: ``correction`` is added to all four cells of the 2x2 table
    only when one of them is zero, so the log and the variance stay finite.

    Parameters
    ----------
    events1, n1 : int
        Events and group size in group 1 (``0 <= events1 <= n1``).
    events2, n2 : int
        Events and group size in group 2.
    correction : float, default=0.5
        Added to every cell of a table that has a zero cell. Must be positive.

    Returns
    -------
    EffectSize

    Examples
    --------
    Trial 1 of the BCG data (Aronson 1948) gives metafor's printed -0.8893 and 0.3256:

    >>> es = log_risk_ratio(events1=4, n1=123, events2=11, n2=139)
    >>> round(es.yi, 4), round(es.vi, 4)
    (-0.8893, 0.3256)
    """
    a = _count("events1", events1)
    n1_ = _count("n1", n1)
    c = _count("events2", events2)
    n2_ = _count("n2", n2)
    add = _positive("correction", correction)
    if n1_ < 1:
        raise ValueError(f"n1 must be at least 1; got n1={n1!r}")
    if n2_ < 1:
        raise ValueError(f"n2 must be at least 1; got n2={n2!r}")
    if a > n1_:
        raise ValueError(f"events1 must not exceed n1; got events1={events1!r}, n1={n1!r}")
    if c > n2_:
        raise ValueError(f"events2 must not exceed n2; got events2={events2!r}, n2={n2!r}")
    # A table with no events in either arm is kept and corrected like any other
    # table with a zero cell, as metafor does by default (drop00=FALSE).
    a_, b_, c_, d_ = float(a), float(n1_ - a), float(c), float(n2_ - c)
    if min(a_, b_, c_, d_) == 0.0:
        a_, b_, c_, d_ = a_ + add, b_ + add, c_ + add, d_ + add
    t1 = a_ + b_
    t2 = c_ + d_
    yi = math.log(a_ / t1) - math.log(c_ / t2)
    vi = 1.0 / a_ - 1.0 / t1 + 1.0 / c_ - 1.0 / t2
    return EffectSize(yi=yi, vi=vi)


def log_risk_ratios(
    *,
    events1: Sequence[int],
    n1: Sequence[int],
    events2: Sequence[int],
    n2: Sequence[int],
    correction: float = 0.5,
) -> EffectSizes:
    """Vectorised :func:`log_risk_ratio` for several studies.

    Parameters
    ----------
    events1, n1, events2, n2 : sequence of int
        One entry per study, all the same length.
    correction : float, default=0.5
        See :func:`log_risk_ratio`.

    Returns
    -------
    EffectSizes

    Examples
    --------
    >>> es = log_risk_ratios(events1=[4, 6], n1=[123, 306], events2=[11, 29], n2=[139, 303])
    >>> [round(y, 4) for y in es.yi]
    [-0.8893, -1.5854]
    """
    columns = {"events1": events1, "n1": n1, "events2": events2, "n2": n2}
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) != 1:
        detail = ", ".join(f"len({name})={size}" for name, size in lengths.items())
        raise ValueError(f"events1, n1, events2 and n2 must have the same length; got {detail}")
    yi: list[float] = []
    vi: list[float] = []
    for i in range(lengths["events1"]):
        try:
            es = log_risk_ratio(
                events1=events1[i],
                n1=n1[i],
                events2=events2[i],
                n2=n2[i],
                correction=correction,
            )
        except ValueError as error:
            raise ValueError(f"study {i}: {error}") from None
        yi.append(es.yi)
        vi.append(es.vi)
    return EffectSizes(yi=tuple(yi), vi=tuple(vi))


# --------------------------------------------------------------------------- #
# pooling


def _heterogeneity(y: FloatArray, v: FloatArray) -> tuple[float, float, float]:
    """Cochran's Q with fixed-effect weights, and the sums of w and w**2."""
    w = 1.0 / v
    sum_w = float(w.sum())
    mu = float((w * y).sum()) / sum_w
    q = float((w * (y - mu) ** 2).sum())
    return q, sum_w, float((w**2).sum())


def _q_p_value(q: float, df: int) -> float:
    if df < 1:
        # One study: there is nothing to be heterogeneous with.
        return 1.0
    return float(special.chdtrc(df, q))


def _two_sided(statistic: float, *, df: int | None) -> float:
    if df is None:
        return float(2.0 * special.ndtr(-abs(statistic)))
    return float(2.0 * special.stdtr(df, -abs(statistic)))


def _ratio(estimate: float, se: float) -> float:
    if se > 0.0:
        return estimate / se
    # Degenerate Knapp-Hartung case (every study estimates exactly the same value):
    # report an infinite statistic rather than NaN.
    return 0.0 if estimate == 0.0 else math.copysign(math.inf, estimate)


def fixed_effect(
    yi: Sequence[float], vi: Sequence[float], *, level: float = 0.95
) -> PooledEstimate:
    """Inverse-variance fixed-effect (common-effect) meta-analysis.

    Matches metafor's ``rma(yi, vi, method="FE")``. The prediction interval
    equals the confidence interval because tau^2 is 0 by assumption.

    Parameters
    ----------
    yi : sequence of float
        Study effect estimates (e.g. log risk ratios).
    vi : sequence of float
        Their sampling variances, all positive.
    level : float, default=0.95
        Confidence level.

    Returns
    -------
    PooledEstimate

    Examples
    --------
    >>> fe = fixed_effect([0.1, 0.3], [0.04, 0.04])
    >>> round(fe.estimate, 4), round(fe.se, 4), round(fe.q, 4)
    (0.2, 0.1414, 0.5)
    """
    _check_level(level)
    y, v = _study_data(yi, vi)
    k = int(y.size)
    w = 1.0 / v
    sum_w = float(w.sum())
    estimate = float((w * y).sum()) / sum_w
    se = math.sqrt(1.0 / sum_w)
    q, _, _ = _heterogeneity(y, v)
    q_df = k - 1
    i2 = 100.0 * max(0.0, (q - q_df) / q) if q > 0.0 else 0.0
    h2 = q / q_df if q_df > 0 else 1.0
    crit = float(special.ndtri(0.5 + level / 2.0))
    statistic = estimate / se
    ci_low, ci_high = estimate - crit * se, estimate + crit * se
    return PooledEstimate(
        method="FE",
        test="z",
        k=k,
        estimate=estimate,
        se=se,
        ci_low=ci_low,
        ci_high=ci_high,
        statistic=statistic,
        p_value=_two_sided(statistic, df=None),
        tau2=0.0,
        tau=0.0,
        i2=i2,
        h2=h2,
        q=q,
        q_df=q_df,
        q_p=_q_p_value(q, q_df),
        pi_low=ci_low,
        pi_high=ci_high,
        level=float(level),
        weights=tuple(float(x) for x in 100.0 * w / sum_w),
    )


def _tau2_dersimonian_laird(y: FloatArray, v: FloatArray) -> float:
    q, sum_w, sum_w2 = _heterogeneity(y, v)
    k = y.size
    return max(0.0, (q - (k - 1)) / (sum_w - sum_w2 / sum_w))


def _reml_score(y: FloatArray, v: FloatArray, tau2: float) -> tuple[float, float]:
    """REML score ``y'PPy - tr(P)`` and Fisher information ``tr(PP)`` at ``tau2``.

    For the intercept-only model ``P = W - W 1 (1'W1)^-1 1'W`` has closed-form
    traces, so each evaluation costs O(k).
    """
    w = 1.0 / (v + tau2)
    sum_w = float(w.sum())
    sum_w2 = float((w**2).sum())
    mu = float((w * y).sum()) / sum_w
    py = w * (y - mu)
    trace_p = sum_w - sum_w2 / sum_w
    trace_pp = sum_w2 - 2.0 * float((w**3).sum()) / sum_w + (sum_w2 / sum_w) ** 2
    return float((py**2).sum()) - trace_p, trace_pp


def _tau2_reml(y: FloatArray, v: FloatArray, start: float) -> float:
    """REML estimate of tau^2 by Fisher scoring, as metafor's ``rma.uni`` does.

    Steps that would take tau^2 below zero are halved, which is how metafor keeps
    the estimate at or above 0. Fisher scoring can oscillate between two values
    on some data (one precise study far from several imprecise ones); metafor
    then stops with "did not converge", whereas we fall back to bracketing the
    root of the same score equation, which converges to the same estimate
    whenever scoring does.
    """
    tau2 = start
    for _ in range(_REML_MAX_ITERATIONS):
        score, information = _reml_score(y, v, tau2)
        step = score / information
        tolerance = _REML_TOLERANCE * max(1.0, tau2)
        while tau2 + step < 0.0:
            step /= 2.0
            if abs(step) < tolerance:
                step = 0.0
                break
        tau2 += step
        if abs(step) < tolerance:
            return max(0.0, tau2)
    return _tau2_reml_bracketed(y, v)


def _tau2_reml_bracketed(y: FloatArray, v: FloatArray) -> float:
    def score(tau2: float) -> float:
        return _reml_score(y, v, tau2)[0]

    if score(0.0) <= 0.0:
        return 0.0
    # The score is positive at 0 and negative for large tau^2 (it falls like
    # -(k-1)/tau^2), so doubling finds an upper end of a bracket.
    high = max(1.0, float(np.var(y)))
    while score(high) > 0.0:
        high *= 2.0
    root = optimize.brentq(score, 0.0, high, xtol=1e-15, rtol=4 * np.finfo(float).eps)
    return float(root)


def random_effects(
    yi: Sequence[float],
    vi: Sequence[float],
    *,
    method: Literal["REML", "DL"] = "REML",
    test: Literal["z", "knha"] = "z",
    level: float = 0.95,
) -> PooledEstimate:
    """Random-effects meta-analysis, as metafor's ``rma(yi, vi, method=, test=)``.

    Parameters
    ----------
    yi : sequence of float
        Study effect estimates; at least two studies.
    vi : sequence of float
        Their sampling variances, all positive.
    method : {"REML", "DL"}, default="REML"
        Estimator of the between-study variance tau^2: restricted maximum
        likelihood by Fisher scoring, or DerSimonian-Laird. Both are truncated
        at zero.
    test : {"z", "knha"}, default="z"
        ``"z"`` uses the normal distribution. ``"knha"`` is the
        Hartung-Knapp-Sidik-Jonkman method: the standard error is rescaled by
        the weighted residual variance (without metafor's optional ad hoc
        truncation) and intervals, the test and the prediction interval use the
        t distribution with ``k - 1`` degrees of freedom.
    level : float, default=0.95
        Confidence level for the confidence and prediction intervals.

    Returns
    -------
    PooledEstimate

    Examples
    --------
    >>> re = random_effects([-0.9, -1.6, -0.2, 0.0], [0.3, 0.2, 0.05, 0.004])
    >>> re.method, re.k, round(re.tau2, 4), re.pi_low < re.ci_low < re.estimate
    ('REML', 4, 0.4057, True)
    """
    _check_level(level)
    if method not in ("REML", "DL"):
        raise ValueError(f"method must be 'REML' or 'DL'; got method={method!r}")
    if test not in ("z", "knha"):
        raise ValueError(f"test must be 'z' or 'knha'; got test={test!r}")
    y, v = _study_data(yi, vi)
    k = int(y.size)
    if k < 2:
        raise ValueError(f"yi must contain at least 2 studies for random effects; got k={k}")

    q, sum_w_fe, sum_w2_fe = _heterogeneity(y, v)
    tau2_dl = _tau2_dersimonian_laird(y, v)
    tau2 = tau2_dl if method == "DL" else _tau2_reml(y, v, start=tau2_dl)

    w = 1.0 / (v + tau2)
    sum_w = float(w.sum())
    estimate = float((w * y).sum()) / sum_w
    se = math.sqrt(1.0 / sum_w)
    df: int | None = None
    if test == "knha":
        df = k - 1
        residual_variance = float((w * (y - estimate) ** 2).sum()) / df
        se *= math.sqrt(residual_variance)

    alpha_quantile = 0.5 + level / 2.0
    crit = float(
        special.ndtri(alpha_quantile) if df is None else special.stdtrit(df, alpha_quantile)
    )
    statistic = _ratio(estimate, se)
    pi_half = crit * math.sqrt(tau2 + se**2)

    # I^2 and H^2 relative to the "typical" within-study variance, as metafor reports
    # them for any tau^2 estimator (for DL this reduces to (Q - df) / Q).
    typical_v = (k - 1) * sum_w_fe / (sum_w_fe**2 - sum_w2_fe)
    i2 = 100.0 * tau2 / (tau2 + typical_v)
    h2 = (tau2 + typical_v) / typical_v

    return PooledEstimate(
        method=method,
        test=test,
        k=k,
        estimate=estimate,
        se=se,
        ci_low=estimate - crit * se,
        ci_high=estimate + crit * se,
        statistic=statistic,
        p_value=_two_sided(statistic, df=df),
        tau2=tau2,
        tau=math.sqrt(tau2),
        i2=i2,
        h2=h2,
        q=q,
        q_df=k - 1,
        q_p=_q_p_value(q, k - 1),
        pi_low=estimate - pi_half,
        pi_high=estimate + pi_half,
        level=float(level),
        weights=tuple(float(x) for x in 100.0 * w / sum_w),
    )
