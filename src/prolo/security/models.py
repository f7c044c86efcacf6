"""Accounts, sessions, API tokens and the append-only audit log."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, SmallInteger, String, text
from sqlalchemy.orm import Mapped, mapped_column

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


# FHIR AuditEvent.outcome: http://hl7.org/fhir/R4/valueset-audit-event-outcome.html
AUDIT_OUTCOMES = ("0", "4", "8", "12")
# FHIR AuditEvent.action: http://hl7.org/fhir/R4/valueset-audit-event-action.html
AUDIT_ACTIONS = ("C", "R", "U", "D", "E")


class AuditEvent(Base):
    """One entry of the append-only, hash-chained access log.

    ``hash`` covers the entry's fields and the previous entry's hash, so editing or
    removing any row breaks the chain from that row on (``prolo audit verify``).
    Patient and user ids are plain integers, not foreign keys: the log outlives
    the records it mentions.
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
    recorded_at: Mapped[dt.datetime] = mapped_column()
    user_id: Mapped[int | None] = mapped_column(Integer)
    user_role: Mapped[str | None] = mapped_column(String(20))
    clinic_id: Mapped[int | None] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(1))
    event: Mapped[str] = mapped_column(String(60))  # e.g. "patient.read"
    entity_type: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    patient_id: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(2))
    source_ip: Mapped[str | None] = mapped_column(String(45))
    detail: Mapped[str | None] = mapped_column(String(300))  # never health information
    prev_hash: Mapped[str] = mapped_column(String(64))
    # Not unique-indexed: the primary key and the lane heads keep an entry from being
    # appended twice, and a random-order index on it was most of an append's cost.
    hash: Mapped[str] = mapped_column(String(64))
    # Which chain (lane) the entry extends, and the id of the entry before it there.
    # Concurrent transactions append to different lanes, so none waits for another's
    # commit; an entry written before lanes existed has lane 1 and no prev_id.
    lane: Mapped[int] = mapped_column(SmallInteger, server_default=text("1"))
    prev_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))


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
