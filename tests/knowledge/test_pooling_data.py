"""Arm-level trial numbers (``pooling``) in the condition files, and what they pool to.

Every block is checked against its source's shape (where read, which arm is which, a
spread that a scale of that range can have), the schema's SE/CI conversions are
checked against hand arithmetic, and each condition's evidence is recomputed from
the raw YAML so the dashboard's pooled figure or its "fewer than two" note is the
one the data supports.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy.orm import Session

from prolo.evidence.meta import hedges_g, random_effects
from prolo.knowledge.loader import CONDITIONS_DIR, load_file
from prolo.knowledge.schema import (
    ArmEvents,
    ArmSummary,
    Condition,
    Pooling,
    parse_condition,
)
from prolo.knowledge.synthesis import synthesize
from prolo.outcomes import service
from tests.factories import PASSWORD, make_clinic, make_course, make_patient, make_user
from tests.knowledge.test_conditions import VALID

FILES = sorted(CONDITIONS_DIR.glob("*.yaml"))


@cache
def _raw(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@cache
def _loaded(path: Path) -> Condition:
    return load_file(path)


def _pooled_studies(path: Path) -> list[dict[str, Any]]:
    return [s for s in _raw(path).get("studies", []) if s.get("pooling") is not None]


POOLED = [(p, s["id"]) for p in FILES for s in _pooled_studies(p)]


# --- the shipped blocks ----------------------------------------------------------


def test_some_condition_files_carry_arm_level_numbers() -> None:
    ids = {(p.stem, sid) for p, sid in POOLED}
    assert {
        ("knee-osteoarthritis", "rabago-2013"),
        ("knee-osteoarthritis", "sit-2020"),
        ("low-back-pain", "yelland-2004"),
        ("low-back-pain", "ongley-1987"),
        ("low-back-pain", "klein-1993"),
    } <= ids


@pytest.mark.parametrize(("path", "study_id"), POOLED, ids=[f"{p.stem}:{s}" for p, s in POOLED])
def test_every_pooling_block_names_where_it_was_read_and_is_plausible(
    path: Path, study_id: str
) -> None:
    study = _loaded(path).study(study_id)
    p = study.pooling
    assert p is not None
    assert study.design == "rct", "only randomised trials are pooled"
    assert p.url.startswith(("https://", "http://"))
    assert len(p.locator) > 20 and re.search(r"Table|row|Abstract", p.locator), p.locator
    if not re.search(r"Table|row", p.locator):
        assert '"' in p.locator, "numbers read in an abstract are quoted as printed"
    assert p.grade in ("primary", "secondary")
    # The direction is written in words too, so a reader of the page knows it.
    assert f"{p.better} is better" in " ".join(p.outcome.split()), p.outcome
    assert p.synthesis in {s.id for s in _loaded(path).syntheses}
    arms = (p.treatment, p.control)
    for arm in arms:
        assert arm.label, "say which arm is which"
    assert p.treatment.label != p.control.label
    if p.shape == "events":
        assert all(isinstance(a, ArmEvents) for a in arms) and p.kind == "responders"
        for a in arms:
            assert isinstance(a, ArmEvents) and 0 <= a.events <= a.n
    elif p.shape == "difference":
        assert p.difference is not None and p.scale is not None
        d = p.difference
        # A printed 95% interval is symmetric about its difference (not a ratio).
        assert (d.ci_low + d.ci_high) / 2 == pytest.approx(d.value, abs=0.02)
        assert max(abs(d.ci_low), abs(d.ci_high)) <= p.scale.high - p.scale.low
    else:
        assert p.scale is not None
        width = p.scale.high - p.scale.low
        for arm in arms:
            assert isinstance(arm, ArmSummary)
            assert arm.sd > 0 and arm.n >= 2
            if p.kind == "score":
                assert p.scale.low <= arm.mean <= p.scale.high
                assert arm.sd <= width / 2 * math.sqrt(arm.n / (arm.n - 1))
            else:
                assert -width <= arm.mean <= width
                assert arm.sd <= width
    sizes = [a.n for a in arms]
    if study.n_patients is not None and all(n is not None for n in sizes):
        assert sum(n for n in sizes if n is not None) <= study.n_patients


@pytest.mark.parametrize(("path", "study_id"), POOLED, ids=[f"{p.stem}:{s}" for p, s in POOLED])
def test_the_files_hold_only_printed_spreads(path: Path, study_id: str) -> None:
    """A derived SD is never written in a file: only what the source printed."""
    block = next(s for s in _pooled_studies(path) if s["id"] == study_id)["pooling"]
    if "difference" in block or block["kind"] == "responders":
        return  # no spread is written: an interval of the difference, or counts
    for side in ("treatment", "control"):
        arm = block[side]
        source = arm.get("sd_from", "sd")
        printed = {"sd": {"sd"}, "se": {"se"}, "ci95": {"ci_low", "ci_high"}}[source]
        spreads = {k for k in ("sd", "se", "ci_low", "ci_high") if k in arm}
        assert spreads == printed, (side, spreads)


def test_rabago_2013_reads_table_4_at_week_52() -> None:
    """The numbers as printed: WOMAC composite change, mean (SE), with the notes' n."""
    p = _loaded(CONDITIONS_DIR / "knee-osteoarthritis.yaml").study("rabago-2013").pooling
    assert p is not None
    assert isinstance(p.treatment, ArmSummary) and isinstance(p.control, ArmSummary)
    assert (p.treatment.mean, p.treatment.se, p.treatment.n) == (15.32, 3.32, 26)
    assert (p.control.mean, p.control.se, p.control.n) == (7.59, 3.36, 25)
    assert p.treatment.sd_from == p.control.sd_from == "se"
    # SD = SE x sqrt(n): 3.32 x 5.0990 = 16.929; 3.36 x 5 = 16.8.
    assert p.treatment.sd == pytest.approx(16.929, abs=5e-4)
    assert p.control.sd == pytest.approx(16.8)
    assert (p.better, p.kind) == ("higher", "change")
    assert "Week 52" in p.locator and "Saline" in p.locator


