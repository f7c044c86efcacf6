"""Accounts, logins, browser sessions and API tokens."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, Select, bindparam, event, select
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from prolo.db import utcnow
from prolo.errors import Conflict, NotFound, Unauthenticated, ValidationFailed
from prolo.security import audit
from prolo.security.models import ROLES, ApiToken, SecurityGeneration, User, WebSession
from prolo.security.passwords import (
    DUMMY_HASH,
    hash_password,
    needs_rehash,
    password_problem,
    verify_password,
)
from prolo.security.principal import Principal
from prolo.security.principal_cache import Cached, PrincipalCache

MAX_FAILED_LOGINS = 5
LOCKOUT = dt.timedelta(minutes=15)
TOKEN_PREFIX = "prolo_"  # noqa: S105  (a prefix, not a secret)
API_SCOPES = ("read", "write", "fhir", "bulk", "admin")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def normalize_email(email: str) -> str:
    """Emails compare case-insensitively; stored lower-cased and trimmed."""
    return email.strip().lower()


def create_user(
    *,
    session: Session,
    clinic_id: int,
    email: str,
    password: str,
    role: str,
    display_name: str,
    patient_id: int | None = None,
    practitioner_id: int | None = None,
    actor: audit.Actor = audit.SYSTEM,
) -> User:
    """Create a login; raises ValidationFailed naming the field, Conflict on a taken email."""
    email = normalize_email(email)
    if "@" not in email or len(email) > 254:
        raise ValidationFailed("must be an email address", field="email")
    if role not in ROLES:
        raise ValidationFailed(f"must be one of {', '.join(ROLES)}", field="role")
    if (role == "patient") != (patient_id is not None):
        raise ValidationFailed(
            "a patient account needs its patient record, and only a patient account has one",
            field="patient_id",
        )
    problem = password_problem(password, email=email)
    if problem:
        raise ValidationFailed(f"password {problem}", field="password")
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict("an account with this email already exists", field="email")
    user = User(
        clinic_id=clinic_id,
        email=email,
        display_name=display_name,
        password_hash=hash_password(password),
        role=role,
        patient_id=patient_id,
        practitioner_id=practitioner_id,
    )
    session.add(user)
    session.flush()
    audit.record(
        session, actor, action="C", event="user.create", entity_type="User", entity_id=user.id
    )
    return user


@dataclass(frozen=True)
class LoginResult:
    """The outcome of a login attempt; ``user`` is set only on success."""

    user: User | None
    reason: str | None = None  # "bad_credentials" | "locked" | "inactive"


def authenticate(
    *, session: Session, email: str, password: str, source_ip: str | None
) -> LoginResult:
    """Check a password login, counting failures and locking after too many.

    Never raises for bad credentials: the failure count must be committed.
    """
    now = utcnow()
    user = session.scalar(select(User).where(User.email == normalize_email(email)))
    if user is None:
        verify_password(DUMMY_HASH, password)  # same cost as a real check
        audit.record(
            session,
            audit.Actor(None, None, None, source_ip),
            action="E",
            event="login",
            entity_type="User",
            outcome="4",
            detail="unknown account",
        )
        return LoginResult(None, "bad_credentials")
    actor = audit.Actor(user.id, user.role, user.clinic_id, source_ip)
    if user.locked_until is not None and user.locked_until > now:
        audit.record(
            session,
            actor,
            action="E",
            event="login",
            entity_type="User",
            entity_id=user.id,
            outcome="4",
            detail="locked",
        )
        return LoginResult(None, "locked")
    if not verify_password(user.password_hash, password):
        user.failed_logins += 1
        if user.failed_logins >= MAX_FAILED_LOGINS:
            user.locked_until = now + LOCKOUT
            user.failed_logins = 0
        audit.record(
            session,
            actor,
            action="E",
            event="login",
            entity_type="User",
            entity_id=user.id,
            outcome="4",
            detail="bad password",
        )
        return LoginResult(None, "bad_credentials")
    if not user.active:
        return LoginResult(None, "inactive")
    user.failed_logins = 0
    user.locked_until = None
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    audit.record(session, actor, action="E", event="login", entity_type="User", entity_id=user.id)
    return LoginResult(user)


def start_web_session(*, session: Session, user: User, hours: int) -> tuple[str, WebSession]:
    """Open a browser session; returns the cookie secret (shown once) and the row."""
    secret = secrets.token_urlsafe(32)
    row = WebSession(
        id=_digest(secret),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(24),
        expires_at=utcnow() + dt.timedelta(hours=hours),
    )
    session.add(row)
    session.flush()
    return secret, row


def end_web_session(*, session: Session, secret: str) -> None:
    """Revoke the session behind a cookie so a copy of it stops working too."""
    row = session.get(WebSession, _digest(secret))
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()


_USER = User.__table__.c
_TOKEN = ApiToken.__table__.c
_WEB_SESSION = WebSession.__table__.c
_PRINCIPAL_COLUMNS = (
    _USER.id,
    _USER.role,
    _USER.clinic_id,
    _USER.display_name,
    _USER.patient_id,
    _USER.practitioner_id,
)
# One statement per request for each kind of credential: the credential and its
# user, both still valid, in one indexed lookup. Core, not ORM: this runs on every
# authenticated request, and loading two ORM objects cost several times as much.
_TOKEN_PRINCIPAL = (
    select(*_PRINCIPAL_COLUMNS, _TOKEN.scopes, _TOKEN.expires_at)
    .select_from(ApiToken.__table__.join(User.__table__, _TOKEN.user_id == _USER.id))
    .where(
        _TOKEN.token_hash == bindparam("digest"),
        _TOKEN.revoked_at.is_(None),
        _TOKEN.expires_at > bindparam("now", type_=_TOKEN.expires_at.type),
        _USER.active.is_(True),
    )
)
_COOKIE_PRINCIPAL = (
    select(*_PRINCIPAL_COLUMNS, _WEB_SESSION.csrf_token)
    .select_from(WebSession.__table__.join(User.__table__, _WEB_SESSION.user_id == _USER.id))
    .where(
        _WEB_SESSION.id == bindparam("digest"),
        _WEB_SESSION.revoked_at.is_(None),
        _WEB_SESSION.expires_at > bindparam("now", type_=_WEB_SESSION.expires_at.type),
        _USER.active.is_(True),
    )
)


def _principal_row(session: Session, statement: Select[Any], digest: str) -> Row[Any] | None:
    params = {"digest": digest, "now": utcnow()}
    return session.connection().execute(statement, params).first()


def _principal_of(row: Row[Any], **kw: object) -> Principal:
    user_id, role, clinic_id, display_name, patient_id, practitioner_id = row[:6]
    return Principal(
        user_id=user_id,
        role=role,
        clinic_id=clinic_id,
        display_name=display_name,
        patient_id=patient_id,
        practitioner_id=practitioner_id,
        **kw,  # type: ignore[arg-type]
    )


def principal_for_cookie(
    *, session: Session, secret: str, source_ip: str | None
) -> Principal | None:
    """The principal behind a session cookie, or None if it is unknown, expired or revoked."""
    row = _principal_row(session, _COOKIE_PRINCIPAL, _digest(secret))
    if row is None:
        return None
    return _principal_of(row, via="session", csrf_token=row.csrf_token, source_ip=source_ip)


def create_api_token(
    *,
    session: Session,
    user_id: int,
    name: str,
    scopes: tuple[str, ...] = ("read", "write"),
    days: int = 30,
    actor: audit.Actor = audit.SYSTEM,
) -> tuple[str, ApiToken]:
    """Issue a bearer token; the secret is returned once and only its hash is kept."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("no such user", field="user_id")
    bad = [s for s in scopes if s not in API_SCOPES]
    if bad:
        raise ValidationFailed(
            f"unknown scope {bad[0]!r}; known: {', '.join(API_SCOPES)}", field="scopes"
        )
    if not 1 <= days <= 366:
        raise ValidationFailed("must be between 1 and 366 days", field="days")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=_digest(secret),
        scopes=" ".join(sorted(set(scopes))),
        expires_at=utcnow() + dt.timedelta(days=days),
    )
    session.add(token)
    session.flush()
    audit.record(
        session, actor, action="C", event="token.create", entity_type="ApiToken", entity_id=token.id
    )
    return secret, token


