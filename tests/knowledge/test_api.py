"""The public knowledge API and the about file: every condition, its evidence, honest limits."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prolo.knowledge.loader import load_conditions
from prolo.knowledge.schema import COMPLAINT_KEYS
from prolo.knowledge.schemas import (
    ABOUT_FILE,
    AboutDataError,
    load_about,
    parse_about,
    search_conditions,
)
from prolo.security.models import AuditEvent

CONDITIONS = load_conditions()
GRADES = {"high", "moderate", "low", "very_low", "insufficient"}


def test_every_condition_is_listed_with_grade_codes_and_cited_evidence(
    client: TestClient,
) -> None:
    r = client.get("/api/conditions")
    assert r.status_code == 200
    items = r.json()
    assert sorted(i["id"] for i in items) == sorted(CONDITIONS)
    for item in items:
        cond = CONDITIONS[item["id"]]
        assert item["name"] == cond.lay_name
        assert item["evidence_grade"] == cond.evidence_grade
        assert item["evidence_grade"] in GRADES
        assert [c["code"] for c in item["icd10"]] == [c.code for c in cond.codes.icd10cm]
        assert item["icd10"], f"{item['id']} has no ICD-10-CM code"
        for study in item["evidence"]:
            assert study["pmid"] or study["doi"], study
        for study in item["other_sources"]:
            assert not study["pmid"] and not study["doi"] and study["url"].startswith("http")
        listed = [s["id"] for s in item["evidence"] + item["other_sources"]]
        assert sorted(listed) == sorted(s.id for s in cond.studies), "a study went missing"


def test_at_least_one_condition_cites_a_pmid_and_one_a_doi(client: TestClient) -> None:
    studies = [s for item in client.get("/api/conditions").json() for s in item["evidence"]]
    assert any(s["pmid"] for s in studies) and any(s["doi"] for s in studies)


def test_region_query_and_grade_filters(client: TestClient) -> None:
    knee = {i["id"] for i in client.get("/api/conditions", params={"region": "knee"}).json()}
    assert "knee-osteoarthritis" in knee and "meniscal-tear" in knee
    assert "lateral-epicondylosis" not in knee
    assert all("knee" in CONDITIONS[c].match.complaint_keys for c in knee)

    by_synonym = client.get("/api/conditions", params={"q": "Tennis Elbow"}).json()
    assert [i["id"] for i in by_synonym] == ["lateral-epicondylosis"]
    by_code = client.get("/api/conditions", params={"q": "m1711"}).json()
    assert "knee-osteoarthritis" in [i["id"] for i in by_code]

    insufficient = client.get("/api/conditions", params={"grade": "insufficient"}).json()
    assert insufficient and all(i["evidence_grade"] == "insufficient" for i in insufficient)
    assert client.get("/api/conditions", params={"q": "no such thing"}).json() == []


def test_bad_filter_values_name_the_parameter(client: TestClient) -> None:
    r = client.get("/api/conditions", params={"region": "elbowz"})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["field"] == "region"
    r = client.get("/api/conditions", params={"grade": "great"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "grade"


def test_one_condition_in_full(client: TestClient) -> None:
    r = client.get("/api/conditions/knee-osteoarthritis")
    assert r.status_code == 200
    body = r.json()
    cond = CONDITIONS["knee-osteoarthritis"]
    assert body["summary_patient"] == cond.summary_patient
    assert [s["id"] for s in body["studies"]] == [s.id for s in cond.studies]
    first = body["studies"][0]
    for key in ("design", "n_patients", "comparator", "main_result", "conclusion", "locator"):
        assert key in first
    assert [c["claim"] for c in body["claims"]] == [c.claim for c in cond.claims]
    assert body["protocol"]["status"] == cond.protocol.status
    assert [a["id"] for a in body["about"]] == [s.id for s in load_about().statements]


def test_an_insufficient_condition_says_so(client: TestClient) -> None:
    body = client.get("/api/conditions/hip-osteoarthritis").json()
    assert body["evidence_grade"] == "insufficient"
    assert body["protocol"] == {
        "status": "insufficient_evidence",
        "injectate": None,
        "dextrose_percent": None,
        "anaesthetic": None,
        "volume_per_site_ml": None,
        "sessions": None,
        "interval_weeks": None,
        "sources": [],
    }


@pytest.mark.parametrize("bad_id", ["no-such-condition", "KNEE-OSTEOARTHRITIS", "x" * 101])
def test_unknown_condition_is_a_problem_naming_the_id(client: TestClient, bad_id: str) -> None:
    r = client.get(f"/api/conditions/{bad_id}")
    assert r.status_code in (404, 422)
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["errors"][0]["field"] == "condition_id"
    if r.status_code == 404:
        assert bad_id in body["detail"] and body["condition_id"] == bad_id


def test_the_public_api_needs_no_login_and_writes_no_audit(
    client: TestClient, session: Session
) -> None:
    before = session.scalar(select(func.count(AuditEvent.id)))
    assert client.get("/api/conditions").status_code == 200
    assert client.get("/api/conditions/low-back-pain").status_code == 200
    assert client.get("/api/prolotherapy").status_code == 200
    assert session.scalar(select(func.count(AuditEvent.id))) == before


# --- What prolotherapy is and is not -------------------------------------------------

REQUIRED_STATEMENTS = {
    "what-it-is",
    "not-a-cure",
    "not-fda-approved",
    "several-sessions",
    "the-visit",
    "soreness-afterwards",
    "everyday-activity",
    "surgery-and-opioids",
}


def test_about_covers_every_statement_each_with_a_full_source(client: TestClient) -> None:
    body = client.get("/api/prolotherapy").json()
    assert {s["id"] for s in body["statements"]} == REQUIRED_STATEMENTS
    for statement in body["statements"]:
        assert statement["sources"], statement["id"]
        for src in statement["sources"]:
            assert src["url"].startswith("http") and src["locator"] and src["grade"]
    fda = next(s for s in body["statements"] if s["id"] == "not-fda-approved")
    assert "not approved" in fda["text"] and "FDA" in fda["text"]
    assert body["not_confirmed"], "the gaps must be stated, not hidden"


def test_every_number_in_a_statement_was_read_in_its_sources() -> None:
    for statement in load_about().statements:
        quoted = " ".join(src.locator for src in statement.sources)
        for number in re.findall(r"\d+(?:\.\d+)?", statement.text):
            assert number in quoted, f"{statement.id}: {number} is not in its sources' locators"


def test_practice_websites_are_named_as_such_and_never_alone_for_safety() -> None:
    about = load_about()
    for statement in about.statements:
        kinds = {src.kind for src in statement.sources}
        if kinds == {"practice_website"}:
            pytest.fail(f"{statement.id} rests on practices' own websites only")
        if "practice_website" in kinds:
            assert "practice" in statement.text.lower(), statement.id


def test_the_surgery_statement_still_holds_for_the_knowledge_base() -> None:
    """The page says no trial here compared prolotherapy with surgery; keep that true."""
    statement = next(s for s in load_about().statements if s.id == "surgery-and-opioids")
    assert "No trial in this knowledge base compared prolotherapy with surgery" in statement.text
    surgical = re.compile(r"\b(surgery|surgical|operation|operative|arthroscop\w*)\b", re.I)
    for cond in CONDITIONS.values():
        for study in cond.studies:
            comparator = study.comparator or ""
            if surgical.search(comparator) and "non-surgical" not in comparator.lower():
                pytest.fail(f"{cond.id}/{study.id} compares with surgery: update about.yaml")


def _about_data() -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(ABOUT_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["statements"][0]["sources"][0].update(ref="nobody"), "statements[0]"),
        (lambda d: d["statements"][1]["sources"][0].pop("locator"), "statements[1].sources[0]"),
        (lambda d: d["statements"][2].update(colour="red"), "statements.2.colour"),
        (lambda d: d["statements"][0].update(text=""), "statements.0.text"),
        (
            lambda d: d["references"]["cleveland-clinic"].update(kind="blog"),
            "statements[0].sources[1].kind",
        ),
        (lambda d: d["statements"].append(dict(d["statements"][0])), "statements"),
    ],
)
def test_a_malformed_about_file_fails_loudly_naming_the_field(change: Any, field: str) -> None:
    data = _about_data()
    change(data)
    with pytest.raises(AboutDataError) as err:
        parse_about(data)
    assert (
        err.value.field.replace("[", ".")
        .replace("]", "")
        .startswith(field.replace("[", ".").replace("]", ""))
    ), err.value


def test_search_ignores_case_and_dots_and_sorts_by_name() -> None:
    found = search_conditions(CONDITIONS, query="  KNEE ")
    names = [c.lay_name.casefold() for c in found]
    assert names == sorted(names) and found
    for key in COMPLAINT_KEYS:
        for cond in search_conditions(CONDITIONS, region=key):
            assert key in cond.match.complaint_keys


def test_a_condition_in_full_carries_its_pooled_evidence(client: TestClient) -> None:
    knee = client.get("/api/conditions/knee-osteoarthritis").json()
    (womac,) = knee["pooled_evidence"]
    assert womac["id"] == "womac-52w-vs-saline" and womac["measure"] == "MD"
    assert womac["k"] == 2 and [t["label"] for t in womac["trials"]] == ["Rabago 2013", "Sit 2020"]
    # 8.815 with a Hartung-Knapp interval of -3.28 to 20.91 (hand arithmetic in
    # test_pooling_data): the interval spans no effect.
    assert womac["pooled"]["estimate"] == 8.815 and womac["pooled"]["favours"] == "neither"
    assert "negated" in womac["trials"][1]["derivation"]
    back = client.get("/api/conditions/low-back-pain").json()["pooled_evidence"]
    by_id = {s["id"]: s for s in back}
    assert by_id["responders-6m-proliferant"]["pooled"]["estimate"] > 1  # a ratio, not its log
    assert by_id["pain-vas-6m-alone"]["pooled"] is None
    assert "cannot be combined" in by_id["pain-vas-6m-alone"]["note"]
    assert client.get("/api/conditions/neck-pain").json()["pooled_evidence"] == []