def test_yelland_2004_reads_the_cochrane_extraction_at_six_months() -> None:
    p = _loaded(CONDITIONS_DIR / "low-back-pain.yaml").study("yelland-2004").pooling
    assert p is not None
    assert isinstance(p.treatment, ArmSummary) and isinstance(p.control, ArmSummary)
    assert (p.treatment.mean, p.treatment.sd, p.treatment.n) == (31.4, 26.6, 54)
    assert (p.control.mean, p.control.sd, p.control.n) == (34.0, 27.5, 56)
    assert (p.better, p.kind, p.grade) == ("lower", "score", "secondary")


# --- what each condition pools to ------------------------------------------------

Z = 1.959963984540054  # the 97.5% normal quantile behind "95% CI"


def _expected_effects(path: Path) -> dict[str, list[tuple[str, float, float]]]:
    """Each synthesis's effects recomputed from the raw YAML, by hand.

    MD and Hedges' g from arm means (SD = SE sqrt(n) where an SE was printed), an MD
    from a printed 95% CI as SE = width / (2 x 1.96), log RR from counts; an MD or g
    of a trial whose ``better`` differs from its synthesis's is negated.
    """
    raw = _raw(path)
    declared = {s["id"]: s for s in raw.get("syntheses", [])}
    out: dict[str, list[tuple[str, float, float]]] = {sid: [] for sid in declared}
    for s in raw.get("studies", []):
        block = s.get("pooling")
        if block is None:
            continue
        synthesis = declared[block["synthesis"]]
        sign = 1.0 if block["better"] == synthesis["better"] else -1.0
        label = f"{s['first_author']} {s['year']}"
        t, c = block["treatment"], block["control"]
        if synthesis["measure"] == "RR":
            a, n1, b, n2 = t["events"], t["n"], c["events"], c["n"]
            yi = math.log((a / n1) / (b / n2))
            vi = 1 / a - 1 / n1 + 1 / b - 1 / n2
        elif "difference" in block:
            d = block["difference"]
            yi, vi = sign * d["value"], ((d["ci_high"] - d["ci_low"]) / (2 * Z)) ** 2
        else:
            arms = []
            for arm in (t, c):
                source = arm.get("sd_from", "sd")
                assert source in ("sd", "se"), "extend this recomputation for ci95"
                sd = arm["sd"] if source == "sd" else arm["se"] * math.sqrt(arm["n"])
                arms.append((arm["mean"], sd, arm["n"]))
            (m1, sd1, n1), (m2, sd2, n2) = arms
            if synthesis["measure"] == "MD":
                yi, vi = sign * (m1 - m2), sd1**2 / n1 + sd2**2 / n2
            else:
                es = hedges_g(m1=m1, sd1=sd1, n1=n1, m2=m2, sd2=sd2, n2=n2)
                yi, vi = sign * es.yi, es.vi
        out[block["synthesis"]].append((label, yi, vi))
    return out


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_each_condition_pools_what_its_file_supports(path: Path) -> None:
    expected = _expected_effects(path)
    results = {r.synthesis.id: r for r in synthesize(_loaded(path))}
    assert set(results) == set(expected)
    for sid, effects in expected.items():
        r = results[sid]
        assert [e.label for e in r.effects] == [e[0] for e in effects]
        assert [e.yi for e in r.effects] == pytest.approx([e[1] for e in effects])
        assert [e.vi for e in r.effects] == pytest.approx([e[2] for e in effects])
        if len(effects) >= 2:
            pooled = random_effects(
                [e[1] for e in effects], [e[2] for e in effects], method="REML", test="knha"
            )
            assert r.pooled is not None
            assert r.pooled.estimate == pytest.approx(pooled.estimate)
            assert r.pooled.ci_low == pytest.approx(pooled.ci_low)
            svg = r.svg()
            assert svg is not None and svg.startswith("<svg") and "Favours prolotherapy" in svg
        else:
            assert r.pooled is None and r.note is not None and "cannot be combined" in r.note
            assert ("no randomised" if not effects else "only one randomised") in r.note
    summary = service.evidence_for(path.stem)
    pooled_ids = [sid for sid, effects in expected.items() if len(effects) >= 2]
    if pooled_ids:
        assert summary["synthesis_id"] == pooled_ids[0] and summary["svg"].startswith("<svg")
    else:
        assert summary["pooled"] is None and "cannot be combined" in summary["note"]


