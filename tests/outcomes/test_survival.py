"""Kaplan-Meier estimates checked against R's survival package and by hand.

Reference output: R's own regression test for the aml data,
``summary(survfit(Surv(aml$time, aml$status) ~ aml$x))``, stored in the survival
package repository as tests/doaml.Rout.save:
https://github.com/therneau/survival/blob/master/tests/doaml.Rout.save
That printout uses survfit's default conf.type="log". We check the estimate,
the number at risk, the Greenwood standard error and the "log" band against
it, then check the "log-log" band (our default) by hand below, since no printed
log-log output for a documented data set was found.

The aml follow-up times below reproduce every n.risk / n.event line of that
printout. The Kaplan-Meier estimate depends only on the order of event and
censoring times, and the printed n.risk column pins down where each censored
observation falls between event times (e.g. Maintained: n.risk drops from 10 at
week 13 to 8 at week 18 after one event, so one subject was censored in
[13, 18)).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prolo.outcomes.survival import kaplan_meier, km_svg

# aml, x = "Maintained": weeks, status (1 = relapse)
MAINTAINED = ([9, 13, 13, 18, 23, 28, 31, 34, 45, 48, 161], [1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 0])
# aml, x = "Nonmaintained"
NONMAINTAINED = ([5, 5, 8, 8, 12, 16, 23, 27, 30, 33, 43, 45], [1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1])


def printed(value, reference, decimals):
    return abs(value - reference) <= 0.5 * 10.0**-decimals + 1e-12


def test_maintained_group_matches_survfit():
    km = kaplan_meier(*MAINTAINED, conf_type="log")
    # time n.risk n.event survival std.err lower 95% CI upper 95% CI
    expected = [
        (9, 11, 1, 0.909, 0.0867, 0.7541, 1.000),
        (13, 10, 1, 0.818, 0.1163, 0.6192, 1.000),
        (18, 8, 1, 0.716, 0.1397, 0.4884, 1.000),
        (23, 7, 1, 0.614, 0.1526, 0.3769, 0.999),
        (31, 5, 1, 0.491, 0.1642, 0.2549, 0.946),
        (34, 4, 1, 0.368, 0.1627, 0.1549, 0.875),
        (48, 2, 1, 0.184, 0.1535, 0.0359, 0.944),
    ]
    assert len(km.time) == len(expected)
    for i, (t, risk, events, surv, se, low, high) in enumerate(expected):
        assert (km.time[i], km.n_risk[i], km.n_event[i]) == (t, risk, events)
        assert printed(km.survival[i], surv, 3)
        assert printed(km.std_err[i], se, 4)
        assert printed(km.ci_low[i], low, 4)
        assert printed(km.ci_high[i], high, 3)


def test_nonmaintained_group_matches_survfit_including_the_drop_to_zero():
    km = kaplan_meier(*NONMAINTAINED, conf_type="log")
    expected = [
        (5, 12, 2, 0.8333, 0.1076, 0.6470, 1.000),
        (8, 10, 2, 0.6667, 0.1361, 0.4468, 0.995),
        (12, 8, 1, 0.5833, 0.1423, 0.3616, 0.941),
        (23, 6, 1, 0.4861, 0.1481, 0.2675, 0.883),
        (27, 5, 1, 0.3889, 0.1470, 0.1854, 0.816),
        (30, 4, 1, 0.2917, 0.1387, 0.1148, 0.741),
        (33, 3, 1, 0.1944, 0.1219, 0.0569, 0.664),
        (43, 2, 1, 0.0972, 0.0919, 0.0153, 0.620),
    ]
    for i, (t, risk, events, surv, se, low, high) in enumerate(expected):
        assert (km.time[i], km.n_risk[i], km.n_event[i]) == (t, risk, events)
        assert printed(km.survival[i], surv, 4)
        assert printed(km.std_err[i], se, 4)
        assert printed(km.ci_low[i], low, 4)
        assert printed(km.ci_high[i], high, 3)
    # 45  1  1  0.0000  NaN  NA  NA  -> None, never NaN
    assert (km.time[-1], km.n_risk[-1], km.survival[-1]) == (45, 1, 0.0)
    assert (km.std_err[-1], km.ci_low[-1], km.ci_high[-1]) == (None, None, None)


def test_log_log_band_by_hand():
    km = kaplan_meier(*MAINTAINED)  # conf_type="log-log" is the default
    assert km.conf_type == "log-log"
    # Week 9: 11 at risk, 1 event.
    #   S = 10/11 = 0.909091; Greenwood var(H) = 1/(11*10) = 0.0090909, se(H) = 0.0953463
    #   log S = -0.0953102; centre c = log(-log S) = -2.3506187
    #   shift = z se(H) / log S = 1.959964 * 0.0953463 / -0.0953102 = -1.9607059
    #   lower = exp(-exp(c - shift)) = exp(-exp(-0.3899127)) = exp(-0.6771160) = 0.5080802
    #   upper = exp(-exp(c + shift)) = exp(-exp(-4.3113246)) = exp(-0.0134158) = 0.9866738
    assert km.ci_low[0] == pytest.approx(0.5080802, abs=1e-7)
    assert km.ci_high[0] == pytest.approx(0.9866738, abs=1e-7)
    # Week 31 (5th event): S = 10/11 * 9/10 * 7/8 * 6/7 * 4/5 = 0.4909091
    #   var(H) = 1/110 + 1/90 + 1/56 + 1/42 + 1/20 = 0.1118687, se(H) = 0.3344678
    #   log S = -0.7114963; c = log(0.7114963) = -0.3403850
    #   shift = 1.959964 * 0.3344678 / -0.7114963 = -0.9213607
    #   lower = exp(-exp(-0.3403850 + 0.9213607)) = exp(-exp(0.5809757)) = 0.1673309
    #   upper = exp(-exp(-0.3403850 - 0.9213607)) = exp(-exp(-1.2617457)) = 0.7533998
    #   Greenwood se(S) = S * se(H) = 0.4909091 * 0.3344678 = 0.1641933 (R prints 0.1642)
    assert km.survival[4] == pytest.approx(0.4909091, abs=1e-7)
    assert km.ci_low[4] == pytest.approx(0.1673309, abs=1e-7)
    assert km.ci_high[4] == pytest.approx(0.7533998, abs=1e-7)
    assert km.std_err[4] == pytest.approx(0.1641933, abs=1e-7)


def test_plain_band_is_clipped_to_the_unit_interval():
    km = kaplan_meier(*MAINTAINED, conf_type="plain")
    # Week 9: 0.909091 +- 1.959964 * 0.0866784 -> 0.739204 .. 1.078978, clipped to 1
    assert km.ci_low[0] == pytest.approx(10 / 11 - 1.959963984540054 * km.std_err[0])
    assert km.ci_high[0] == 1.0


def test_survival_at_is_a_right_continuous_step_function():
    km = kaplan_meier(*MAINTAINED)
    assert km.survival_at(0) == 1.0
    assert km.survival_at(8.99) == 1.0
    assert km.survival_at(9) == km.survival[0]
    assert km.survival_at(12.5) == km.survival[0]
    assert km.survival_at(48) == km.survival[-1]
    assert km.survival_at(161) == km.survival[-1]
    assert km.survival_at(161.5) is None  # beyond follow-up the data say nothing
    assert km.interval_at(5) == (1.0, 1.0)
    assert km.interval_at(30) == (km.ci_low[3], km.ci_high[3])
    assert km.interval_at(200) == (None, None)
    assert km.n_at_risk(0) == 11
    assert km.n_at_risk(13) == 10  # the subject censored at 13 is still at risk at 13
    assert km.n_at_risk(13.5) == 8
    assert km.n_at_risk(200) == 0


def test_censoring_at_an_event_time_counts_as_at_risk():
    # Events before censorings at tied times, as survfit does.
    km = kaplan_meier([3, 3, 3, 4], [1, 0, 0, 1])
    assert km.n_risk == (4, 1)
    assert km.survival == pytest.approx((0.75, 0.0))


def test_all_censored_gives_an_empty_curve():
    km = kaplan_meier([1, 2, 3], [0, 0, False])
    assert km.time == () and km.survival_at(2.5) == 1.0
    assert km.censor_times == (1.0, 2.0, 3.0)


def test_level_widens_the_band():
    narrow = kaplan_meier(*MAINTAINED, level=0.80)
    wide = kaplan_meier(*MAINTAINED, level=0.99)
    assert wide.ci_low[3] < narrow.ci_low[3] < narrow.ci_high[3] < wide.ci_high[3]


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (([1, 2], [1]), {}, "same length"),
        (([], []), {}, "at least one subject"),
        (([1, -2], [1, 1]), {}, r"times\[1\]"),
        (([1, math.nan], [1, 1]), {}, r"times\[1\]"),
        (([1, "x"], [1, 1]), {}, r"times\[1\]"),
        (([1, 2], [1, 2]), {}, r"events\[1\]"),
        (([1, 2], [1, 0.5]), {}, r"events\[1\]"),
        (("12", "10"), {}, "not strings"),
        (([1, 2], [1, 0]), {"level": 1.0}, "level"),
        (([1, 2], [1, 0]), {"conf_type": "arcsin"}, "conf_type"),
    ],
)
def test_errors_name_the_bad_value(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        kaplan_meier(*args, **kwargs)


def test_lookups_reject_non_finite_times():
    km = kaplan_meier(*MAINTAINED)
    for lookup in (km.survival_at, km.interval_at, km.n_at_risk):
        with pytest.raises(ValueError, match="t must be finite"):
            lookup(math.inf)


follow_up = st.lists(
    st.tuples(st.integers(min_value=0, max_value=60), st.booleans()), min_size=1, max_size=60
)


@settings(max_examples=100, deadline=None)
@given(follow_up, st.sampled_from(["log-log", "log", "plain"]))
def test_curve_invariants(data, conf_type):
    times, events = zip(*data, strict=True)
    km = kaplan_meier(list(times), list(events), conf_type=conf_type)
    assert sum(km.n_event) == sum(events)
    assert list(km.time) == sorted(set(km.time))
    assert all(a >= b for a, b in zip(km.survival, km.survival[1:], strict=False))
    assert all(a > b for a, b in zip(km.n_risk, km.n_risk[1:], strict=False))
    for s, se, low, high in zip(km.survival, km.std_err, km.ci_low, km.ci_high, strict=True):
        assert 0.0 <= s < 1.0
        if s == 0.0:
            assert (se, low, high) == (None, None, None)
        else:
            assert se is not None and se >= 0.0 and not math.isnan(se)
            assert low is not None and high is not None
            assert 0.0 <= low <= s <= high <= 1.0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=40))
def test_without_censoring_the_curve_is_the_empirical_survival_function(times):
    km = kaplan_meier(times, [1] * len(times))
    for t in km.time:
        assert km.survival_at(t) == pytest.approx(sum(x > t for x in times) / len(times))


def test_km_svg_is_accessible_and_draws_curve_band_and_censor_marks():
    km = kaplan_meier(*MAINTAINED)
    svg = km_svg(km, title="Relapse-free <maintained>", x_label="Weeks")
    root = ET.fromstring(svg)  # noqa: S314 - parsing our own output
    ns = "{http://www.w3.org/2000/svg}"
    assert root.get("role") == "img"
    assert root.find(f"{ns}title").text == "Relapse-free <maintained>"
    desc = root.find(f"{ns}desc").text
    assert "11 people with 7 events" in desc and "log-log" in desc
    assert len(list(root.iter(f"{ns}path"))) == 1
    assert len(list(root.iter(f"{ns}polygon"))) == 1
    censor_group = next(g for g in root.iter(f"{ns}g") if g.find(f"{ns}title") is not None)
    assert len(censor_group.findall(f"{ns}line")) == len(set(km.censor_times))
    texts = [el.text for el in root.iter(f"{ns}text")]
    assert "Number at risk" in texts and "11" in texts and "50%" in texts
    assert "nan" not in svg.lower()


def test_km_svg_without_band_and_with_a_curve_that_reaches_zero():
    km = kaplan_meier(*NONMAINTAINED)
    svg = km_svg(km, title="T", band=False)
    assert "<polygon" not in svg and "nan" not in svg.lower()
    with pytest.raises(ValueError, match="title"):
        km_svg(km, title="")


def test_km_svg_handles_a_single_time_zero_observation():
    svg = km_svg(kaplan_meier([0], [0]), title="T")
    assert "nan" not in svg.lower() and "inf" not in svg.lower()
