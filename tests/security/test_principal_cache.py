"""The bearer-token principal cache: what it serves, and that a change empties it."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from prolo.app import create_app
from prolo.db import create_db_engine, make_sessionmaker, unit_of_work
from prolo.migrate import upgrade
from prolo.security.principal import Principal
from prolo.security.principal_cache import PrincipalCache
from prolo.settings import Settings
from tests.conftest import fresh_postgres_url
from tests.factories import make_clinic, make_patient, make_user, token_for

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
ALICE = Principal(user_id=1, role="clinician", clinic_id=1, display_name="A", via="token")


def _cache(**kw: float) -> PrincipalCache:
    cache = PrincipalCache(**kw)  # type: ignore[arg-type]
    cache.enable()
    return cache


def test_serves_a_stored_principal_with_this_requests_address() -> None:
    cache = _cache()
    cache.put("d", ALICE, token_expires=NOW + dt.timedelta(days=1), generation=cache.generation)
    hit = cache.get("d", now=NOW, source_ip="10.1.1.1")
    assert hit is not None and hit.user_id == 1 and hit.source_ip == "10.1.1.1"


def test_nothing_is_served_or_kept_while_disabled() -> None:
    cache = PrincipalCache()
    cache.put("d", ALICE, token_expires=NOW + dt.timedelta(days=1), generation=cache.generation)
    assert cache.get("d", now=NOW, source_ip=None) is None
    cache.enable()
    assert cache.get("d", now=NOW, source_ip=None) is None  # enabling starts empty


def test_an_entry_ends_with_its_token_and_its_time_to_live() -> None:
    cache = _cache(ttl=0.05)
    cache.put("d", ALICE, token_expires=NOW + dt.timedelta(minutes=1), generation=cache.generation)
    assert cache.get("d", now=NOW + dt.timedelta(minutes=2), source_ip=None) is None
    cache.put("d", ALICE, token_expires=NOW + dt.timedelta(days=1), generation=cache.generation)
    time.sleep(0.06)
    assert cache.get("d", now=NOW, source_ip=None) is None


def test_a_lookup_from_before_a_change_is_not_stored_after_it() -> None:
    cache = _cache()
    before = cache.generation  # a request starts its lookup
    cache.clear()  # a revocation's notification arrives meanwhile
    cache.put("d", ALICE, token_expires=NOW + dt.timedelta(days=1), generation=before)
    assert cache.get("d", now=NOW, source_ip=None) is None


def test_it_keeps_at_most_max_entries() -> None:
    cache = _cache(max_entries=2)
    for key in "abc":
        cache.put(key, ALICE, token_expires=NOW + dt.timedelta(days=1), generation=cache.generation)
    assert cache.get("a", now=NOW, source_ip=None) is None
    assert cache.get("c", now=NOW, source_ip=None) is not None


def test_sqlite_apps_do_not_cache(tmp_path: object) -> None:
    app = create_app(Settings(env="test", database_url=f"sqlite:///{tmp_path}/c.db"))
    assert app.state.principal_cache is None


@pytest.fixture
def listening_db() -> str:
    """A migrated PostgreSQL database of this test's own (its data is committed)."""
    url = fresh_postgres_url("listen")
    engine = create_db_engine(Settings(env="test", database_url=url))
    upgrade(engine)
    engine.dispose()
    return url


def _wait_for(condition: object, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_a_revoked_token_or_deactivated_user_stops_at_once_on_postgresql(
    listening_db: str,
) -> None:
    settings = Settings(env="test", database_url=listening_db)
    engine = create_db_engine(settings)
    with unit_of_work(make_sessionmaker(engine)) as session:
        clinic = make_clinic(session)
        patient = make_patient(session, clinic)
        first_user = make_user(session, clinic, "patient", patient=patient)
        first = token_for(session, first_user)
        second_user = make_user(session, clinic, "clinician")
        second = token_for(session, second_user)
        pid, first_user_id, second_id = patient.id, first_user.id, second_user.id
    app = create_app(settings)
    cache = app.state.principal_cache
    with TestClient(app) as client:
        assert _wait_for(lambda: cache.enabled), "the listener never started listening"
        assert client.get(f"/api/patients/{pid}/responses", headers=first).status_code == 200
        generation = cache.generation
        assert client.get(f"/api/patients/{pid}/responses", headers=first).status_code == 200
        assert len(cache._entries) == 1 and cache.generation == generation  # served cached

        # The listener's connection dies: the cache empties and serves nothing until
        # the listener is back (a notification could have been missed meanwhile).
        generation = cache.generation
        with engine.begin() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query LIKE 'LISTEN%'"
                )
            )
        assert _wait_for(lambda: cache.generation > generation and not cache._entries)
        assert _wait_for(lambda: cache.enabled), "the listener did not come back"
        assert client.get(f"/api/patients/{pid}/responses", headers=first).status_code == 200
        generation = cache.generation

        with engine.begin() as conn:  # revoked by hand, as from another process
            conn.execute(
                text("UPDATE api_token SET revoked_at = now() WHERE user_id = :u"),
                {"u": first_user_id},
            )
        assert _wait_for(lambda: cache.generation > generation), "no notification arrived"
        assert client.get(f"/api/patients/{pid}/responses", headers=first).status_code == 401

        assert client.get("/api/patients", headers=second).status_code == 200
        assert client.get("/api/patients", headers=second).status_code == 200  # cached
        generation = cache.generation
        with engine.begin() as conn:
            conn.execute(text("UPDATE app_user SET active = false WHERE id = :u"), {"u": second_id})
        assert _wait_for(lambda: cache.generation > generation), "no notification arrived"
        assert client.get("/api/patients", headers=second).status_code == 401
    assert not cache.enabled  # the listener stopped with the app: nothing is served
    engine.dispose()