def test_knee_osteoarthritis_pools_rabago_and_sit_on_womac_at_52_weeks() -> None:
    """Both trials against saline, WOMAC composite 0-100 at 52 weeks, oriented to improvement.

    Rabago 2013: MD = 15.32 - 7.59 = 7.73, variance = 3.32^2 + 3.36^2 = 22.312 (SE 4.724).
    Sit 2020 prints the fall in score, -9.65 (95% CI -17.77 to -1.53): negated to 9.65,
    SE = 16.24 / 3.92 = 4.143, variance 17.164. Weights 0.04482 and 0.05826:
    estimate = (0.04482 x 7.73 + 0.05826 x 9.65) / 0.10308 = 8.815. Q = 0.093 < 1, so
    tau^2 = 0; Hartung-Knapp SE = sqrt(1 / 0.10308) x sqrt(0.093) = 0.952, and with
    t(0.975, 1) = 12.706 the interval is 8.815 -/+ 12.09 = -3.28 to 20.91.
    """
    (r,) = synthesize(_loaded(CONDITIONS_DIR / "knee-osteoarthritis.yaml"))
    assert [e.label for e in r.effects] == ["Rabago 2013", "Sit 2020"]
    assert [e.yi for e in r.effects] == pytest.approx([7.73, 9.65])
    assert r.effects[1].vi == pytest.approx(4.143**2, rel=1e-3)
    assert r.pooled is not None
    assert r.pooled.estimate == pytest.approx(8.815, abs=1e-3)
    assert r.pooled.tau2 == 0.0
    assert (r.pooled.ci_low, r.pooled.ci_high) == pytest.approx((-3.28, 20.91), abs=0.01)
    assert r.favours == "neither"  # two small trials: the interval spans no effect
    assert "negated" in r.effects[1].derivation