def revoke_api_token(*, session: Session, principal: Principal, token_id: int) -> None:
    """Revoke a token of the admin's own clinic at once; others are not found."""
    token = session.get(ApiToken, token_id)
    owner = session.get(User, token.user_id) if token is not None else None
    if token is None or owner is None or owner.clinic_id != principal.clinic_id:
        raise NotFound("no such token", field="token_id")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    audit.record(
        session,
        principal.actor,
        action="U",
        event="token.revoke",
        entity_type="ApiToken",
        entity_id=token.id,
    )


_GENERATION = select(SecurityGeneration.__table__.c.value).where(
    SecurityGeneration.__table__.c.id == 1
)
_PENDING = "prolo_pending_principal"
_REFUSED = "prolo_principal_refused"


def security_generation(connection: Connection) -> int:
    """The ``security_generation`` counter as this transaction sees it."""
    return int(connection.execute(_GENERATION).scalar_one())


def cached_token_principal(
    cache: PrincipalCache, *, secret: str, source_ip: str | None
) -> Cached | None:
    """The principal ``cache`` holds for a bearer token, or None (no I/O).

    In checked mode (SQLite) a hit must be confirmed: see :func:`defer_check`.
    """
    if not cache.enabled or not secret.startswith(TOKEN_PREFIX):
        return None
    return cache.get(_digest(secret), now=utcnow(), source_ip=source_ip)


