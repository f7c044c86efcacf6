"""Per condition: pool the knowledge base's comparable trials, or say plainly why not."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from prolo.evidence.meta import hedges_g, random_effects
from prolo.knowledge.schema import Condition, parse_condition
from prolo.outcomes import service
from prolo.outcomes.pdf import report_pdf
from prolo.outcomes.report import Selection
from tests.knowledge.test_conditions import VALID

SYNTHESIS = {
    "id": "pain-12w",
    "title": "Pain change at 12 weeks",
    "measure": "SMD",
    "comparison": "prolotherapy vs control injections",
    "outcome": "pain change at 12 weeks, prolotherapy minus control",
    "better": "lower",
    "comparable_because": "Same condition, comparison, outcome and follow-up in every trial.",
}


def _study(
    author: str, year: int, design: str, t: tuple[float, float, int], c: tuple[float, float, int]
) -> dict[str, Any]:
    arm = lambda m, sd, n: {"label": f"{m}", "mean": m, "sd": sd, "n": n}  # noqa: E731
    study = {
        **VALID["studies"][0],
        "id": f"{author.lower()}-{year}",
        "first_author": author,
        "year": year,
        "design": design,
        "n_patients": None,
    }
    if design == "rct":  # only randomised trials carry pooling blocks
        study["pooling"] = {
            "synthesis": "pain-12w",
            "outcome": "pain change at 12 weeks, lower is better",
            "better": "lower",
            "kind": "change",
            "scale": {"low": 0, "high": 10},
            "treatment": arm(*t),
            "control": {**arm(*c), "label": "control"},
            "url": "https://example.org/table-2",
            "locator": "Table 2",
            "grade": "primary",
        }
    return study


def _condition(cid: str, name: str, *studies: dict[str, Any]) -> Condition:
    data = {
        **copy.deepcopy(VALID),
        "id": cid,
        "lay_name": name,
        "reviewed": dt.date(2026, 11, 24),
        "syntheses": [SYNTHESIS],
        "studies": list(studies),
        "claims": [],
    }
    return parse_condition(data)


@pytest.fixture
def knowledge(monkeypatch: pytest.MonkeyPatch) -> None:
    conditions = {
        "pooled-condition": _condition(
            "pooled-condition",
            "Pooled condition",
            _study("Alpha", 2010, "rct", (-3.0, 2.0, 30), (-1.5, 2.2, 31)),
            _study("Beta", 2014, "rct", (-2.5, 1.8, 45), (-1.8, 2.0, 44)),
            _study("Gamma", 2019, "rct", (-4.0, 2.5, 20), (-1.0, 2.4, 22)),
            _study("Cohort", 2020, "cohort", (-5.0, 2.0, 50), (-1.0, 2.0, 50)),
        ),
        "single-trial": _condition(
            "single-trial",
            "Single trial",
            _study("Solo", 2015, "rct", (-2.0, 1.0, 20), (-1.0, 1.0, 20)),
        ),
    }
    import prolo.knowledge.loader as loader

    monkeypatch.setattr(loader, "load_conditions", lambda: conditions)


def test_two_or_more_trials_are_pooled_with_a_forest_plot(knowledge: None) -> None:
    out = service.evidence_for("pooled-condition")
    assert out["k"] == 3  # the cohort is not a randomised trial: it has no pooling block
    effects = [
        hedges_g(m1=-3.0, sd1=2.0, n1=30, m2=-1.5, sd2=2.2, n2=31),
        hedges_g(m1=-2.5, sd1=1.8, n1=45, m2=-1.8, sd2=2.0, n2=44),
        hedges_g(m1=-4.0, sd1=2.5, n1=20, m2=-1.0, sd2=2.4, n2=22),
    ]
    expected = random_effects(
        [e.yi for e in effects], [e.vi for e in effects], method="REML", test="knha"
    )
    assert out["pooled"]["estimate"] == round(expected.estimate, 3)
    assert out["pooled"]["ci_low"] == round(expected.ci_low, 3)
    assert out["svg"].startswith("<svg") and "Gamma 2019" in out["svg"]
    assert [r["label"] for r in out["rows"]] == ["Alpha 2010", "Beta 2014", "Gamma 2019"]


def test_fewer_than_two_trials_say_so(knowledge: None) -> None:
    single = service.evidence_for("single-trial")
    assert single["pooled"] is None and "only one" in single["note"]
    assert "cannot be combined" in single["note"]
    unknown = service.evidence_for("not-in-the-knowledge-base")
    assert unknown["pooled"] is None and unknown["k"] == 0


def test_the_clinics_own_result_sits_beside_the_trials(knowledge: None) -> None:
    report = {
        "breakdowns": {
            "condition_id": [
                {
                    "key": "pooled-condition",
                    "change": {"n": 12, "mean": -2.1, "ci_low": -2.9, "ci_high": -1.3},
                },
            ]
        }
    }
    beside = service.evidence_beside(report, Selection())
    assert (
        beside[0]["clinic"]["mean"] == -2.1
        and "without a comparison group" in beside[0]["clinic_note"]
    )
    assert beside[0]["pooled"] is not None
    chosen = service.evidence_beside(report, Selection(condition_id="single-trial"))
    assert chosen[0]["condition_id"] == "single-trial" and chosen[0]["clinic"]["n"] == 0


def test_the_pdf_draws_the_forest_plot(knowledge: None) -> None:
    from prolo.outcomes.pdf import pictures

    evidence = service.evidence_for("pooled-condition")
    report = {
        "as_of": "2026-06-01",
        "selection": {},
        "empty": True,
        "instruments": [],
        "waterfall": {"n": 0},
        "evidence": [evidence],
    }
    assert len(pictures(report)) == 1
    assert report_pdf(report).startswith(b"%PDF")