def test_low_back_pain_pools_responders_as_a_risk_ratio() -> None:
    """Ongley 1987: 35/40 vs 16/41, RR 2.242 (log 0.807); Klein 1993: 30/39 vs 21/40,
    RR 1.465 (log 0.382). Variances 1/35 - 1/40 + 1/16 - 1/41 = 0.0417 and
    1/30 - 1/39 + 1/21 - 1/40 = 0.0303."""
    results = {
        r.synthesis.id: r for r in synthesize(_loaded(CONDITIONS_DIR / "low-back-pain.yaml"))
    }
    rr = results["responders-6m-proliferant"]
    assert [round(math.exp(e.yi), 3) for e in rr.effects] == [2.242, 1.465]
    assert [round(e.vi, 4) for e in rr.effects] == [0.0417, 0.0303]
    assert rr.pooled is not None and rr.ratio and rr.null_value == 1.0
    data = rr.as_dict()
    # Ratios are shown exponentiated, with the line of no effect at 1.
    assert data["pooled"]["estimate"] == round(math.exp(rr.pooled.estimate), 3)
    assert 1.465 < data["pooled"]["estimate"] < 2.242
    alone = results["pain-vas-6m-alone"]
    assert alone.k == 1 and alone.pooled is None and "only one randomised trial" in str(alone.note)


def test_the_dashboard_shows_the_pooled_estimate_for_knee_osteoarthritis(
    client: TestClient, session: Session
) -> None:
    clinic = make_clinic(session)
    make_course(session, make_patient(session, clinic), status="active")
    user = make_user(session, clinic, "clinician")
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    login = client.post(
        "/login",
        data={"email": user.email, "password": PASSWORD, "csrf_token": token.group(1)},
        follow_redirects=False,
    )
    assert login.status_code == 303
    html = client.get("/outcomes", params={"condition": "knee-osteoarthritis"}).text
    assert "Your results beside the published trials" in html
    assert 'id="forest-knee-osteoarthritis-womac-52w-vs-saline-title"' in html
    assert "Pooled mean difference 8.82 points of WOMAC composite improvement" in html
    assert "Favours prolotherapy" in html and "Your clinic" in html


def test_the_condition_page_shows_each_synthesis(client: TestClient) -> None:
    knee = client.get("/conditions/knee-osteoarthritis")
    assert knee.status_code == 200
    assert "What the trials show together" in knee.text
    assert 'id="forest-knee-osteoarthritis-womac-52w-vs-saline-title"' in knee.text
    assert "95% prediction interval" in knee.text and "I² 0%" in knee.text
    back = client.get("/conditions/low-back-pain").text
    assert "Pooled risk ratio" in back and "only one randomised trial" in back
    # A condition without arm-level numbers has no such section rather than an empty one.
    assert "What the trials show together" not in client.get("/conditions/neck-pain").text


# --- the schema: spreads as printed ----------------------------------------------


def _arm(**fields: Any) -> ArmSummary:
    return ArmSummary.model_validate({"mean": 10.0, "n": 25, **fields})


def test_an_se_becomes_an_sd_by_the_square_root_of_n() -> None:
    arm = _arm(se=2.0, sd_from="se")
    assert arm.sd == pytest.approx(10.0)  # 2.0 x sqrt(25)
    assert arm.se == 2.0 and arm.sd_from == "se"


