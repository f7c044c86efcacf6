"""Registry statistics: t intervals, Wilson intervals, paired change.

Worked examples are computed by hand with the arithmetic shown; scipy's
independent implementations (stats.t.interval, binomtest(...).proportion_ci
with method="wilson", ttest_rel) are a second check.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from prolo.outcomes.stats import MeanCI, mean_ci, paired_change, proportion_ci

T_3_975 = 3.182446305284263  # t quantile, 3 df, 97.5%
Z_975 = 1.959963984540054


def test_mean_ci_by_hand():
    # values 4, 6, 5, 7: mean 5.5; squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5
    # sd = sqrt(5 / 3) = 1.2909944; se = sd / 2 = 0.6454972
    # half-width = t(0.975, 3) * se = 3.1824463 * 0.6454972 = 2.0542603
    ci = mean_ci([4, 6, 5, 7])
    assert (ci.n, ci.mean) == (4, 5.5)
    assert ci.sd == pytest.approx(math.sqrt(5 / 3))
    assert ci.ci_low == pytest.approx(5.5 - T_3_975 * math.sqrt(5 / 3) / 2)
    assert ci.ci_high == pytest.approx(3.4457397 + 4.1085206, abs=1e-6)  # 5.5 + 2.0542603
    low, high = stats.t.interval(0.95, 3, loc=5.5, scale=math.sqrt(5 / 3) / 2)
    assert (ci.ci_low, ci.ci_high) == pytest.approx((low, high))


def test_single_value_has_no_interval_and_no_nan():
    assert mean_ci([3]) == MeanCI(n=1, mean=3.0, sd=None, ci_low=None, ci_high=None, level=0.95)


def test_identical_values_give_a_zero_width_interval():
    ci = mean_ci([2.5, 2.5, 2.5])
    assert (ci.sd, ci.ci_low, ci.ci_high) == (0.0, 2.5, 2.5)
    assert mean_ci([0.0, 0.0]).ci_low == 0.0


def test_extreme_values_stay_finite():
    ci = mean_ci([1e308, 1e308, 1e308])
    assert ci.mean == 1e308 and ci.sd == 0.0
    ci = mean_ci([1.7e308, -1.7e308])
    assert ci.mean == pytest.approx(0.0, abs=1e295)


@pytest.mark.parametrize(
    ("values", "kwargs", "message"),
    [
        ([], {}, "at least one number"),
        ([1.0, math.nan], {}, r"values\[1\]"),
        ([1.0, math.inf], {}, r"values\[1\]"),
        ([1.0, "a"], {}, r"values\[1\]"),
        ("123", {}, "values"),
        ([1.0, 2.0], {"level": 0}, "level"),
    ],
)
def test_mean_ci_errors_name_the_bad_value(values, kwargs, message):
    with pytest.raises(ValueError, match=message):
        mean_ci(values, **kwargs)


def test_wilson_interval_by_hand():
    # 31 of 48: p = 0.6458333; z^2/n = 3.8414588 / 48 = 0.0800304
    # centre = (p + z^2/2n) / (1 + z^2/n) = (0.6458333 + 0.0400152) / 1.0800304 = 0.6350271
    # half = z / (1 + z^2/n) * sqrt(p(1-p)/n + z^2/4n^2)
    #      = 1.8147307 * sqrt(0.0047652 + 0.0004168) = 1.8147307 * 0.0719862 = 0.1306356
    # interval 0.5043915 .. 0.7656627
    ci = proportion_ci(31, 48)
    assert ci.proportion == pytest.approx(31 / 48)
    assert ci.ci_low == pytest.approx(0.5043915, abs=1e-6)
    assert ci.ci_high == pytest.approx(0.7656627, abs=1e-6)
    scipy_ci = stats.binomtest(31, 48).proportion_ci(method="wilson")
    assert (ci.ci_low, ci.ci_high) == pytest.approx((scipy_ci.low, scipy_ci.high))


def test_wilson_interval_at_the_boundaries():
    # 0 of 10: centre = (z^2/20) / (1 + z^2/10) = 0.1920729 / 1.3841459 = 0.1387667 = half
    # so the interval is 0 .. 2 * 0.1387667 = 0.2775334
    ci = proportion_ci(0, 10)
    assert ci.ci_low == 0.0
    assert ci.ci_high == pytest.approx(0.2775334, abs=1e-6)
    ci = proportion_ci(10, 10)
    assert ci.ci_high == 1.0
    assert ci.ci_low == pytest.approx(1 - 0.2775334, abs=1e-6)


@pytest.mark.parametrize(
    ("successes", "n", "message"),
    [
        (1, 0, "n must be at least 1"),
        (11, 10, "successes must be between 0 and n"),
        (-1, 10, "successes"),
        (1.5, 10, "successes must be a whole number"),
        (True, 10, "successes must be a whole number"),
        (1, 10.0, "n must be a whole number"),
    ],
)
def test_proportion_ci_errors_name_the_bad_value(successes, n, message):
    with pytest.raises(ValueError, match=message):
        proportion_ci(successes, n)


def test_paired_change_by_hand():
    # changes: 4-7 = -3, 5-6 = -1, 5-8 = -3 (the 4th pair has no baseline and is dropped)
    # mean -7/3 = -2.3333333; deviations -2/3, 4/3, -2/3 -> squares 4/9 + 16/9 + 4/9 = 24/9
    # sd = sqrt((24/9) / 2) = sqrt(4/3) = 1.1547005; SRM = -2.3333333 / 1.1547005 = -2.0207259
    # t = -2.3333333 / (1.1547005 / sqrt 3) = -3.5, df 2
    pc = paired_change([7, 6, 8, None], [4, 5, 5, 3])
    assert (pc.n, pc.n_excluded) == (3, 1)
    assert pc.baseline_mean == pytest.approx(7.0)
    assert pc.follow_up_mean == pytest.approx(14 / 3)
    assert pc.change.mean == pytest.approx(-7 / 3)
    assert pc.change.sd == pytest.approx(math.sqrt(4 / 3))
    assert pc.standardized_response_mean == pytest.approx(-2.0207259, abs=1e-6)
    assert pc.p_value == pytest.approx(2 * stats.t.sf(3.5, 2))
    assert pc.p_value == pytest.approx(stats.ttest_rel([4, 5, 5], [7, 6, 8]).pvalue)


def test_paired_change_edge_cases():
    single = paired_change([5], [3])
    assert single.change.mean == -2 and single.p_value is None
    assert single.standardized_response_mean is None and single.change.ci_low is None
    same = paired_change([5, 6, 7], [4, 5, 6])
    assert (same.change.sd, same.p_value, same.standardized_response_mean) == (0.0, 0.0, None)
    none = paired_change([5, 6], [5, 6])
    assert none.p_value == 1.0
    with pytest.raises(ValueError, match="no complete pair"):
        paired_change([None, 1], [2, None])
    with pytest.raises(ValueError, match="same length"):
        paired_change([1, 2], [1])
    with pytest.raises(ValueError, match=r"follow_up must be finite; got follow_up\[0\]"):
        paired_change([1], [math.nan])
    with pytest.raises(ValueError, match="overflows"):
        paired_change([-1.7e308], [1.7e308])
    with pytest.raises(ValueError, match="not strings"):
        paired_change("12", "34")


# --------------------------------------------------------------------------- #
# invariants

bounded = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)
finite = st.floats(allow_nan=False, allow_infinity=False)
levels = st.floats(min_value=0.5, max_value=0.999)


@settings(max_examples=100, deadline=None)
@given(st.lists(bounded, min_size=2, max_size=50), levels)
def test_interval_contains_the_mean(values, level):
    ci = mean_ci(values, level=level)
    assert ci.ci_low is not None and ci.ci_high is not None
    assert ci.ci_low <= ci.mean <= ci.ci_high
    assert min(values) <= ci.mean <= max(values)


@settings(max_examples=100, deadline=None)
@given(st.lists(bounded, min_size=2, max_size=30))
def test_width_shrinks_with_n(values):
    # Repeating the same sample doubles n with the same mean and a smaller sd
    # (SS doubles, n - 1 more than doubles), so the interval must narrow.
    assume(max(values) - min(values) > 1e-3 * max(1.0, max(abs(v) for v in values)))
    once = mean_ci(values)
    twice = mean_ci(values * 2)
    assert (twice.ci_high - twice.ci_low) < (once.ci_high - once.ci_low)


@settings(max_examples=100, deadline=None)
@given(st.lists(finite, min_size=1, max_size=40), levels)
def test_mean_ci_never_returns_nan_for_finite_input(values, level):
    ci = mean_ci(values, level=level)
    for value in (ci.mean, ci.sd, ci.ci_low, ci.ci_high):
        assert value is None or not math.isnan(value)
    assert math.isfinite(ci.mean)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=1, max_value=5000).flatmap(
        lambda n: st.tuples(st.integers(0, n), st.just(n))
    ),
    levels,
)
def test_wilson_interval_is_inside_the_unit_interval_and_contains_p(data, level):
    successes, n = data
    ci = proportion_ci(successes, n, level=level)
    assert 0.0 <= ci.ci_low <= ci.proportion <= ci.ci_high <= 1.0
    assert not any(math.isnan(v) for v in (ci.ci_low, ci.ci_high))


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=200), st.floats(min_value=0.05, max_value=0.95))
def test_wilson_width_shrinks_with_n(n, p):
    successes = round(p * n)
    small = proportion_ci(successes, n)
    large = proportion_ci(successes * 4, n * 4)
    assert large.ci_high - large.ci_low < small.ci_high - small.ci_low


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.one_of(st.none(), bounded), st.one_of(st.none(), bounded)),
        min_size=1,
        max_size=30,
    )
)
def test_paired_change_never_returns_nan(pairs):
    baseline = [b for b, _ in pairs]
    follow_up = [f for _, f in pairs]
    assume(any(b is not None and f is not None for b, f in pairs))
    pc = paired_change(baseline, follow_up)
    assert pc.n + pc.n_excluded == len(pairs)
    for value in (pc.p_value, pc.standardized_response_mean, pc.change.ci_low, pc.change.sd):
        assert value is None or not math.isnan(value)
