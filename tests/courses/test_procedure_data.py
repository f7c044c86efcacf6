"""The injection site list and the aftercare advice: complete, consistent, sourced."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from prolo.courses import procedures
from prolo.courses.procedure_schemas import VOLUME_TOLERANCE_ML, ProcedureIn
from prolo.knowledge import load_conditions
from prolo.knowledge.schema import BodyRegion
from tests.courses.test_procedure_api import record


def test_every_body_region_of_the_knowledge_base_has_sites() -> None:
    catalog = procedures.load_injection_sites()
    assert set(catalog.regions) == set(get_args(BodyRegion)) - {"multiple"}
    conditions = load_conditions()
    used = {c.body_region for c in conditions.values()}
    for region in used:
        assert catalog.sites_for(region), region
    # "multiple" offers every site, each once.
    every = [s.id for s in catalog.sites_for("multiple")]
    assert len(every) == len(set(every)) == sum(len(r.sites) for r in catalog.regions.values())


def test_every_citation_points_at_a_study_of_a_condition_in_that_region() -> None:
    catalog = procedures.load_injection_sites()
    conditions = load_conditions()
    cited = 0
    for region, entry in catalog.regions.items():
        for site in entry.sites:
            for citation in site.cited_in:
                condition = conditions[citation.condition]
                assert condition.body_region == region, (site.id, citation.condition)
                assert citation.study_id in {s.id for s in condition.studies}, site.id
                cited += 1
    assert cited >= 10


def test_a_broken_site_file_fails_naming_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "sites.yaml"
    bad.write_text(
        "version: 1\nregions:\n  knee:\n    label: Knee\n    sites:\n      - {id: a, label: Abc}\n"
    )
    with pytest.raises(ValidationError, match="no sites for body region"):
        procedures.load_injection_sites.__wrapped__(bad)


def test_aftercare_advice_carries_its_source() -> None:
    for advice in procedures.AFTERCARE:
        assert advice.source and advice.locator and advice.grade in ("primary", "secondary")
        assert advice.url.startswith("https://")
    assert {a.id for a in procedures.AFTERCARE} == {
        "normal_activity",
        "expected_inflammation",
        "pain_advice",
        "when_to_call",
    }


volumes = st.lists(
    st.decimals(min_value="0.1", max_value="20", places=1).map(float), min_size=1, max_size=8
)


@settings(max_examples=60, deadline=None)
@given(volumes=volumes, off=st.sampled_from([-1.0, -0.2, 0.0, 0.2, 1.0]))
def test_site_volumes_must_add_up_to_the_total(volumes: list[float], off: float) -> None:
    total = round(sum(volumes) + off, 3)
    body = record(
        sites=[{"site_id": "knee-intra-articular", "side": "left", "volume_ml": v} for v in volumes]
    )
    body["injectate"]["total_volume_ml"] = total
    if total <= 0 or total > 200:
        return
    if abs(off) <= VOLUME_TOLERANCE_ML:
        ProcedureIn.model_validate(body)
    else:
        with pytest.raises(ValidationError, match="add up to"):
            ProcedureIn.model_validate(body)
