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
from prolo.knowledge.schema import ArmSummary, Condition, Pooling, parse_condition
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
    assert ("knee-osteoarthritis", "rabago-2013") in ids
    assert ("low-back-pain", "yelland-2004") in ids


@pytest.mark.parametrize(("path", "study_id"), POOLED, ids=[f"{p.stem}:{s}" for p, s in POOLED])
def test_every_pooling_block_names_where_it_was_read_and_is_plausible(
    path: Path, study_id: str
) -> None:
    study = _loaded(path).study(study_id)
    p = study.pooling
    assert p is not None
    assert study.design == "rct", "only randomised trials are pooled"
    assert p.url.startswith(("https://", "http://"))
    assert len(p.locator) > 20 and re.search(r"Table|row", p.locator), p.locator
    assert p.grade in ("primary", "secondary")
    # The direction is written in words too, so a reader of the page knows it.
    assert f"{p.better} is better" in " ".join(p.outcome.split()), p.outcome
    width = p.scale.high - p.scale.low
    for arm in (p.treatment, p.control):
        assert arm.label, "say which arm is which"
        assert arm.sd > 0 and arm.n >= 2
        if p.kind == "score":
            assert p.scale.low <= arm.mean <= p.scale.high
            assert arm.sd <= width / 2 * math.sqrt(arm.n / (arm.n - 1))
        else:
            assert -width <= arm.mean <= width
            assert arm.sd <= width
    assert p.treatment.label != p.control.label
    if study.n_patients is not None:
        assert p.treatment.n + p.control.n <= study.n_patients


@pytest.mark.parametrize(("path", "study_id"), POOLED, ids=[f"{p.stem}:{s}" for p, s in POOLED])
def test_the_files_hold_only_printed_spreads(path: Path, study_id: str) -> None:
    """A derived SD is never written in a file: only what the source printed."""
    block = next(s for s in _pooled_studies(path) if s["id"] == study_id)["pooling"]
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
    assert (p.treatment.mean, p.treatment.sd, p.treatment.n) == (31.4, 26.6, 54)
    assert (p.control.mean, p.control.sd, p.control.n) == (34.0, 27.5, 56)
    assert (p.better, p.kind, p.grade) == ("lower", "score", "secondary")


# --- what each condition pools to ------------------------------------------------


def _expected_effects(path: Path) -> list[tuple[str, float, float]]:
    """Hedges' g from the raw YAML, converting printed SEs by hand (SD = SE sqrt(n))."""
    out = []
    for s in _raw(path).get("studies", []):
        if s.get("design") != "rct" or s.get("pooling") is None:
            continue
        arms = []
        for side in ("treatment", "control"):
            arm = s["pooling"][side]
            source = arm.get("sd_from", "sd")
            assert source in ("sd", "se"), "extend this recomputation for ci95"
            sd = arm["sd"] if source == "sd" else arm["se"] * math.sqrt(arm["n"])
            arms.append((arm["mean"], sd, arm["n"]))
        (m1, sd1, n1), (m2, sd2, n2) = arms
        es = hedges_g(m1=m1, sd1=sd1, n1=n1, m2=m2, sd2=sd2, n2=n2)
        out.append((f"{s['first_author']} {s['year']}", es.yi, es.vi))
    return out


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_each_condition_pools_what_its_file_supports(path: Path) -> None:
    expected = _expected_effects(path)
    out = service.evidence_for(path.stem)
    assert out["k"] == len(expected)
    if len(expected) >= 2:
        pooled = random_effects(
            [e[1] for e in expected], [e[2] for e in expected], method="REML", test="knha"
        )
        assert out["pooled"]["estimate"] == round(pooled.estimate, 3)
        assert [r["label"] for r in out["rows"]] == [e[0] for e in expected]
        assert out["svg"].startswith("<svg")
    else:
        assert out["pooled"] is None and "cannot be combined" in out["note"]
        assert ("no randomised" if not expected else "only one randomised") in out["note"]


def test_knee_osteoarthritis_says_plainly_that_one_trial_cannot_be_pooled() -> None:
    """Only Rabago 2013 has arm-level numbers that were read (Dumais 2012's abstract
    gives no group sizes; Sit 2020 and Sert 2020 were read without their tables), so
    the page must say one trial cannot be combined rather than draw a forest plot."""
    out = service.evidence_for("knee-osteoarthritis")
    assert out["k"] == 1 and out["pooled"] is None
    assert "only one randomised trial" in out["note"]
    g = _expected_effects(CONDITIONS_DIR / "knee-osteoarthritis.yaml")[0][1]
    # (15.32 - 7.59) / 16.865 = 0.458, times J(49) = 0.9846: g = 0.451, favouring dextrose.
    assert g == pytest.approx(0.451, abs=1e-3)


def test_the_dashboard_shows_the_note_for_knee_osteoarthritis(
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
    assert "only one randomised trial of knee arthritis" in html
    assert "cannot be combined" in html and 'id="forest-knee-osteoarthritis' not in html


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


def _condition_with(*blocks: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(VALID)
    data["reviewed"] = dt.date(2026, 11, 24)  # YAML gives a date; strict parsing wants one
    study = data["studies"][0]
    data["studies"] = [
        {**study, "id": f"trial-{i}", "pooling": block} for i, block in enumerate(blocks)
    ]
    data["claims"] = []
    return data


def test_pooled_trials_must_point_the_same_way() -> None:
    improvement = _block(
        better="higher",
        kind="change",
        outcome="WOMAC change, higher is better",
        treatment={"label": "d", "mean": 15.0, "sd": 17.0, "n": 26},
        control={"label": "s", "mean": 7.0, "sd": 17.0, "n": 25},
        scale={"low": 0, "high": 100},
    )
    fall = _block(
        kind="change",
        outcome="WOMAC change, lower is better",
        treatment={"label": "d", "mean": -21.8, "sd": 12.5, "n": 18},
        control={"label": "e", "mean": -6.1, "sd": 13.9, "n": 18},
        scale={"low": 0, "high": 96},
    )
    with pytest.raises(ValidationError, match=r"pooling.better differs") as refused:
        parse_condition(_condition_with(improvement, fall))
    assert refused.value.error_count() == 1
    both_lower = parse_condition(_condition_with(fall, fall))
    assert len(both_lower.studies) == 2


def test_changes_and_follow_up_scores_are_not_pooled_together() -> None:
    change = _block(kind="change")
    with pytest.raises(ValidationError, match=r"pooling.kind differs") as refused:
        parse_condition(_condition_with(BLOCK, change))
    assert refused.value.error_count() == 1