def test_a_95_percent_interval_becomes_an_sd_with_students_t() -> None:
    # n = 10: t(0.975, 9) = 2.262157; SD = sqrt(10) x (60 - 40) / (2 x 2.262157) = 13.979.
    arm = ArmSummary.model_validate(
        {"mean": 50.0, "n": 10, "sd_from": "ci95", "ci_low": 40.0, "ci_high": 60.0}
    )
    assert arm.sd == pytest.approx(13.979, abs=5e-4)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"sd": 3.0, "se": 1.0}, "does not use se"),
        ({"se": 1.0, "sd_from": "se", "ci_low": 1.0, "ci_high": 2.0}, "does not use ci_low"),
        ({"sd_from": "se"}, "needs se"),
        ({"sd_from": "ci95", "ci_low": 5.0}, "needs ci_high"),
        ({"sd_from": "se", "se": 1.0, "sd": 3.0}, "leave sd out"),
        ({"sd_from": "ci95", "ci_low": 12.0, "ci_high": 8.0}, "below ci_high"),
        ({"sd_from": "ci95", "ci_low": 11.0, "ci_high": 14.0}, "outside its interval"),
        ({"sd_from": "se", "se": 1.0, "n": 1}, "n of at least 2"),
        ({"sd": 0.0}, "greater than 0"),
        ({"sd_from": "range", "sd": 1.0}, "sd_from"),
    ],
)
def test_spreads_that_do_not_fit_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _arm(**fields)


@settings(max_examples=60, deadline=None)
@given(
    mean=st.floats(-50, 50, allow_nan=False),
    se=st.floats(0.01, 20, allow_nan=False),
    n=st.integers(2, 500),
)
def test_a_derived_sd_survives_a_round_trip(mean: float, se: float, n: int) -> None:
    arm = _arm(mean=mean, se=se, sd_from="se", n=n)
    assert arm.sd == pytest.approx(se * math.sqrt(n))
    assert ArmSummary.model_validate(arm.model_dump()) == arm


# --- the schema: plausibility and direction --------------------------------------

BLOCK: dict[str, Any] = {
    "synthesis": "pain-6m",
    "outcome": "VAS pain at 6 months, lower is better",
    "better": "lower",
    "kind": "score",
    "scale": {"low": 0, "high": 10},
    "treatment": {"label": "dextrose", "mean": 4.0, "sd": 2.0, "n": 30},
    "control": {"label": "saline", "mean": 5.0, "sd": 2.0, "n": 30},
    "url": "https://example.org/table-2",
    "locator": "Table 2, row VAS pain, column 6 months",
    "grade": "primary",
}


def _block(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(BLOCK)
    data.update(changes)
    return data


def test_a_well_formed_block_loads() -> None:
    p = Pooling.model_validate(BLOCK)
    assert p.treatment.sd == 2.0 and p.scale.high == 10


def test_an_sd_no_scale_of_that_range_can_have_is_refused() -> None:
    """Dechow 1999 as extracted in the Cochrane review: VAS pain 5.2 (5.4) and 4.4 (6.2)
    on a 0-10 scale. A 0-10 score with mean 5.2 cannot have an SD above about 5.0, so
    these are not SDs and the block is refused (docs/clinical-content.md)."""
    dechow = _block(
        treatment={"label": "glucose-glycerine-phenol", "mean": 5.2, "sd": 5.4, "n": 36},
        control={"label": "lignocaine", "mean": 4.4, "sd": 6.2, "n": 38},
    )
    with pytest.raises(ValidationError, match=r"treatment.sd 5.4 is larger"):
        Pooling.model_validate(dechow)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"treatment": {"label": "d", "mean": 11.0, "sd": 1.0, "n": 30}}, "outside 0"),
        ({"kind": "change", "treatment": {"label": "d", "mean": -12, "sd": 1, "n": 9}}, "outside"),
        ({"kind": "change", "control": {"label": "s", "mean": 1, "sd": 10.5, "n": 9}}, "larger"),
        ({"scale": {"low": 10, "high": 0}}, "low must be below high"),
        ({"better": "up"}, "better"),
        ({"url": "example.org/t2"}, "url"),
        ({"grade": None}, "grade"),
    ],
)
def test_blocks_that_cannot_be_right_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Pooling.model_validate(_block(**changes))


