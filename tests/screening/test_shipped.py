"""The engine against the shipped knowledge base and safety rules (whatever they hold).

Parametrised over the condition files, so a new file is screened the moment it lands.
"""

from __future__ import annotations

import pytest

from prolo.knowledge import load_conditions
from prolo.knowledge.schema import COMPLAINT_KEYS, Condition
from prolo.screening import ScreeningInputError, fits_complaint, screen
from tests.screening.factories import make_profile, no_red_flags

SHIPPED = load_conditions()
PAIRS = [
    pytest.param(cond, key, id=f"{cond.id}-{key}")
    for cond in SHIPPED.values()
    for key in cond.match.complaint_keys
]
CODES = [
    pytest.param(cond, code.code, id=f"{cond.id}-{code.code}")
    for cond in SHIPPED.values()
    for code in cond.codes.icd10cm
]


@pytest.mark.parametrize(("cond", "complaint"), PAIRS)
def test_each_shipped_condition_screens_for_each_of_its_complaints(
    cond: Condition, complaint: str
) -> None:
    assert fits_complaint(cond, complaint)
    result = screen(make_profile(complaint=complaint, condition_id=cond.id))
    (match,) = result.matches
    assert match.condition_id == cond.id and match.evidence_grade == cond.evidence_grade
    if cond.evidence_grade == "insufficient":
        assert [r.rule_id for r in result.reasons] == ["insufficient-evidence"]
        assert result.decision == "candidate_with_precautions"
    else:
        assert result.reasons == () and result.decision == "candidate"
    published = cond.protocol.status == "published"
    assert (result.suggested_protocol_condition_id == cond.id) is published
    assert result.instruments == cond.instruments


@pytest.mark.parametrize(("cond", "code"), CODES)
def test_each_listed_code_finds_its_condition(cond: Condition, code: str) -> None:
    result = screen(make_profile(complaint=None, icd10=code))
    assert cond.id in [m.condition_id for m in result.matches]


def test_a_specific_code_screens_against_the_specific_entry() -> None:
    assert "knee-osteoarthritis" in SHIPPED
    result = screen(make_profile(complaint="knee", icd10="M17.11"))
    assert [m.condition_id for m in result.matches] == ["knee-osteoarthritis"]


@pytest.mark.parametrize("complaint", sorted(COMPLAINT_KEYS))
def test_every_complaint_key_screens_without_error(complaint: str) -> None:
    result = screen(make_profile(complaint=complaint))
    assert result.decision in ("candidate", "candidate_with_precautions")
    assert all(fits_complaint(SHIPPED[m.condition_id], complaint) for m in result.matches)
    assert result == screen(make_profile(complaint=complaint))


@pytest.mark.parametrize("complaint", ["lower_back", "pelvis_buttock"])
def test_cauda_equina_signs_with_back_pain_refer(complaint: str) -> None:
    flags = {**no_red_flags(), "bladder_bowel_or_saddle_change": True}
    result = screen(make_profile(complaint=complaint, red_flags=flags))
    assert result.decision == "refer"
    assert result.reasons[0].rule_id == "cauda-equina-signs"


def test_a_knee_condition_id_with_a_shoulder_complaint_is_contradictory() -> None:
    assert "knee-osteoarthritis" in SHIPPED
    with pytest.raises(ScreeningInputError) as info:
        screen(make_profile(complaint="shoulder", condition_id="knee-osteoarthritis"))
    assert info.value.field == "condition_id"