def principal_for_token(
    *,
    session: Session,
    secret: str,
    source_ip: str | None,
    cache: PrincipalCache | None = None,
) -> Principal | None:
    """The principal behind a bearer token, or None if unknown, expired or revoked.

    With ``cache``, a principal it holds is returned without a query (announced mode
    only: a checked-mode hit goes through :func:`defer_check`), and one looked up is
    offered to it (see :mod:`prolo.security.principal_cache` for why that stays
    correct when a token is revoked).
    """
    if not secret.startswith(TOKEN_PREFIX):
        return None
    digest = _digest(secret)
    generation = 0
    if cache is not None:
        if not cache.checked:
            hit = cache.get(digest, now=utcnow(), source_ip=source_ip)
            if hit is not None:
                return hit.principal
        generation = cache.generation  # before the lookup: see PrincipalCache.put
    row = _principal_row(session, _TOKEN_PRINCIPAL, digest)
    if row is None:
        return None
    principal = _principal_of(
        row, via="token", scopes=frozenset(row.scopes.split()), source_ip=source_ip
    )
    if cache is not None:
        # Checked mode: the counter read in the same transaction as the token row.
        stamp = security_generation(session.connection()) if cache.checked else 0
        cache.put(
            digest, principal, token_expires=row.expires_at, generation=generation, stamp=stamp
        )
    return principal


@dataclass(frozen=True)
class _Pending:
    cache: PrincipalCache
    digest: str
    hit: Cached


def defer_check(session: Session, cache: PrincipalCache, secret: str, hit: Cached) -> bool:
    """Have ``session``'s first transaction confirm a checked-mode hit before anything else.

    Returns False when the session's transaction has begun already (the caller then
    looks the token up instead). The session must come from a sessionmaker passed to
    :func:`check_cached_principals`.
    """
    if session.in_transaction():
        return False
    session.info[_PENDING] = _Pending(cache, _digest(secret), hit)
    return True


def check_pending(session: Session, _transaction: SessionTransaction, conn: Connection) -> None:
    """``after_begin``: confirm the session's pending principal in its new transaction.

    The same ``security_generation`` as when the principal was cached: nothing about
    users or tokens changed since, so the cached principal is what a lookup would give.
    Otherwise the token is looked up again in this transaction; the request goes on
    only if it still gives the same principal, and is refused (401) if not. A refused
    session can never commit (:func:`refuse_commit`), even if the error were caught.
    """
    pending: _Pending | None = session.info.pop(_PENDING, None)
    if pending is None:
        return
    current = security_generation(conn)
    if current == pending.hit.stamp:
        return
    cache, cached = pending.cache, pending.hit.principal
    generation = cache.generation
    row = conn.execute(_TOKEN_PRINCIPAL, {"digest": pending.digest, "now": utcnow()}).first()
    if row is not None:
        fresh = _principal_of(
            row, via="token", scopes=frozenset(row.scopes.split()), source_ip=cached.source_ip
        )
        if fresh == cached:
            cache.put(
                pending.digest,
                fresh,
                token_expires=row.expires_at,
                generation=generation,
                stamp=current,
            )
            return
    cache.drop(pending.digest)
    error = Unauthenticated(
        "the bearer token is unknown, expired or revoked"
        if row is None
        else "the bearer token's account changed while this request was under way; send it again"
    )
    session.info[_REFUSED] = error
    raise error


