"""Small, valid conditions and profiles for the screening tests.

The conditions are test fixtures, not clinical content: their studies and texts are
placeholders that only satisfy the schema.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prolo.knowledge.safety import load_safety_rules
from prolo.knowledge.schema import Condition, icd10cm_description
from prolo.screening import ScreeningProfile

PLACEHOLDER = "Placeholder text for a screening test fixture, not clinical content."


def make_condition(
    condition_id: str = "knee-osteoarthritis",
    *,
    body_region: str = "knee",
    complaint_keys: tuple[str, ...] = ("knee",),
    codes: tuple[str, ...] = ("M17.11",),
    prefixes: tuple[str, ...] = ("M17",),
    grade: str = "low",
    published_protocol: bool = True,
    instruments: tuple[str, ...] = ("pain-nrs", "womac"),
) -> Condition:
    """A valid condition; ``grade='insufficient'`` gives one with no studies."""
    studies: list[dict[str, Any]] = []
    if grade != "insufficient" or published_protocol:
        studies.append(
            {
                "id": "fixture-2020",
                "design": "rct",
                "first_author": "Fixture",
                "year": 2020,
                "journal": "Test Journal",
                "url": "https://example.org/fixture",
                "locator": "Abstract",
                "grade": "primary",
                "main_result": PLACEHOLDER,
                "conclusion": PLACEHOLDER,
            }
        )
    protocol: dict[str, Any] = {"status": "insufficient_evidence"}
    if published_protocol:
        protocol = {
            "status": "published",
            "injectate": "dextrose with lidocaine (fixture)",
            "sessions": {"low": 3, "high": 5},
            "sources": [{"study_id": "fixture-2020", "locator": "Methods"}],
        }
    return Condition.model_validate(
        {
            "id": condition_id,
            "version": 1,
            "reviewed": date(2026, 11, 24),
            "lay_name": f"{condition_id} (fixture)",
            "clinical_name": f"{condition_id} clinical name (fixture)",
            "body_region": body_region,
            "codes": {"icd10cm": [{"code": c, "display": icd10cm_description(c)} for c in codes]},
            "evidence_grade": grade,
            "grade_reason": "Fixture grade reason.",
            "summary_patient": PLACEHOLDER,
            "summary_clinician": PLACEHOLDER,
            "studies": studies,
            "protocol": protocol,
            "instruments": list(instruments),
            "match": {"icd10_prefixes": list(prefixes), "complaint_keys": list(complaint_keys)},
        }
    )


def fixture_conditions() -> dict[str, Condition]:
    """A small knowledge base covering each branch of the matcher."""
    conditions = [
        make_condition(),
        make_condition(
            "knee-pain",
            codes=("M25.561",),
            prefixes=("M25.56",),
            grade="very_low",
            published_protocol=False,
            instruments=("pain-nrs", "koos-jr"),
        ),
        make_condition(
            "low-back-pain",
            body_region="lumbar_spine",
            complaint_keys=("lower_back", "pelvis_buttock"),
            codes=("M54.50",),
            prefixes=("M54.5",),
            grade="insufficient",
            published_protocol=False,
            instruments=("pain-nrs", "odi"),
        ),
        make_condition(
            "lateral-epicondylitis",
            body_region="elbow",
            complaint_keys=("elbow",),
            codes=("M77.11",),
            prefixes=("M77.1",),
            grade="moderate",
            instruments=("pain-nrs", "prtee"),
        ),
        make_condition(
            "sacroiliac-joint-dysfunction",
            body_region="pelvis",
            complaint_keys=("pelvis_buttock",),
            codes=("M53.3",),
            prefixes=("M53.3",),
            grade="low",
        ),
        make_condition(
            "generalised-osteoarthritis",
            body_region="multiple",
            complaint_keys=("widespread",),
            codes=("M15.0",),
            prefixes=("M15",),
            grade="insufficient",
            published_protocol=False,
        ),
    ]
    return {c.id: c for c in conditions}


def no_red_flags() -> dict[str, bool]:
    """Every red-flag question of the shipped rules, answered no."""
    return dict.fromkeys(load_safety_rules().questions, False)


def clear_history() -> dict[str, bool]:
    """Every history question of the safety screen, answered no."""
    return dict.fromkeys(
        (
            "infection_at_site",
            "systemic_infection",
            "bleeding_disorder",
            "fracture_at_site",
            "prosthetic_joint_at_site",
            "immunosuppressed",
            "malignancy_at_site",
            "diabetes",
        ),
        False,
    )


def answers(**overrides: Any) -> dict[str, Any]:
    """Raw answers for a chronic knee complaint with every safety answer no."""
    data: dict[str, Any] = {
        "complaint": "knee",
        "pain_duration_weeks": 26.0,
        "prior_treatments": ["physiotherapy_exercise", "nsaids"],
        "red_flags": no_red_flags(),
        "medications": {"anticoagulant": False, "antiplatelet": False},
        "allergies": {"local_anaesthetic": False, "dextrose": False, "other": []},
        "history": clear_history(),
        "pregnant": False,
        "sex_at_birth": "female",
    }
    data.update(overrides)
    return data


def make_profile(**overrides: Any) -> ScreeningProfile:
    """A validated profile from :func:`answers` with ``overrides``."""
    return ScreeningProfile.model_validate(answers(**overrides))


def with_answer(path: str, value: bool, **overrides: Any) -> ScreeningProfile:
    """A profile whose answer at a trigger path (``history.x``, ``pregnant``) is ``value``."""
    data = answers(**overrides)
    group, _, name = path.partition(".")
    if not name:
        data[group] = value
    else:
        data[group] = {**data[group], name: value}
    return ScreeningProfile.model_validate(data)
