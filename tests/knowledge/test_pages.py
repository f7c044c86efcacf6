"""The public explorer pages, rendered by the app: what a visitor reads."""

from __future__ import annotations

import html
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from prolo.knowledge.loader import load_conditions
from prolo.knowledge.schemas import GRADE_LABELS, load_about
from tests.factories import PASSWORD, make_clinic, make_user

CONDITIONS = load_conditions()


def _text(page: str) -> str:
    """The page's visible text, roughly: tags dropped, entities decoded, spaces collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def _cards(page: str) -> list[str]:
    return re.findall(r'<li class="condition-card">(.*?)</li>', page, flags=re.S)


def test_the_list_shows_every_condition_with_its_grade_badge(client: TestClient) -> None:
    r = client.get("/conditions")
    assert r.status_code == 200
    cards = _cards(r.text)
    assert len(cards) == len(CONDITIONS)
    for cond in CONDITIONS.values():
        card = next(c for c in cards if f'href="/conditions/{cond.id}"' in c)
        label = GRADE_LABELS[cond.evidence_grade]
        assert f'class="grade grade-{cond.evidence_grade}">Evidence: {label}</span>' in card
        assert cond.lay_name in html.unescape(card)


def test_filter_by_region_and_words(client: TestClient) -> None:
    page = client.get("/conditions", params={"region": "elbow"}).text
    ids = re.findall(r'href="/conditions/([a-z0-9-]+)"', "".join(_cards(page)))
    assert "lateral-epicondylosis" in ids and "knee-osteoarthritis" not in ids
    assert all("elbow" in CONDITIONS[i].match.complaint_keys for i in ids)
    assert 'value="elbow" selected' in page

    page = client.get("/conditions", params={"q": "plantar"}).text
    assert [re.search(r'/conditions/([a-z0-9-]+)"', c)[1] for c in _cards(page)] == [  # type: ignore[index]
        "plantar-fasciitis"
    ]
    page = client.get("/conditions", params={"q": "zzz"}).text
    assert "No condition matches" in page and not _cards(page)


def test_unknown_filter_values_show_the_whole_list(client: TestClient) -> None:
    r = client.get("/conditions", params={"region": "tail", "grade": "superb"})
    assert r.status_code == 200 and len(_cards(r.text)) == len(CONDITIONS)


def test_a_condition_page_in_plain_language_with_studies_claims_and_limits(
    client: TestClient,
) -> None:
    cond = CONDITIONS["knee-osteoarthritis"]
    r = client.get(f"/conditions/{cond.id}")
    assert r.status_code == 200
    text = _text(r.text)
    assert cond.lay_name in text and cond.summary_patient.split(".")[0] in text
    for study in cond.studies:
        assert f'id="study-{study.id}"' in r.text
        if study.pmid:
            link = f'href="https://pubmed.ncbi.nlm.nih.gov/{study.pmid}/" rel="external'
            assert link in r.text
    assert text.count("(external site)") >= len([s for s in cond.studies if s.pmid or s.doi])
    for claim in cond.claims:
        assert claim.claim in text and claim.assessment.split(".")[0] in text
    assert "How it was given in the studies" in text and cond.protocol.injectate in text
    for statement in load_about().statements:
        assert statement.heading in text
    assert "not approved by the U.S. Food and Drug Administration" in text
    assert "not a diagnosis" in text


def test_an_insufficient_condition_says_nobody_knows(client: TestClient) -> None:
    text = _text(client.get("/conditions/hip-osteoarthritis").text)
    assert "Evidence: Insufficient" in text
    assert "No trial published a protocol" in text
    assert "nobody knows whether it helps" in text


@pytest.mark.parametrize("cid", sorted(CONDITIONS))
def test_every_condition_page_renders(client: TestClient, cid: str) -> None:
    r = client.get(f"/conditions/{cid}")
    assert r.status_code == 200
    # The CSP forbids inline scripts and styles; a page that used them would break.
    assert not re.search(r"<script(?![^>]*\bsrc=)", r.text)
    assert " style=" not in r.text


def test_an_unknown_condition_is_a_404_page(client: TestClient) -> None:
    r = client.get("/conditions/not-a-thing", headers={"accept": "text/html"})
    assert r.status_code == 404
    assert "text/html" in r.headers["content-type"]
    assert "list of conditions" in r.text


def test_a_logged_in_clinician_keeps_their_navigation(client: TestClient, session: Session) -> None:
    clinic = make_clinic(session)
    user = make_user(session, clinic, "clinician")
    page = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]  # type: ignore[index]
    r = client.post(
        "/login",
        data={"email": user.email, "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = client.get("/conditions").text
    assert 'href="/patients"' in page and "Log out" in page