SYNTHESIS: dict[str, Any] = {
    "id": "pain-6m",
    "title": "Pain at 6 months",
    "measure": "SMD",
    "comparison": "dextrose vs saline",
    "outcome": "pain at 6 months, prolotherapy minus comparator",
    "better": "lower",
    "comparable_because": "Same condition, same comparison, same outcome at the same time.",
}


def _condition_with(*blocks: dict[str, Any], **synthesis: Any) -> dict[str, Any]:
    data = copy.deepcopy(VALID)
    data["reviewed"] = dt.date(2026, 11, 24)  # YAML gives a date; strict parsing wants one
    study = data["studies"][0]
    data["studies"] = [
        {**study, "id": f"trial-{i}", "first_author": f"Trial{i}", "pooling": block}
        for i, block in enumerate(blocks)
    ]
    data["syntheses"] = [{**SYNTHESIS, **synthesis}]
    data["claims"] = []
    return data


WOMAC_GAIN = _block(
    better="higher",
    kind="change",
    outcome="WOMAC change, higher is better",
    treatment={"label": "d", "mean": 15.0, "sd": 17.0, "n": 26},
    control={"label": "s", "mean": 7.0, "sd": 17.0, "n": 25},
    scale={"low": 0, "high": 100},
)
WOMAC_FALL = _block(
    kind="change",
    outcome="WOMAC change, lower is better",
    treatment={"label": "d", "mean": -21.8, "sd": 12.5, "n": 18},
    control={"label": "e", "mean": -6.1, "sd": 13.9, "n": 18},
    scale={"low": 0, "high": 96},
)


def test_trials_reported_the_other_way_round_are_turned_to_the_synthesis_direction() -> None:
    """The known bug: pooling ignored ``better``. A gain of 8 points (higher is better)
    and a fall of 15.7 points (lower is better) both favour dextrose; in a synthesis
    where lower favours prolotherapy the gain must be negated, so both effects are
    negative and the pooled estimate favours prolotherapy, not the comparator."""
    trials = (WOMAC_GAIN, WOMAC_FALL, WOMAC_GAIN, WOMAC_FALL)
    (r,) = synthesize(parse_condition(_condition_with(*trials)))
    gain = hedges_g(m1=15.0, sd1=17.0, n1=26, m2=7.0, sd2=17.0, n2=25).yi
    fall = hedges_g(m1=-21.8, sd1=12.5, n1=18, m2=-6.1, sd2=13.9, n2=18).yi
    assert gain > 0 > fall
    assert [e.yi for e in r.effects] == pytest.approx([-gain, fall, -gain, fall])
    assert "negated" in r.effects[0].derivation and "negated" not in r.effects[1].derivation
    # Unoriented, the four effects would cancel out to about zero; oriented they agree.
    assert r.pooled is not None and r.pooled.ci_high < 0
    assert r.favours == "prolotherapy"
    # The same trials in a synthesis where higher favours prolotherapy: mirror image.
    (up,) = synthesize(parse_condition(_condition_with(*trials, better="higher")))
    assert up.pooled is not None and up.pooled.estimate == pytest.approx(-r.pooled.estimate)
    assert up.favours == "prolotherapy"


def test_the_forest_plot_puts_favours_prolotherapy_on_the_better_side() -> None:
    lower = synthesize(parse_condition(_condition_with(WOMAC_GAIN, WOMAC_FALL)))[0].svg()
    higher = synthesize(parse_condition(_condition_with(WOMAC_GAIN, WOMAC_FALL, better="higher")))[
        0
    ].svg()
    assert lower is not None and higher is not None
    # Left of the line reads first in the description.
    assert "left of the line: Favours prolotherapy; right of the line: Favours saline" in lower
    assert "left of the line: Favours saline; right of the line: Favours prolotherapy" in higher
    assert "\u2190 Favours prolotherapy" in lower and "Favours prolotherapy \u2192" in higher