def refuse_commit(session: Session) -> None:
    """``before_commit``: a session whose principal was refused never commits."""
    error = session.info.get(_REFUSED)
    if error is not None:
        raise error


def check_is_pending(session: Session) -> bool:
    """Whether a deferred check is still waiting for the session's first transaction."""
    return _PENDING in session.info


def confirm_pending(session: Session) -> None:
    """Run a still-pending check now (a request that never touched the database)."""
    with session:
        session.connection()  # begins: check_pending runs, and raises if refused
        session.rollback()


def check_cached_principals(factory: sessionmaker[Session]) -> None:
    """Make ``factory``'s sessions confirm checked-mode cache hits (see above)."""
    event.listen(factory, "after_begin", check_pending)
    event.listen(factory, "before_commit", refuse_commit)


def enable_totp(*, session: Session, principal: Principal, secret: str, code: str) -> None:
    """Turn on two-factor login for the principal's own staff account after a code check."""
    from prolo.security import totp

    if principal.role not in ("admin", "clinician", "front_desk"):
        raise ValidationFailed("two-factor login is for staff accounts", field="code")
    if not totp.verify_code(secret, code):
        raise ValidationFailed(
            "the code does not match; check the time on your phone", field="code"
        )
    user = session.get_one(User, principal.user_id)
    user.totp_secret = secret
    audit.record(
        session,
        principal.actor,
        action="U",
        event="totp.enable",
        entity_type="User",
        entity_id=user.id,
    )


def disable_totp(*, session: Session, principal: Principal, code: str) -> None:
    """Turn off two-factor login; needs a current code so a stolen session cannot."""
    from prolo.security import totp

    user = session.get_one(User, principal.user_id)
    if user.totp_secret is None:
        return
    if not totp.verify_code(user.totp_secret, code):
        raise ValidationFailed("the code does not match", field="code")
    user.totp_secret = None
    audit.record(
        session,
        principal.actor,
        action="U",
        event="totp.disable",
        entity_type="User",
        entity_id=user.id,
    )


def check_second_factor(
    *, session: Session, user_id: int, code: str, source_ip: str | None
) -> LoginResult:
    """The second login step: the TOTP code. Failures count towards the lockout."""
    from prolo.security import totp

    user = session.get(User, user_id)
    if user is None or user.totp_secret is None or not user.active:
        return LoginResult(None, "bad_credentials")
    now = utcnow()
    actor = audit.Actor(user.id, user.role, user.clinic_id, source_ip)
    if user.locked_until is not None and user.locked_until > now:
        return LoginResult(None, "locked")
    if not totp.verify_code(user.totp_secret, code):
        user.failed_logins += 1
        if user.failed_logins >= MAX_FAILED_LOGINS:
            user.locked_until = now + LOCKOUT
            user.failed_logins = 0
        audit.record(
            session,
            actor,
            action="E",
            event="login.totp",
            entity_type="User",
            entity_id=user.id,
            outcome="4",
            detail="bad code",
        )
        return LoginResult(None, "bad_code")
    user.failed_logins = 0
    audit.record(
        session, actor, action="E", event="login.totp", entity_type="User", entity_id=user.id
    )
    return LoginResult(user)


def list_clinic_tokens(*, session: Session, principal: Principal) -> list[tuple[ApiToken, User]]:
    """The API tokens of the admin's clinic, newest first."""
    rows = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(User.clinic_id == principal.clinic_id)
        .order_by(ApiToken.id.desc())
    ).tuples()
    return list(rows)


def list_clinic_users(*, session: Session, principal: Principal) -> list[User]:
    """The accounts of the admin's clinic."""
    return list(
        session.scalars(
            select(User).where(User.clinic_id == principal.clinic_id).order_by(User.email)
        )
    )
