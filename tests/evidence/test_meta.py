"""Meta-analysis numerics, pinned to metafor's published results for dat.bcg.

Sources read for the reference values (metafor prints 4 decimals; every check
below allows half a unit in the last printed decimal):

[DATA] The 13 BCG trial counts (tpos, tneg, cpos, cneg) and metafor's log risk
    ratios yi / variances vi, plus the REML model and predict(res, transf=exp):
    https://wviechtb.github.io/metafor/reference/dat.bcg.html
    (metafor 2.5-15 pkgdown page, "Examples" section; stored in the metafor
    repository as docs/reference/dat.bcg.html).
[REML] The same REML output is printed on the rma.uni help page, "Examples":
    https://wviechtb.github.io/metafor/reference/rma.uni.html
[DL] rma(yi, vi, method="DL") and method="FE" checked by metafor's own test suite
    against Stata's metan:
    https://github.com/wviechtb/metafor/blob/master/tests/testthat/test_misc_metan_vs_rma.uni_with_dat.bcg.r
[KNHA] rma(yi, vi, test="knha") and predict(res, transf=exp, digits=2), in
    metafor's README, "Example" section:
    https://github.com/wviechtb/metafor/blob/master/README.md

Not printed in any source found: the DL standard error (checked as estimate / z,
both printed in [DL]) and the DL prediction interval (only checked for internal
consistency); the knha prediction interval is printed to 2 decimals only.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prolo.evidence.meta import (
    EffectSize,
    fixed_effect,
    hedges_g,
    log_risk_ratio,
    log_risk_ratios,
    mean_difference,
    random_effects,
)

# [DATA] trial, author, year, tpos, tneg, cpos, cneg
BCG = [
    (1, "Aronson", 1948, 4, 119, 11, 128),
    (2, "Ferguson & Simes", 1949, 6, 300, 29, 274),
    (3, "Rosenthal et al", 1960, 3, 228, 11, 209),
    (4, "Hart & Sutherland", 1977, 62, 13536, 248, 12619),
    (5, "Frimodt-Moller et al", 1973, 33, 5036, 47, 5761),
    (6, "Stein & Aronson", 1953, 180, 1361, 372, 1079),
    (7, "Vandiviere et al", 1973, 8, 2537, 10, 619),
    (8, "TPT Madras", 1980, 505, 87886, 499, 87892),
    (9, "Coetzee & Berjak", 1968, 29, 7470, 45, 7232),
    (10, "Rosenthal et al", 1961, 17, 1699, 65, 1600),
    (11, "Comstock et al", 1974, 186, 50448, 141, 27197),
    (12, "Comstock & Webster", 1969, 5, 2493, 3, 2338),
    (13, "Comstock et al", 1976, 27, 16886, 29, 17825),
]
# [DATA] escalc(measure="RR", ai=tpos, bi=tneg, ci=cpos, di=cneg) as printed
BCG_YI = [
    -0.8893, -1.5854, -1.3481, -1.4416, -0.2175, -0.7861, -1.6209,
    0.0120, -0.4694, -1.3713, -0.3394, 0.4459, -0.0173,
]  # fmt: skip
BCG_VI = [
    0.3256, 0.1946, 0.4154, 0.0200, 0.0512, 0.0069, 0.2230,
    0.0040, 0.0564, 0.0730, 0.0124, 0.5325, 0.0714,
]  # fmt: skip


def printed(value: float, reference: float, decimals: int = 4) -> bool:
    """True when ``value`` rounds to what the source printed."""
    return abs(value - reference) <= 0.5 * 10.0**-decimals + 1e-12


@pytest.fixture(scope="module")
def bcg():
    return log_risk_ratios(
        events1=[t[3] for t in BCG],
        n1=[t[3] + t[4] for t in BCG],
        events2=[t[5] for t in BCG],
        n2=[t[5] + t[6] for t in BCG],
    )


def test_bcg_log_risk_ratios_match_escalc(bcg):
    assert all(printed(y, ref) for y, ref in zip(bcg.yi, BCG_YI, strict=True))
    assert all(printed(v, ref) for v, ref in zip(bcg.vi, BCG_VI, strict=True))


def test_bcg_reml_matches_metafor(bcg):
    res = random_effects(bcg.yi, bcg.vi, method="REML")
    # [DATA]/[REML]: tau^2 0.3132, tau 0.5597, I^2 92.22%, H^2 12.86, Q(df=12) 152.2330,
    # estimate -0.7145, se 0.1798, zval -3.9744, ci -1.0669 .. -0.3622
    assert res.method == "REML" and res.test == "z" and res.k == 13
    assert printed(res.tau2, 0.3132)
    assert printed(res.tau, 0.5597)
    assert printed(res.i2, 92.22, decimals=2)
    assert printed(res.h2, 12.86, decimals=2)
    assert printed(res.q, 152.2330) and res.q_df == 12
    assert res.q_p < 0.0001
    assert printed(res.estimate, -0.7145)
    assert printed(res.se, 0.1798)
    assert printed(res.statistic, -3.9744)
    assert res.p_value < 0.0001
    assert printed(res.ci_low, -1.0669)
    assert printed(res.ci_high, -0.3622)
    # [DATA] predict(res, transf=exp): pred 0.4894, ci 0.3441 .. 0.6962, cr 0.1546 .. 1.5490
    assert printed(math.exp(res.estimate), 0.4894)
    assert printed(math.exp(res.ci_low), 0.3441)
    assert printed(math.exp(res.ci_high), 0.6962)
    assert printed(math.exp(res.pi_low), 0.1546)
    assert printed(math.exp(res.pi_high), 1.5490)


def test_bcg_dersimonian_laird_matches_metafor(bcg):
    res = random_effects(bcg.yi, bcg.vi, method="DL")
    # [DL]: beta -0.7141, ci -1.0644 .. -0.3638, zval -3.9952, tau2 0.3088, I2 92.1173
    assert printed(res.estimate, -0.7141)
    assert printed(res.ci_low, -1.0644)
    assert printed(res.ci_high, -0.3638)
    assert printed(res.statistic, -3.9952)
    assert printed(res.tau2, 0.3088)
    assert printed(res.i2, 92.1173)
    # [DL] QE 152.2330 (printed for the FE fit; Q does not depend on tau^2)
    assert printed(res.q, 152.2330)
    # se is not printed; -0.7141 / -3.9952 = 0.17874, and rounding of the two printed
    # values moves that by at most 0.00002.
    assert abs(res.se - 0.7141 / 3.9952) < 1e-4
    # [DL] predict(res, transf=exp): 0.4896, ci 0.3449 .. 0.6950
    assert printed(math.exp(res.estimate), 0.4896)
    assert printed(math.exp(res.ci_low), 0.3449)
    assert printed(math.exp(res.ci_high), 0.6950)
    # No printed DL prediction interval was found; check its definition instead.
    half = 1.959963984540054 * math.sqrt(res.tau2 + res.se**2)
    assert res.pi_low == pytest.approx(res.estimate - half)
    assert res.pi_high == pytest.approx(res.estimate + half)


def test_bcg_knapp_hartung_matches_metafor(bcg):
    res = random_effects(bcg.yi, bcg.vi, method="REML", test="knha")
    # [KNHA]: tau^2 0.3132, I^2 92.22%, Q 152.2330,
    # estimate -0.7145, se 0.1808, tval -3.9522, df 12, pval 0.0019, ci -1.1084 .. -0.3206
    assert res.test == "knha"
    assert printed(res.tau2, 0.3132)
    assert printed(res.i2, 92.22, decimals=2)
    assert printed(res.q, 152.2330)
    assert printed(res.estimate, -0.7145)
    assert printed(res.se, 0.1808)
    assert printed(res.statistic, -3.9522)
    assert printed(res.p_value, 0.0019)
    assert printed(res.ci_low, -1.1084)
    assert printed(res.ci_high, -0.3206)
    # [KNHA] predict(res, transf=exp, digits=2): 0.49, ci 0.33 .. 0.73, pi 0.14 .. 1.76
    assert printed(math.exp(res.estimate), 0.49, decimals=2)
    assert printed(math.exp(res.ci_low), 0.33, decimals=2)
    assert printed(math.exp(res.ci_high), 0.73, decimals=2)
    assert printed(math.exp(res.pi_low), 0.14, decimals=2)
    assert printed(math.exp(res.pi_high), 1.76, decimals=2)


def test_bcg_fixed_effect_matches_metafor(bcg):
    res = fixed_effect(bcg.yi, bcg.vi)
    # [DL] method="FE": beta -0.4303, ci -0.5097 .. -0.3509, zval -10.6247, QE 152.2330;
    # predict(res, transf=exp): 0.6503, ci 0.6007 .. 0.7040
    assert res.method == "FE" and res.tau2 == 0.0 and res.tau == 0.0
    assert printed(res.estimate, -0.4303)
    assert printed(res.ci_low, -0.5097)
    assert printed(res.ci_high, -0.3509)
    assert printed(res.statistic, -10.6247)
    assert printed(res.q, 152.2330)
    assert printed(math.exp(res.estimate), 0.6503)
    assert printed(math.exp(res.ci_low), 0.6007)
    assert printed(math.exp(res.ci_high), 0.7040)
    assert (res.pi_low, res.pi_high) == (res.ci_low, res.ci_high)
    # I^2 = (Q - df) / Q = (152.2330 - 12) / 152.2330 = 92.117%, H^2 = Q / df = 12.686
    assert res.i2 == pytest.approx(100 * (res.q - 12) / res.q)
    assert res.h2 == pytest.approx(res.q / 12)


# --------------------------------------------------------------------------- #
# effect sizes, checked by hand


def test_log_risk_ratio_adds_correction_only_to_tables_with_a_zero_cell():
    # cells 0/10 vs 5/10 -> 0.5, 10.5, 5.5, 5.5 (group totals 11 and 11)
    # yi = log(0.5/11) - log(5.5/11) = log(1/11) = -2.397895
    # vi = 1/0.5 - 1/11 + 1/5.5 - 1/11 = 2 - 2/11 + 2/11 = 2.0
    es = log_risk_ratio(events1=0, n1=10, events2=5, n2=10)
    assert es.yi == pytest.approx(math.log(1 / 11))
    assert es.vi == pytest.approx(2.0)
    # No zero cell: 2/10 vs 5/10 unchanged: yi = log(0.4), vi = 1/2 - 1/10 + 1/5 - 1/10 = 0.5
    es = log_risk_ratio(events1=2, n1=10, events2=5, n2=10)
    assert es.yi == pytest.approx(math.log(0.4))
    assert es.vi == pytest.approx(0.5)
    # All events in one arm is a zero cell too (non-events): 10/10 vs 5/10
    # -> 10.5, 0.5, 5.5, 5.5: yi = log(10.5/11) - log(5.5/11) = log(10.5/5.5)
    es = log_risk_ratio(events1=10, n1=10, events2=5, n2=10)
    assert es.yi == pytest.approx(math.log(10.5 / 5.5))
    # Double zero: kept and corrected: 0.5, 10.5, 0.5, 20.5 -> log((0.5/11) / (0.5/21)) = log(21/11)
    assert log_risk_ratio(events1=0, n1=10, events2=0, n2=20).yi == pytest.approx(math.log(21 / 11))


def test_hedges_g_uses_the_exact_small_sample_correction():
    # d = (10 - 8) / 2 = 1; m = 18; c(18) = Gamma(9) / (3 Gamma(8.5))
    #   = 40320 / (3 * 14034.40729) = 0.9576464
    # vi = 1/10 + 1/10 + g^2 / 40 = 0.2 + 0.0229272 = 0.2229272
    es = hedges_g(m1=10.0, sd1=2.0, n1=10, m2=8.0, sd2=2.0, n2=10)
    correction = math.gamma(9) / (3 * math.gamma(8.5))
    assert es.yi == pytest.approx(correction)
    assert es.vi == pytest.approx(0.2 + correction**2 / 40)
    # Pooled SD with unequal groups: sqrt((9*4 + 19*9) / 28) = sqrt(207/28)
    es = hedges_g(m1=5.0, sd1=2.0, n1=10, m2=3.0, sd2=3.0, n2=20)
    pooled = math.sqrt(207 / 28)
    c28 = math.exp(math.lgamma(14) - 0.5 * math.log(14) - math.lgamma(13.5))
    assert es.yi == pytest.approx(c28 * 2.0 / pooled)


def test_hedges_g_is_stable_for_large_trials():
    es = hedges_g(m1=1.0, sd1=1.0, n1=50_000, m2=0.0, sd2=1.0, n2=50_000)
    assert es.yi == pytest.approx(1.0, abs=1e-4)
    assert math.isfinite(es.vi)


def test_mean_difference_does_not_assume_equal_variances():
    # vi = 2^2/20 + 3^2/25 = 0.2 + 0.36
    assert mean_difference(m1=2.0, sd1=2.0, n1=20, m2=4.0, sd2=3.0, n2=25) == EffectSize(
        yi=-2.0, vi=pytest.approx(0.56)
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: log_risk_ratio(events1=11, n1=10, events2=1, n2=10), "events1"),
        (lambda: log_risk_ratio(events1=1, n1=10, events2=-1, n2=10), "events2"),
        (lambda: log_risk_ratio(events1=1, n1=0, events2=1, n2=10), "n1"),
        (lambda: log_risk_ratio(events1=1.5, n1=10, events2=1, n2=10), "events1"),
        (lambda: log_risk_ratio(events1=1, n1=10, events2=1, n2=10, correction=0), "correction"),
        (lambda: hedges_g(m1=1, sd1=0, n1=5, m2=0, sd2=1, n2=5), "sd1"),
        (lambda: hedges_g(m1=1, sd1=1, n1=1, m2=0, sd2=1, n2=1), "n1 \\+ n2"),
        (lambda: hedges_g(m1=math.nan, sd1=1, n1=5, m2=0, sd2=1, n2=5), "m1"),
        (lambda: mean_difference(m1=1, sd1=1, n1=5, m2=0, sd2=-1, n2=5), "sd2"),
        (lambda: mean_difference(m1=1, sd1=1, n1=5, m2=0, sd2=1, n2=0), "n2"),
        (
            lambda: log_risk_ratios(events1=[1, 2], n1=[10], events2=[1, 1], n2=[10, 10]),
            "same length",
        ),
        (
            lambda: log_risk_ratios(events1=[1, 20], n1=[10, 10], events2=[1, 1], n2=[10, 10]),
            "study 1: events1",
        ),
    ],
)
def test_effect_size_errors_name_the_bad_value(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --------------------------------------------------------------------------- #
# pooling: errors and edge cases


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: random_effects([0.1], [0.1]), "at least 2 studies"),
        (lambda: random_effects([0.1, 0.2], [0.1]), "same length"),
        (lambda: random_effects([0.1, 0.2], [0.1, 0.0]), r"vi must be positive; got vi\[1\]"),
        (lambda: random_effects([0.1, 0.2], [0.1, -1.0]), "vi"),
        (lambda: random_effects([0.1, math.inf], [0.1, 0.1]), r"yi must be finite; got yi\[1\]"),
        (lambda: random_effects([0.1, 0.2], [0.1, 0.1], method="PM"), "method"),
        (lambda: random_effects([0.1, 0.2], [0.1, 0.1], test="t"), "test"),
        (lambda: random_effects([0.1, 0.2], [0.1, 0.1], level=95), "level"),
        (lambda: fixed_effect([], []), "at least one study"),
        (lambda: fixed_effect([[0.1]], [[0.1]]), "one-dimensional"),
        (lambda: fixed_effect("ab", [0.1, 0.1]), "yi"),
        (lambda: fixed_effect([0.1, "x"], [0.1, 0.1]), "yi"),
        (lambda: fixed_effect([0.1], [0.1], level=0.0), "level"),
    ],
)
def test_pooling_errors_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_fixed_effect_accepts_a_single_study():
    res = fixed_effect([0.3], [0.04])
    assert (res.k, res.estimate, res.q, res.q_df, res.q_p) == (1, 0.3, 0.0, 0, 1.0)
    assert res.se == pytest.approx(0.2)
    assert res.i2 == 0.0 and res.h2 == 1.0
    assert res.weights == (100.0,)


def test_identical_studies_give_zero_heterogeneity_and_no_nan():
    for test in ("z", "knha"):
        res = random_effects([0.2, 0.2, 0.2], [0.1, 0.2, 0.3], test=test)
        assert res.tau2 == 0.0 and res.i2 == 0.0 and res.q == pytest.approx(0.0, abs=1e-20)
        values = [v for v in vars(res).values() if isinstance(v, float)]
        assert not any(math.isnan(v) for v in values)
    # Knapp-Hartung rescales by a zero residual variance: a degenerate but defined result.
    res = random_effects([0.0, 0.0], [0.1, 0.2], test="knha")
    assert (res.se, res.statistic, res.p_value) == (0.0, 0.0, 1.0)
    res = random_effects([0.5, 0.5], [0.25, 0.25], test="knha")
    assert (res.se, res.statistic, res.p_value) == (0.0, math.inf, 0.0)


def test_reml_stays_at_zero_when_studies_agree_more_than_chance():
    # Q < df: the REML score is negative at tau^2 = 0, so the estimate is truncated at 0.
    res = random_effects([0.10, 0.12, 0.11, 0.09], [0.04, 0.05, 0.03, 0.06])
    assert res.tau2 == 0.0
    fe = fixed_effect([0.10, 0.12, 0.11, 0.09], [0.04, 0.05, 0.03, 0.06])
    assert res.estimate == pytest.approx(fe.estimate)
    assert (res.pi_low, res.pi_high) == pytest.approx((res.ci_low, res.ci_high))


def test_reml_converges_where_fisher_scoring_oscillates():
    # Scoring from the DerSimonian-Laird start (0 here) swings between ~0.01 and ~0.17 for
    # hundreds of steps; the bracketed fallback must land on the REML root.
    yi, vi = [0.0, 0.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.125, 1.0]
    res = random_effects(yi, vi)
    w = 1.0 / (np.asarray(vi) + res.tau2)
    py = w * (np.asarray(yi) - res.estimate)
    assert res.tau2 > 0.0
    assert float((py**2).sum()) == pytest.approx(w.sum() - (w**2).sum() / w.sum())


def test_level_changes_interval_width():
    narrow = random_effects([0.1, 0.5, -0.2, 0.3], [0.02, 0.03, 0.05, 0.01], level=0.80)
    wide = random_effects([0.1, 0.5, -0.2, 0.3], [0.02, 0.03, 0.05, 0.01], level=0.99)
    assert wide.ci_high - wide.ci_low > narrow.ci_high - narrow.ci_low
    assert narrow.level == 0.80


# --------------------------------------------------------------------------- #
# invariants

study_sets = st.integers(min_value=2, max_value=12).flatmap(
    lambda k: st.tuples(
        st.lists(st.floats(min_value=-5, max_value=5, allow_nan=False), min_size=k, max_size=k),
        st.lists(st.floats(min_value=1e-3, max_value=2.0), min_size=k, max_size=k),
    )
)


@settings(max_examples=100, deadline=None)
@given(study_sets, st.sampled_from(["REML", "DL"]), st.sampled_from(["z", "knha"]))
def test_pooled_estimate_invariants(data, method, test):
    yi, vi = data
    res = random_effects(yi, vi, method=method, test=test)
    assert res.tau2 >= 0.0 and res.tau == pytest.approx(math.sqrt(res.tau2))
    assert min(yi) - 1e-9 <= res.estimate <= max(yi) + 1e-9
    assert res.ci_low <= res.estimate <= res.ci_high
    assert res.pi_low <= res.ci_low + 1e-12 and res.ci_high <= res.pi_high + 1e-12
    assert 0.0 <= res.i2 < 100.0 and res.h2 >= 1.0
    assert 0.0 <= res.p_value <= 1.0 and 0.0 <= res.q_p <= 1.0
    assert sum(res.weights) == pytest.approx(100.0)


@settings(max_examples=100, deadline=None)
@given(study_sets, st.floats(min_value=-3, max_value=3), st.randoms(use_true_random=False))
def test_pooling_is_shift_equivariant_and_order_free(data, shift, rng):
    yi, vi = data
    base = random_effects(yi, vi)
    shifted = random_effects([y + shift for y in yi], vi)
    assert shifted.estimate == pytest.approx(base.estimate + shift, abs=1e-6)
    assert shifted.tau2 == pytest.approx(base.tau2, abs=1e-6)
    order = list(range(len(yi)))
    rng.shuffle(order)
    shuffled = random_effects([yi[i] for i in order], [vi[i] for i in order])
    assert shuffled.estimate == pytest.approx(base.estimate, abs=1e-9)
    assert shuffled.tau2 == pytest.approx(base.tau2, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(study_sets)
def test_reml_solves_the_score_equation(data):
    # At an interior REML optimum, y'PPy = tr(P) (Viechtbauer 2005, eq. 12).
    yi, vi = data
    res = random_effects(yi, vi)
    y, v = np.asarray(yi), np.asarray(vi)
    w = 1.0 / (v + res.tau2)
    py = w * (y - res.estimate)
    trace_p = w.sum() - (w**2).sum() / w.sum()
    score = float((py**2).sum() - trace_p)
    if res.tau2 > 1e-8:
        assert score == pytest.approx(0.0, abs=1e-6 * max(1.0, trace_p))
    else:
        assert score <= 1e-6 * max(1.0, trace_p)


@settings(max_examples=100, deadline=None)
@given(study_sets)
def test_dersimonian_laird_matches_its_closed_form(data):
    yi, vi = data
    res = random_effects(yi, vi, method="DL")
    w = 1.0 / np.asarray(vi)
    expected = max(0.0, (res.q - (len(yi) - 1)) / (w.sum() - (w**2).sum() / w.sum()))
    assert res.tau2 == pytest.approx(expected, abs=1e-12)
    # For DL, I^2 reduces to (Q - df) / Q, truncated at 0
    if res.q > 0.0:
        assert res.i2 == pytest.approx(max(0.0, 100 * (res.q - res.q_df) / res.q), abs=1e-7)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=0, max_value=500),
    st.integers(min_value=1, max_value=500),
    st.integers(min_value=0, max_value=500),
    st.integers(min_value=1, max_value=500),
)
def test_log_risk_ratio_is_always_finite_and_antisymmetric(a, n1, c, n2):
    a, c = min(a, n1), min(c, n2)
    forward = log_risk_ratio(events1=a, n1=n1, events2=c, n2=n2)
    backward = log_risk_ratio(events1=c, n1=n2, events2=a, n2=n1)
    assert math.isfinite(forward.yi) and forward.vi > 0.0
    assert forward.yi == pytest.approx(-backward.yi, abs=1e-12)
    assert forward.vi == pytest.approx(backward.vi)