def test_a_risk_ratio_cannot_be_turned_round() -> None:
    counts = _block(
        kind="responders",
        better="lower",
        scale=None,
        outcome="Treatment failure at 6 months, lower is better",
        treatment={"label": "d", "events": 5, "n": 30},
        control={"label": "s", "events": 9, "n": 30},
    )
    with pytest.raises(ValidationError, match="a risk ratio cannot be turned round"):
        parse_condition(_condition_with(counts, measure="RR", better="higher"))
    ok = parse_condition(_condition_with(counts, counts, measure="RR", better="lower"))
    (r,) = synthesize(ok)
    assert r.pooled is not None and r.ratio


@pytest.mark.parametrize(
    ("blocks", "synthesis", "message"),
    [
        ((BLOCK,), {"measure": "RR"}, "needs event counts"),
        ((_block(synthesis="elsewhere"),), {}, "is not declared"),
        (
            (BLOCK, _block(scale={"low": 0, "high": 100})),
            {"measure": "MD", "unit": "pts"},
            "pools one scale",
        ),
        (
            (
                _block(
                    treatment={"label": "d"},
                    control={"label": "s"},
                    difference={"value": -1.0, "ci_low": -2.0, "ci_high": 0.0},
                ),
            ),
            {},
            "SMD needs arm means",
        ),
        ((BLOCK,), {"measure": "MD"}, "needs the unit"),
    ],
)
def test_syntheses_that_cannot_be_computed_are_refused(
    blocks: tuple[dict[str, Any], ...], synthesis: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_condition(_condition_with(*blocks, **synthesis))


@pytest.mark.parametrize(
    ("difference", "message"),
    [
        ({"value": 2.0, "ci_low": 0.5, "ci_high": 6.0}, "not symmetric"),
        ({"value": 7.0, "ci_low": 0.5, "ci_high": 6.0}, "inside its interval"),
        ({"value": -5.0, "ci_low": -15.0, "ci_high": 5.0}, "wider than the scale"),
    ],
)
def test_printed_differences_that_cannot_be_right_are_refused(
    difference: dict[str, float], message: str
) -> None:
    block = _block(treatment={"label": "d", "n": 30}, control={"label": "s"}, difference=difference)
    with pytest.raises(ValidationError, match=message):
        Pooling.model_validate(block)


def test_a_printed_difference_gives_its_standard_error_from_the_interval() -> None:
    # Sit 2020: -9.65 (95% CI -17.77 to -1.53): SE = 16.24 / (2 x 1.95996) = 4.1429.
    block = _block(
        kind="change",
        scale={"low": 0, "high": 100},
        treatment={"label": "d"},
        control={"label": "s"},
        difference={"value": -9.65, "ci_low": -17.77, "ci_high": -1.53},
    )
    p = Pooling.model_validate(block)
    assert p.shape == "difference" and p.difference is not None
    assert p.difference.se == pytest.approx(4.1429, abs=1e-4)


def test_changes_and_follow_up_scores_are_not_pooled_together() -> None:
    change = _block(kind="change")
    with pytest.raises(
        ValidationError, match=r"pooling.kind differs within synthesis pain-6m"
    ) as refused:
        parse_condition(_condition_with(BLOCK, change))
    assert refused.value.error_count() == 1


def test_the_pdf_draws_a_risk_ratio_forest_plot_on_a_log_axis() -> None:
    from matplotlib.figure import Figure

    from prolo.outcomes.pdf import draw_forest, report_pdf

    evidence = service.evidence_for("low-back-pain")
    assert evidence["measure"] == "RR" and evidence["null_value"] == 1.0
    ax = Figure().add_subplot()
    draw_forest(ax, evidence)
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "Risk ratio (log scale)"
    # The line of no effect sits at a ratio of 1, not at 0 (which a log axis cannot show).
    assert [line.get_xdata()[0] for line in ax.lines if line.get_xdata()[0] == 1.0]
    report = {
        "as_of": "2026-06-01",
        "selection": {},
        "empty": True,
        "instruments": [],
        "waterfall": {"n": 0},
        "evidence": [evidence],
    }
    assert report_pdf(report).startswith(b"%PDF")
