"""Accounts, sessions, API tokens and the append-only audit log."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Computed,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.expression import ColumnElement

from prolo.db import Base
from prolo.dbtypes import created_column, fk, id_column, one_of

ROLES = ("admin", "clinician", "front_desk", "patient", "researcher")
STAFF_ROLES = ("admin", "clinician", "front_desk")


class User(Base):
    """A login. A patient account is tied to exactly one patient record."""

    __tablename__ = "app_user"
    __table_args__ = (
        one_of("role", ROLES),
        # The database, not only Python, guarantees a patient login has its record.
        CheckConstraint(
            "(role = 'patient') = (patient_id IS NOT NULL)", name="patient_role_has_patient"
        ),
    )

    id: Mapped[int] = id_column()
    clinic_id: Mapped[int] = fk("clinic.id")
    email: Mapped[str] = mapped_column(String(254), unique=True)  # stored lower-cased
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    patient_id: Mapped[int | None] = fk("patient.id", nullable=True)
    practitioner_id: Mapped[int | None] = fk("practitioner.id", nullable=True)
    active: Mapped[bool] = mapped_column(default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column()
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = created_column()


class WebSession(Base):
    """A browser session; the cookie carries a secret whose hash is the key.

    Logout revokes the row, so a copied cookie stops working at once.
    """

    __tablename__ = "web_session"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie
    user_id: Mapped[int] = fk("app_user.id", ondelete="CASCADE")
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = created_column()
    expires_at: Mapped[dt.datetime] = mapped_column()
    revoked_at: Mapped[dt.datetime | None] = mapped_column()


class ApiToken(Base):
    """A bearer token for the API; only its hash is stored."""

    __tablename__ = "api_token"

    id: Mapped[int] = id_column()
    user_id: Mapped[int] = fk("app_user.id", ondelete="CASCADE")
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(500))  # space-separated
    created_at: Mapped[dt.datetime] = created_column()
    expires_at: Mapped[dt.datetime] = mapped_column()
    revoked_at: Mapped[dt.datetime | None] = mapped_column()


class SecurityGeneration(Base):
    """One counter that SQLite triggers raise on every change to a user or API token.

    A SQLite process caches bearer-token principals and, inside each request's own
    transaction, compares the counter it saw with this one: a revocation or a change
    to the user, committed by any process (admin page, ``prolo token revoke``, SQL by
    hand), is seen by the next request exactly as a fresh lookup would see it (see
    :mod:`prolo.security.principal_cache`). The triggers are SQLite's only (migration
    ``b2d7e4a9c1f3``): PostgreSQL announces such changes with NOTIFY instead, so that
    logins do not all update one row.
    """

    __tablename__ = "security_generation"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


def entry_field_sql(key: str, kind: str, dialect: str) -> str:
    """SQL computing an audit entry's field ``key`` from its canonical ``entry``.

    ``kind`` is "text", "integer" or "timestamp" (``at``, UTC). PostgreSQL needs an
    immutable expression for a generated column: a text cast to a timestamp depends
    on settings, so the time is rebuilt with ``make_timestamp`` from its fixed layout
    ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.
    """
    if dialect == "postgresql":
        value = f"((entry::json) ->> '{key}')"
        if kind == "integer":
            return f"({value})::integer"
        if kind == "timestamp":
            parts = ", ".join(
                f"substr({value}, {start}, {length})::integer"
                for start, length in ((1, 4), (6, 2), (9, 2), (12, 2), (15, 2))
            )
            return f"timezone('UTC', make_timestamp({parts}, substr({value}, 18, 9)::float8))"
        return value
    if kind == "timestamp":  # SQLite keeps UTC as "YYYY-MM-DD HH:MM:SS.ffffff" text
        return f"replace(substr(json_extract(entry, '$.{key}'), 1, 26), 'T', ' ')"
    return f"json_extract(entry, '$.{key}')"


class _EntryField(ColumnElement[Any]):
    """A generated column's expression, written for the database at hand."""

    inherit_cache = True

    def __init__(self, key: str, kind: str) -> None:
        self.key_name, self.kind = key, kind


