"""Every condition file loads, cites its figures, and uses valid codes.

The shipped-folder tests read every file in ``data/conditions``, whoever wrote it,
so a new file is covered the moment it lands.
"""

from __future__ import annotations

import copy
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from prolo.knowledge import loader
from prolo.knowledge.loader import (
    CONDITIONS_DIR,
    KnowledgeError,
    conditions_for_complaint,
    conditions_for_icd10,
    get_condition,
    load_conditions,
    load_directory,
    load_file,
)
from prolo.knowledge.schema import Condition, icd10cm_description, is_billable_icd10cm

FILES = sorted(CONDITIONS_DIR.glob("*.yaml"))
MINE = (
    "arthritis",
    "osteoarthritis",
    "knee-osteoarthritis",
    "hip-osteoarthritis",
    "hand-osteoarthritis",
    "knee-pain",
    "meniscal-tear",
    "low-back-pain",
    "mid-back-pain",
    "degenerative-disc-disease",
    "sacroiliac-joint-dysfunction",
    "neck-pain",
)

VALID: dict[str, Any] = {
    "id": "sample-condition",
    "version": 1,
    "reviewed": "2026-11-24",
    "lay_name": "Sample pain",
    "clinical_name": "Sample condition",
    "body_region": "knee",
    "codes": {"icd10cm": [{"code": "M17.11", "display": icd10cm_description("M17.11")}]},
    "evidence_grade": "low",
    "grade_reason": "Starts high (one RCT); down two for imprecision and risk of bias.",
    "summary_patient": "A plain paragraph for a patient, long enough to say something.",
    "summary_clinician": "A paragraph for a clinician, long enough to say something useful.",
    "studies": [
        {
            "id": "author-2013",
            "design": "rct",
            "first_author": "Author",
            "year": 2013,
            "journal": "Journal",
            "pmid": None,
            "doi": None,
            "url": "https://example.org/abstract",
            "locator": "Abstract",
            "grade": "primary",
            "n_patients": 90,
            "main_result": "Improved more than control.",
            "conclusion": "May help.",
        }
    ],
    "claims": [{"claim": "Cures it", "assessment": "No.", "study_ids": ["author-2013"]}],
    "protocol": {"status": "insufficient_evidence"},
    "instruments": ["pain-nrs"],
    "match": {"icd10_prefixes": ["M17"], "complaint_keys": ["knee"]},
}


def write(tmp_path: Path, data: dict[str, Any], stem: str | None = None) -> Path:
    path = tmp_path / f"{stem or data['id']}.yaml"
    # Dump the date as YAML would be written by hand (unquoted), so strict date
    # parsing sees a date, as it does for the shipped files.
    text = yaml.safe_dump(data, sort_keys=False).replace("'2026-11-24'", "2026-11-24")
    path.write_text(text, encoding="utf-8")
    return path


