"""The bearer-token principal cache: what it serves, and that a change ends what it serves.

On PostgreSQL a NOTIFY empties it; on SQLite every hit is checked by the request's own
transaction against a trigger-kept counter.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, text

from prolo.app import create_app
from prolo.db import create_db_engine, make_sessionmaker, make_writer_sessionmaker, unit_of_work
from prolo.errors import Unauthenticated
from prolo.migrate import upgrade
from prolo.security import service
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
    assert hit is not None and hit.principal.user_id == 1
    assert hit.principal.source_ip == "10.1.1.1"


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


def test_sqlite_apps_cache_in_checked_mode(tmp_path: object) -> None:
    app = create_app(Settings(env="test", database_url=f"sqlite:///{tmp_path}/c.db"))
    cache = app.state.principal_cache
    assert cache is not None and cache.checked and cache.enabled
    cache.disable()  # no listener to lose: checked mode stays on
    assert cache.enabled


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


# -- SQLite: checked mode ------------------------------------------------------------


class _Statements:
    """The SQL an engine runs, to tell a cache hit from a token lookup."""

    def __init__(self, engine: Engine) -> None:
        self.seen: list[str] = []
        event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, _conn: object, _cursor: object, statement: str, *_: object) -> None:
        self.seen.append(statement)

    def take(self) -> list[str]:
        seen, self.seen = self.seen, []
        return seen


def _looked_up(statements: list[str]) -> bool:
    return any("api_token" in s and "token_hash" in s for s in statements)


def _checked(statements: list[str]) -> bool:
    return any(
        "security_generation" in s and s.lstrip().upper().startswith("SELECT") for s in statements
    )


@pytest.fixture
def sqlite_clinic(tmp_path: Path) -> Iterator[tuple[Settings, dict[str, object]]]:
    """A migrated SQLite file with a clinician, a patient and their tokens (committed)."""
    path = tmp_path / "checked.db"
    settings = Settings(env="test", database_url=f"sqlite:///{path}")
    engine = create_db_engine(settings)
    upgrade(engine)
    with unit_of_work(make_sessionmaker(engine)) as session:
        clinic = make_clinic(session)
        patient = make_patient(session, clinic)
        clinician = make_user(session, clinic, "clinician")
        other = make_user(session, clinic, "clinician")
        made = {
            "path": path,
            "clinician_id": clinician.id,
            "other_id": other.id,
            "headers": token_for(session, clinician),
            "patient_id": patient.id,
        }
    engine.dispose()
    yield settings, made


def _by_hand(path: object, sql: str, **params: object) -> None:
    """A change committed by another connection, as another process or a DBA would."""
    with sqlite3.connect(str(path)) as conn:
        conn.execute(sql, params)


def test_sqlite_hits_are_checked_by_the_requests_own_transaction(
    sqlite_clinic: tuple[Settings, dict[str, object]],
) -> None:
    settings, made = sqlite_clinic
    headers = made["headers"]
    app = create_app(settings)
    statements = _Statements(app.state.engine)
    with TestClient(app) as client:
        assert client.get("/api/patients", headers=headers).status_code == 200
        assert _looked_up(statements.take())  # first use: looked up, and cached
        assert client.get("/api/patients", headers=headers).status_code == 200
        second = statements.take()
        assert not _looked_up(second) and _checked(second)  # served, but checked

        # Another user changes (a failed login elsewhere): the counter moves, so the
        # token is looked up again in the request's transaction, and still serves.
        _by_hand(
            made["path"], "UPDATE app_user SET failed_logins = 1 WHERE id = :u", u=made["other_id"]
        )
        assert client.get("/api/patients", headers=headers).status_code == 200
        assert _looked_up(statements.take())
        assert client.get("/api/patients", headers=headers).status_code == 200
        assert not _looked_up(statements.take())  # cached again under the new value

        # Revoked by hand, as `prolo token revoke` in another process would: the very
        # next request is refused, with no data.
        _by_hand(made["path"], "UPDATE api_token SET revoked_at = '2026-01-01 00:00:00'")
        refused = client.get("/api/patients", headers=headers)
        assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
        assert "items" not in refused.json() and "Test" not in refused.text
        assert client.get("/api/patients", headers=headers).status_code == 401
    app.state.engine.dispose()


def test_sqlite_a_deactivated_user_or_changed_account_is_refused_at_once(
    sqlite_clinic: tuple[Settings, dict[str, object]],
) -> None:
    settings, made = sqlite_clinic
    headers = made["headers"]
    app = create_app(settings)
    with TestClient(app) as client:
        assert client.get("/api/patients", headers=headers).status_code == 200

        # The account changed under the cached principal: refused, then looked up anew.
        _by_hand(
            made["path"],
            "UPDATE app_user SET role = 'front_desk' WHERE id = :u",
            u=made["clinician_id"],
        )
        changed = client.get("/api/patients", headers=headers)
        assert changed.status_code == 401 and "changed" in changed.json()["detail"]
        assert client.get("/api/patients", headers=headers).status_code == 200  # as front desk

        _by_hand(
            made["path"], "UPDATE app_user SET active = 0 WHERE id = :u", u=made["clinician_id"]
        )
        assert client.get("/api/patients", headers=headers).status_code == 401
    app.state.engine.dispose()


def test_sqlite_a_refused_session_never_commits_even_if_the_error_is_caught(
    sqlite_clinic: tuple[Settings, dict[str, object]],
) -> None:
    settings, made = sqlite_clinic
    engine = create_db_engine(settings)
    factory = make_writer_sessionmaker(engine)
    service.check_cached_principals(factory)
    cache = PrincipalCache(checked=True)
    secret = str(made["headers"]["Authorization"]).removeprefix("Bearer ")  # type: ignore[index]
    with factory() as session:
        principal = service.principal_for_token(
            session=session, secret=secret, source_ip=None, cache=cache
        )
        assert principal is not None
        session.commit()
    hit = service.cached_token_principal(cache, secret=secret, source_ip=None)
    assert hit is not None and hit.principal == principal
    _by_hand(made["path"], "UPDATE api_token SET revoked_at = '2026-01-01 00:00:00'")

    with factory() as session:
        assert service.defer_check(session, cache, secret, hit)
        with pytest.raises(Unauthenticated):
            session.execute(text("SELECT 1"))  # the first statement runs the check
        session.execute(text("UPDATE clinic SET name = 'changed'"))  # a caught error...
        with pytest.raises(Unauthenticated):
            session.commit()  # ...still never commits
    with sqlite3.connect(str(made["path"])) as conn:
        assert conn.execute("SELECT count(*) FROM clinic WHERE name = 'changed'").fetchone() == (0,)
    assert service.cached_token_principal(cache, secret=secret, source_ip=None) is None

    # A request that never touched the database has its check run before it answers.
    with factory() as session:
        assert service.defer_check(session, cache, secret, hit)
        assert service.check_is_pending(session)
        with pytest.raises(Unauthenticated):
            service.confirm_pending(session)
    with factory() as session:
        session.execute(text("SELECT 1"))
        assert not service.defer_check(session, cache, secret, hit)  # begun: look it up
    engine.dispose()


def test_sqlite_triggers_raise_the_counter_and_postgresql_has_none(engine: Engine) -> None:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            names = (
                conn.execute(
                    text(
                        "SELECT name FROM sqlite_master WHERE type = 'trigger'"
                        " AND name LIKE '%security_generation'"
                    )
                )
                .scalars()
                .all()
            )
            assert len(names) == 4
        else:
            names = (
                conn.execute(
                    text("SELECT tgname FROM pg_trigger WHERE tgname LIKE '%security_generation'")
                )
                .scalars()
                .all()
            )
            assert names == []
        assert conn.execute(text("SELECT count(*) FROM security_generation")).scalar() == 1