@compiles(_EntryField)
def _sqlite_field(element: _EntryField, _compiler: Any, **_kw: Any) -> str:
    return entry_field_sql(element.key_name, element.kind, "sqlite")


@compiles(_EntryField, "postgresql")
def _postgres_field(element: _EntryField, _compiler: Any, **_kw: Any) -> str:
    return entry_field_sql(element.key_name, element.kind, "postgresql")


def generated(key: str, kind: str = "text") -> Computed:
    """A column generated from the entry's ``key``: virtual on SQLite, stored on PostgreSQL."""
    return Computed(_EntryField(key, kind))


# FHIR AuditEvent.outcome: http://hl7.org/fhir/R4/valueset-audit-event-outcome.html
AUDIT_OUTCOMES = ("0", "4", "8", "12")
# FHIR AuditEvent.action: http://hl7.org/fhir/R4/valueset-audit-event-action.html
AUDIT_ACTIONS = ("C", "R", "U", "D", "E")


class AuditEvent(Base):
    """One entry of the append-only, hash-chained access log (chain format: ``chain.py``).

    The record is ``entry``, one canonical JSON text holding every audited field, and
    ``digest`` covers it and the previous entry's digest, so editing or removing any
    row breaks the chain from that row on (``prolo audit verify``). The field columns
    are generated from ``entry`` by the database: they read like plain columns but
    cannot be written, so they cannot be edited apart from what was hashed. Patient
    and user ids are plain integers, not foreign keys: the log outlives the records it
    mentions.
    """

    __tablename__ = "audit_event"
    __table_args__ = (
        one_of("outcome", AUDIT_OUTCOMES),
        one_of("action", AUDIT_ACTIONS),
        Index("ix_audit_event_patient_recorded", "patient_id", "recorded_at"),
        Index("ix_audit_event_lane_id", "lane", "id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    # Which chain (lane) the entry extends, and the id of the entry before it there.
    # Concurrent transactions append to different lanes, so none waits for another's
    # commit; an entry written before lanes existed has lane 1 and no prev_id.
    lane: Mapped[int] = mapped_column(SmallInteger, server_default=text("1"))
    prev_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    entry: Mapped[str] = mapped_column(Text)
    # SHA-256, 32 raw bytes. Not unique-indexed: the primary key and the lane heads keep
    # an entry from being appended twice, and a random-order index on it was most of an
    # append's cost.
    digest: Mapped[bytes] = mapped_column(LargeBinary)
    recorded_at: Mapped[dt.datetime] = mapped_column(generated("at", "timestamp"))
    user_id: Mapped[int | None] = mapped_column(Integer, generated("user", "integer"))
    user_role: Mapped[str | None] = mapped_column(String(20), generated("role"))
    clinic_id: Mapped[int | None] = mapped_column(Integer, generated("clinic", "integer"))
    action: Mapped[str] = mapped_column(String(1), generated("action"))
    event: Mapped[str] = mapped_column(String(60), generated("event"))  # e.g. "patient.read"
    entity_type: Mapped[str] = mapped_column(String(40), generated("entity_type"))
    entity_id: Mapped[str | None] = mapped_column(String(64), generated("entity"))
    patient_id: Mapped[int | None] = mapped_column(Integer, generated("patient", "integer"))
    outcome: Mapped[str] = mapped_column(String(2), generated("outcome"))
    source_ip: Mapped[str | None] = mapped_column(String(45), generated("ip"))
    # Never health information.
    detail: Mapped[str | None] = mapped_column(String(300), generated("detail"))


class AuditHead(Base):
    """The newest entry of each audit chain lane, stored apart from the log.

    ``id`` is the lane. An append locks its lane's row, so appends to one lane queue
    and it never forks, while other transactions take other lanes; ``prolo audit
    verify`` compares each lane's last entry with its head, so removing entries from
    the end shows as truncation.
    """

    __tablename__ = "audit_head"
    __table_args__ = (CheckConstraint("id >= 1", name="lane_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    last_hash: Mapped[str] = mapped_column(String(64))