def mutated(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(VALID)
    data.update(changes)
    return data


# --- the shipped folder ----------------------------------------------------------


def test_folder_is_not_empty_and_holds_my_conditions() -> None:
    ids = {p.stem for p in FILES}
    assert set(MINE) <= ids


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_file_loads(path: Path) -> None:
    cond = load_file(path)
    assert cond.id == path.stem


def test_whole_folder_loads_with_parents_resolved() -> None:
    conditions = load_directory(CONDITIONS_DIR)
    assert list(conditions) == sorted(p.stem for p in FILES)
    for cond in conditions.values():
        if cond.parent is not None:
            assert cond.parent in conditions


@cache
def _loaded(path: Path) -> Condition:
    # Validate each shipped file once per session; the per-file tests only read it.
    return load_file(path)


def _raw(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_study_names_where_it_was_read(path: Path) -> None:
    for study in _loaded(path).studies:
        assert study.url.startswith(("https://", "http://")), study.id
        assert study.locator.strip(), study.id
        assert study.grade in ("primary", "secondary"), study.id
        assert study.pmid or study.doi or study.url, study.id


# Numeric leaves allowed outside a study entry: bookkeeping and a published protocol
# (whose figures are tied to ``protocol.sources``).
_NUMERIC_OK_TOP = {"version", "reviewed"}


def _numeric_leaves(node: Any, path: str) -> list[str]:
    if isinstance(node, bool):
        return []
    if isinstance(node, int | float):
        return [path]
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _numeric_leaves(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [leaf for i, v in enumerate(node) for leaf in _numeric_leaves(v, f"{path}[{i}]")]
    return []


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_figure_sits_next_to_its_source(path: Path) -> None:
    raw = _raw(path)
    cond = _loaded(path)
    for key, value in raw.items():
        if key in _NUMERIC_OK_TOP or key == "studies":
            continue  # a study carries url, locator and grade for all its figures
        if key == "protocol":
            if _numeric_leaves(value, key):
                assert cond.protocol.status == "published"
                assert cond.protocol.sources, "protocol figures without sources"
            continue
        assert _numeric_leaves(value, key) == [], f"figure outside a study in {key}"
    for code in cond.codes.snomed:
        assert code.url and code.locator


_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w])")


def _study_text(cond: Condition) -> str:
    parts: list[str] = []
    for study in cond.studies:
        parts.append(study.model_dump_json())
    parts.append(cond.protocol.model_dump_json())
    return " ".join(parts)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_figures_in_prose_come_from_a_study_in_the_same_file(path: Path) -> None:
    """A number in a summary, grade reason or claim must also appear in a study entry
    or the protocol of the same file, so every figure a patient reads has a source."""
    cond = _loaded(path)
    sourced = set(_NUMBER.findall(_study_text(cond)))
    prose = [cond.summary_patient, cond.summary_clinician, cond.grade_reason]
    prose += [c.assessment for c in cond.claims]
    for text in prose:
        for number in _NUMBER.findall(text):
            assert number in sourced, f"{number!r} in prose has no source in {path.name}"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_icd10_codes_are_billable(path: Path) -> None:
    for code in _loaded(path).codes.icd10cm:
        assert is_billable_icd10cm(code.code), code.code


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_each_listed_code_is_matched_by_its_condition(path: Path) -> None:
    cond = _loaded(path)
    for code in cond.codes.icd10cm:
        assert cond in conditions_for_icd10(code.code)


def test_insufficient_conditions_still_explain_themselves() -> None:
    for cond in load_conditions().values():
        if cond.evidence_grade == "insufficient":
            assert cond.summary_patient and cond.summary_clinician
            assert "insufficient" in cond.grade_reason.lower() or "no " in cond.grade_reason


# --- the lookup functions --------------------------------------------------------


def test_get_condition_unknown_id_raises_key_error_naming_it() -> None:
    with pytest.raises(KeyError, match="no-such-condition"):
        get_condition("no-such-condition")


def test_get_condition_returns_the_loaded_entry() -> None:
    assert get_condition("knee-osteoarthritis").id == "knee-osteoarthritis"


def test_load_conditions_is_cached_but_returns_a_fresh_dict() -> None:
    first = load_conditions()
    first.pop("knee-osteoarthritis")
    second = load_conditions()
    assert "knee-osteoarthritis" in second
    assert second["low-back-pain"] is load_conditions()["low-back-pain"]


def test_conditions_for_icd10_most_specific_first_and_dot_optional() -> None:
    found = [c.id for c in conditions_for_icd10("M17.11")]
    # exact code, then the parent chain from the most specific entry upwards
    assert found == ["knee-osteoarthritis", "osteoarthritis", "arthritis"]
    assert found == [c.id for c in conditions_for_icd10("m1711")]
    assert conditions_for_icd10("Z00.00") == []


def test_conditions_for_complaint() -> None:
    ids = {c.id for c in conditions_for_complaint("lower_back")}
    assert "low-back-pain" in ids
    assert "neck-pain" not in ids
    with pytest.raises(ValueError, match="elbow_left"):
        conditions_for_complaint("elbow_left")


# --- malformed files fail loudly, naming the file and field ----------------------


def test_the_valid_sample_loads(tmp_path: Path) -> None:
    cond = load_file(write(tmp_path, VALID))
    assert cond.studies[0].n_patients == 90
    assert isinstance(cond.studies, tuple)


def _fails(tmp_path: Path, data: dict[str, Any], field: str, stem: str | None = None) -> str:
    path = write(tmp_path, data, stem)
    with pytest.raises(KnowledgeError) as info:
        load_file(path)
    message = str(info.value)
    assert path.name in message
    assert field in message
    return message


def test_unknown_key_fails(tmp_path: Path) -> None:
    _fails(tmp_path, mutated(efficacy="great"), "efficacy")


def test_missing_url_fails_naming_the_study_field(tmp_path: Path) -> None:
    data = mutated()
    del data["studies"][0]["url"]
    assert "studies[0].url" in _fails(tmp_path, data, "studies[0].url")


def test_wrong_type_fails(tmp_path: Path) -> None:
    data = mutated()
    data["studies"][0]["pmid"] = 23690315  # unquoted: YAML makes it an int
    _fails(tmp_path, data, "studies[0].pmid")


def test_id_must_equal_file_stem(tmp_path: Path) -> None:
    _fails(tmp_path, VALID, "id", stem="other-name")


def test_invalid_icd_code_fails(tmp_path: Path) -> None:
    data = mutated(codes={"icd10cm": [{"code": "M17.1", "display": "Unilateral"}]})
    message = _fails(tmp_path, data, "codes.icd10cm[0]")
    assert "billable" in message


def test_icd_display_must_be_official(tmp_path: Path) -> None:
    data = mutated(codes={"icd10cm": [{"code": "M17.11", "display": "Knee arthritis"}]})
    _fails(tmp_path, data, "codes.icd10cm[0]")


def test_repeated_study_id_fails(tmp_path: Path) -> None:
    data = mutated()
    data["studies"].append(copy.deepcopy(data["studies"][0]))
    assert "author-2013" in _fails(tmp_path, data, "study ids")


def test_claim_must_cite_a_known_study(tmp_path: Path) -> None:
    data = mutated(claims=[{"claim": "x", "assessment": "y", "study_ids": ["ghost-2020"]}])
    assert "ghost-2020" in _fails(tmp_path, data, "claims[0]")


def test_protocol_source_must_be_a_known_study(tmp_path: Path) -> None:
    protocol = {
        "status": "published",
        "injectate": "25% dextrose",
        "dextrose_percent": {"low": 25, "high": 25},
        "sources": [{"study_id": "ghost-2020", "locator": "Methods"}],
    }
    assert "sources[0]" in _fails(tmp_path, mutated(protocol=protocol), "protocol")


def test_insufficient_protocol_must_have_null_fields(tmp_path: Path) -> None:
    protocol = {"status": "insufficient_evidence", "sessions": {"low": 3, "high": 5}}
    assert "sessions" in _fails(tmp_path, mutated(protocol=protocol), "protocol")


def test_insufficient_grade_still_needs_summaries(tmp_path: Path) -> None:
    data = mutated(evidence_grade="insufficient", studies=[], claims=[], summary_patient="")
    _fails(tmp_path, data, "summary_patient")


def test_a_grade_above_insufficient_needs_a_study(tmp_path: Path) -> None:
    _fails(tmp_path, mutated(studies=[], claims=[]), "evidence_grade")


def test_instrument_ids_must_be_kebab_case(tmp_path: Path) -> None:
    _fails(tmp_path, mutated(instruments=["Pain_NRS"]), "instruments[0]")


def test_effect_interval_must_be_ordered(tmp_path: Path) -> None:
    data = mutated()
    data["studies"][0]["effect"] = {
        "measure": "MD",
        "value": 1.0,
        "ci_low": 2.0,
        "ci_high": 0.5,
        "unit": "points",
        "favours": "prolotherapy",
    }
    _fails(tmp_path, data, "studies[0].effect")


def test_not_yaml_mapping_fails(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(KnowledgeError, match="broken.yaml"):
        load_file(path)


def test_invalid_yaml_fails_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad-syntax.yaml"
    path.write_text("id: [unclosed\n", encoding="utf-8")
    with pytest.raises(KnowledgeError, match=r"bad-syntax\.yaml: not valid YAML"):
        load_file(path)


def test_unknown_parent_fails_at_directory_load(tmp_path: Path) -> None:
    write(tmp_path, mutated(parent="ghost-condition"))
    with pytest.raises(KnowledgeError, match=r"sample-condition\.yaml: parent: .*ghost"):
        load_directory(tmp_path)


def test_parent_cycle_fails(tmp_path: Path) -> None:
    write(tmp_path, mutated(id="a-cond", parent="b-cond"))
    write(tmp_path, mutated(id="b-cond", parent="a-cond"))
    with pytest.raises(KnowledgeError, match="cycle"):
        load_directory(tmp_path)


def test_shipped_cache_is_the_default_folder() -> None:
    assert loader.CONDITIONS_DIR.name == "conditions"


def test_every_recommended_instrument_exists_in_the_catalog() -> None:
    from prolo.instruments.catalog import instruments

    known = set(instruments())
    unknown = {
        (cond.id, instrument)
        for cond in load_conditions().values()
        for instrument in cond.instruments
        if instrument not in known
    }
    assert unknown == set()
