"""The instrument API: catalog, scoring without storage, bad input, licensed wording."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prolo.instruments.catalog import instruments
from prolo.portal.models import QuestionnaireResponse, Score
from tests.factories import make_clinic, make_user, token_for

ODI = [f"odi-{n}" for n in range(1, 11)]


def _clinician(session: Session, **kw: object) -> dict[str, str]:
    return token_for(session, make_user(session, make_clinic(session), "clinician"), **kw)  # type: ignore[arg-type]


def _stored(session: Session) -> int:
    return (session.scalar(select(func.count(QuestionnaireResponse.id))) or 0) + (
        session.scalar(select(func.count(Score.id))) or 0
    )


def test_list_names_every_instrument_with_range_direction_mcid_and_licence(
    client: TestClient, session: Session
) -> None:
    r = client.get("/api/instruments", headers=_clinician(session))
    assert r.status_code == 200
    body = {i["id"]: i for i in r.json()}
    assert set(body) == set(instruments())
    nrs = body["pain-nrs"]
    assert nrs["loinc"] == "72514-3"
    assert nrs["licence"] == "public_domain"
    total = nrs["scores"][0]
    assert (total["low"], total["high"], total["direction"]) == (0, 10, "lower_is_better")
    assert total["mcid"]["value"] == 2
    assert "11690728" in total["mcid"]["source"]["source"]
    assert body["odi"]["loinc"] is None and body["odi"]["licence"] == "licensed"


def test_the_catalog_needs_a_login(client: TestClient) -> None:
    assert client.get("/api/instruments").status_code == 401


def test_describe_shows_items_and_whether_wording_is_loaded(
    client: TestClient, session: Session
) -> None:
    headers = _clinician(session)
    odi = client.get("/api/instruments/odi", headers=headers).json()
    assert odi["structure_only"] is True
    assert [i["link_id"] for i in odi["questionnaire_items"]] == ODI
    assert [o["ordinal"] for o in odi["questionnaire_items"][0]["options"]] == [0, 1, 2, 3, 4, 5]
    nrs = client.get("/api/instruments/pain-nrs", headers=headers).json()
    assert nrs["structure_only"] is False
    assert nrs["questionnaire_items"][0]["required"] is True


def test_scoring_follows_the_published_rule_and_stores_nothing(
    client: TestClient, session: Session
) -> None:
    headers = _clinician(session)
    # ODI: 100 x total / (5 x sections answered). All ten sections at 2: 100 x 20 / 50 = 40.
    r = client.post(
        "/api/instruments/odi/score", json={"answers": dict.fromkeys(ODI, 2)}, headers=headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["scores"][0] | {"name": None} == {
        "key": "total",
        "name": None,
        "value": 40.0,
        "low": 0.0,
        "high": 100.0,
        "direction": "lower_is_better",
        "items_answered": 10,
        "items_total": 10,
        "mcid": 10.0,
    }
    # One section missing is allowed: sections 1-9 at 3 -> 100 x 27 / 45 = 60.
    answers = dict.fromkeys(ODI[:9], 3) | {"odi-10": None}
    r = client.post("/api/instruments/odi/score", json={"answers": answers}, headers=headers)
    assert r.json()["scores"][0]["value"] == 60.0
    assert r.json()["scores"][0]["items_answered"] == 9
    # PRTEE subscales: pain = 5 x 4 = 20; function = 10 x 3 / 2 = 15; total 35.
    prtee = {f"prtee-pain-{n}": 4 for n in range(1, 6)} | {
        f"prtee-function-{n}": 3 for n in range(1, 11)
    }
    r = client.post("/api/instruments/prtee/score", json={"answers": prtee}, headers=headers)
    assert {s["key"]: s["value"] for s in r.json()["scores"]} == {
        "total": 35.0,
        "pain": 20.0,
        "function": 15.0,
    }
    assert _stored(session) == 0


def test_a_read_only_token_may_score(client: TestClient, session: Session) -> None:
    headers = _clinician(session, scopes=("read",))
    r = client.post(
        "/api/instruments/pain-nrs/score", json={"answers": {"pain-nrs": 3}}, headers=headers
    )
    assert r.status_code == 200
    assert r.json()["scores"][0]["value"] == 3


def _problem(r: object) -> dict[str, object]:
    assert r.status_code == 422, r.text  # type: ignore[attr-defined]
    assert r.headers["content-type"].startswith("application/problem+json")  # type: ignore[attr-defined]
    return r.json()  # type: ignore[attr-defined,no-any-return]


def test_bad_answers_are_422_naming_the_item(client: TestClient, session: Session) -> None:
    headers = _clinician(session)
    url = "/api/instruments/pain-nrs/score"
    out_of_range = _problem(client.post(url, json={"answers": {"pain-nrs": 11}}, headers=headers))
    assert out_of_range["item"] == "pain-nrs"
    assert out_of_range["errors"] == [
        {"field": "answers.pain-nrs", "message": out_of_range["detail"]}
    ]
    assert "between 0 and 10" in str(out_of_range["detail"])
    wrong_type = _problem(client.post(url, json={"answers": {"pain-nrs": "7"}}, headers=headers))
    assert wrong_type["item"] == "pain-nrs" and "number" in str(wrong_type["detail"])
    boolean = _problem(client.post(url, json={"answers": {"pain-nrs": True}}, headers=headers))
    assert boolean["item"] == "pain-nrs"
    fraction = _problem(client.post(url, json={"answers": {"pain-nrs": 6.5}}, headers=headers))
    assert "whole number" in str(fraction["detail"])
    unknown = _problem(client.post(url, json={"answers": {"pain": 3}}, headers=headers))
    assert unknown["item"] == "pain"
    missing = _problem(client.post(url, json={"answers": {"pain-nrs": None}}, headers=headers))
    assert missing["item"] == "pain-nrs" and "required" in str(missing["detail"])
    between = _problem(
        client.post("/api/instruments/pgic/score", json={"answers": {"pgic": 0}}, headers=headers)
    )
    assert between["item"] == "pgic"
    assert _stored(session) == 0


def test_too_many_missing_items_is_not_scorable(client: TestClient, session: Session) -> None:
    headers = _clinician(session)
    answers = dict.fromkeys(ODI[:8], 1)  # two of ten sections missing: the ODI allows one
    body = _problem(
        client.post("/api/instruments/odi/score", json={"answers": answers}, headers=headers)
    )
    assert str(body["detail"]).startswith("not scorable")
    assert body["errors"]
    assert all(str(e["field"]).startswith("answers") for e in body["errors"])  # type: ignore[union-attr,index]
    empty = _problem(
        client.post("/api/instruments/odi/score", json={"answers": {}}, headers=headers)
    )
    assert "not scorable" in str(empty["detail"])


def test_unknown_instrument_is_404_naming_it(client: TestClient, session: Session) -> None:
    headers = _clinician(session)
    r = client.post("/api/instruments/nope/score", json={"answers": {}}, headers=headers)
    assert r.status_code == 404
    assert r.json()["errors"][0]["field"] == "instrument_id"
    assert client.get("/api/instruments/nope", headers=headers).status_code == 404


def test_an_admin_loads_licensed_wording_for_their_clinic_only(
    client: TestClient, session: Session
) -> None:
    clinic, other = make_clinic(session), make_clinic(session)
    admin = token_for(session, make_user(session, clinic, "admin"))
    wording = {"items": {"odi-1": {"text": "Licensed section one", "answers": {"0": "Zero"}}}}
    r = client.put("/api/instruments/odi/licensed-text", json=wording, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["complete"] is False  # nine sections still show neutral labels
    mine = client.get("/api/instruments/odi", headers=admin).json()
    assert mine["questionnaire_items"][0]["text"] == "Licensed section one"
    assert mine["questionnaire_items"][0]["options"][0]["display"] == "Zero"
    assert mine["structure_only"] is True
    theirs = client.get(
        "/api/instruments/odi", headers=token_for(session, make_user(session, other, "admin"))
    ).json()
    assert theirs["questionnaire_items"][0]["text"] == "ODI section 1"
    # The whole questionnaire worded: the structure-only note goes away.
    full = {"items": {item: f"Section {item}" for item in ODI}}
    r = client.put("/api/instruments/odi/licensed-text", json=full, headers=admin)
    assert r.json()["complete"] is True
    assert client.get("/api/instruments/odi", headers=admin).json()["structure_only"] is False


def test_licensed_wording_is_checked_before_it_is_stored(
    client: TestClient, session: Session
) -> None:
    clinic = make_clinic(session)
    admin = token_for(session, make_user(session, clinic, "admin"))
    bad = {"items": {"odi-99": "x", "odi-1": {"text": "ok", "answers": {"9": "nine"}}}}
    r = client.put("/api/instruments/odi/licensed-text", json=bad, headers=admin)
    body = _problem(r)
    messages = [e["message"] for e in body["errors"]]  # type: ignore[union-attr]
    assert "unknown linkId 'odi-99'" in messages
    assert "odi-1: unknown answer code '9'" in messages
    clinician = token_for(session, make_user(session, clinic, "clinician"))
    r = client.put(
        "/api/instruments/odi/licensed-text", json={"items": {"odi-1": "x"}}, headers=clinician
    )
    assert r.status_code == 403
    assert client.get("/api/instruments/odi", headers=admin).json()["structure_only"] is True
