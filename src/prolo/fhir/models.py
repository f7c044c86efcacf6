"""FHIR bookkeeping tables: resource versions, external identifiers, bulk export jobs.

None of these holds clinical data of its own:

- :class:`ResourceVersion` gives each mapped row a ``meta.versionId`` and
  ``meta.lastUpdated``. It is kept by a session listener (below) for every ORM insert
  and update of a mapped table, whichever domain writes it, so ``_lastUpdated`` and
  bulk ``_since`` see changes made outside the FHIR API too; a change to rows served
  as part of a mapped row (a practitioner's working hours, their Schedule) bumps that
  row (:data:`DEPENDENT_TABLES`). Rows written with Core
  inserts (the synthetic registry) have no entry and fall back to the row's own
  timestamp where it has one.
- :class:`ExternalIdentifier` remembers the identifiers an imported resource carried
  (its source ``fullUrl`` or ``Type/id`` as well), so a conditional create or a
  re-import finds the row it made before instead of making a second one.
- :class:`ExportJob` and :class:`ExportFile`: the Bulk Data ``$export`` kick-off,
  its status and its NDJSON output (kept in the database so any server process can
  answer the status poll and serve the files).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    event,
    text,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from prolo.db import Base, UTCDateTime, utcnow
from prolo.dbtypes import JsonDoc, created_column, fk, id_column, one_of

EXPORT_LEVELS = ("system", "group", "patient")
EXPORT_STATUSES = ("accepted", "in-progress", "completed", "failed", "cancelled")

# Tables whose rows are served as FHIR resources (see prolo.fhir.resources).
TRACKED_TABLES: frozenset[str] = frozenset(
    {
        "patient",
        "diagnosis",
        "allergy",
        "medication",
        "practitioner",
        "room",
        "treatment_course",
        "procedure",
        "appointment",
        "questionnaire_response",
        "score",
        "consent",
        "calendar_closure",  # a practitioner's closure is a busy-unavailable Slot
    }
)
# Rows served as part of another tracked row: table -> (the owner's table, the foreign key
# naming it). A change to one is a change of its owner. A practitioner's working hours
# are their Schedule, which is served from the practitioner row and shares its version,
# so an EHR's If-Match goes stale whichever path changed the hours.
DEPENDENT_TABLES: dict[str, tuple[str, str]] = {
    "working_hours": ("practitioner", "practitioner_id"),
}


class ResourceVersion(Base):
    """The version and last change time of one mapped row (``table_name``, ``row_id``)."""

    __tablename__ = "fhir_resource_version"
    __table_args__ = (
        Index("ix_fhir_resource_version_table_updated", "table_name", "last_updated"),
    )

    table_name: Mapped[str] = mapped_column(String(40), primary_key=True)
    row_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(default=1)
    last_updated: Mapped[dt.datetime] = mapped_column()


class ExternalIdentifier(Base):
    """An identifier a resource arrived with, unique per clinic and resource type."""

    __tablename__ = "fhir_identifier"
    __table_args__ = (
        UniqueConstraint("clinic_id", "resource_type", "system", "value"),
        Index("ix_fhir_identifier_resource", "resource_type", "resource_id"),
        # The identifier search parameter (and so every conditional create) looks a
        # value up by type without a clinic: the unique key above leads with the clinic.
        Index("ix_fhir_identifier_value", "resource_type", "value", "system"),
    )

    id: Mapped[int] = id_column()
    clinic_id: Mapped[int] = fk("clinic.id", index=False)
    resource_type: Mapped[str] = mapped_column(String(40))
    resource_id: Mapped[int] = mapped_column(Integer)
    system: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = created_column()


class ExportJob(Base):
    """One Bulk Data ``$export`` request: who asked, for what, and how far it got.

    The id is a random, unguessable string: it is the status URL's last segment.
    """

    __tablename__ = "fhir_export_job"
    __table_args__ = (
        one_of("level", EXPORT_LEVELS),
        one_of("status", EXPORT_STATUSES),
        CheckConstraint("(level = 'group') = (group_id IS NOT NULL)", name="group_level"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    clinic_id: Mapped[int] = fk("clinic.id", index=False)
    user_id: Mapped[int] = fk("app_user.id", ondelete="CASCADE")
    level: Mapped[str] = mapped_column(String(10))
    group_id: Mapped[str | None] = mapped_column(String(100))
    patient_id: Mapped[int | None] = mapped_column(Integer)  # a patient's own export
    types: Mapped[list[str]] = mapped_column(JsonDoc)
    since: Mapped[dt.datetime | None] = mapped_column()
    status: Mapped[str] = mapped_column(String(12), default="accepted")
    request_url: Mapped[str] = mapped_column(String(2000))
    base_url: Mapped[str] = mapped_column(String(500))
    transaction_time: Mapped[dt.datetime | None] = mapped_column()
    progress: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(String(500))  # never health information
    created_at: Mapped[dt.datetime] = created_column()
    finished_at: Mapped[dt.datetime | None] = mapped_column()
    expires_at: Mapped[dt.datetime] = mapped_column()


class ExportFile(Base):
    """One NDJSON output file of an export job (one resource type, one part)."""

    __tablename__ = "fhir_export_file"
    __table_args__ = (UniqueConstraint("job_id", "resource_type", "part"),)

    id: Mapped[int] = id_column()
    # A cancelled or expired job takes its files with it.
    job_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("fhir_export_job.id", ondelete="CASCADE")
    )
    resource_type: Mapped[str] = mapped_column(String(40))
    part: Mapped[int] = mapped_column()
    count: Mapped[int] = mapped_column()
    content: Mapped[str] = mapped_column(Text)


# Insert a version row, or bump it. Written as text because SQLAlchemy cannot cache
# its ON CONFLICT constructs (they would be compiled again on every write); the syntax
# is the same on SQLite (3.24+) and PostgreSQL, and the binds keep their column types.
_UPSERT = text(
    "INSERT INTO fhir_resource_version (table_name, row_id, version, last_updated) "
    "VALUES (:table_name, :row_id, :version, :last_updated) "
    "ON CONFLICT (table_name, row_id) DO UPDATE "
    "SET version = fhir_resource_version.version + 1, last_updated = excluded.last_updated"
).bindparams(
    bindparam("table_name", type_=String(40)),
    bindparam("row_id", type_=Integer()),
    bindparam("version", type_=Integer()),
    bindparam("last_updated", type_=UTCDateTime()),
)


def _upsert(session: Session, rows: list[dict[str, Any]]) -> None:
    session.connection().execute(_UPSERT, rows)


@event.listens_for(Session, "after_flush")
def _record_versions(session: Session, _flush_context: Any) -> None:
    """Bump the version of every mapped row this flush inserted or changed, once each.

    A row of a :data:`DEPENDENT_TABLES` table inserted, changed or deleted bumps its
    owner, once per flush however many of its rows changed.
    """
    now = utcnow()
    # (table, row id) -> the version it gets if it has no version row yet: 1 for a row
    # this flush inserted, 2 for one that existed (unversioned, it was version 1).
    bumps: dict[tuple[str, int], int] = {}

    def owner_changed(obj: Any, table: str) -> None:
        owner_table, key = DEPENDENT_TABLES[table]
        owner_id = getattr(obj, key, None)
        if owner_id is not None:
            bumps.setdefault((owner_table, owner_id), 2)

    for obj in session.new:
        table = getattr(obj, "__tablename__", None)
        if table in TRACKED_TABLES:
            bumps[(table, obj.id)] = 1
        elif table in DEPENDENT_TABLES:
            owner_changed(obj, table)
    for obj in session.dirty:
        table = getattr(obj, "__tablename__", None)
        if table in TRACKED_TABLES or table in DEPENDENT_TABLES:
            if not session.is_modified(obj, include_collections=False):
                continue
            if table in TRACKED_TABLES:
                bumps.setdefault((table, obj.id), 2)
            else:
                owner_changed(obj, table)
    gone: list[tuple[str, int]] = []
    for obj in session.deleted:
        table = getattr(obj, "__tablename__", None)
        if table in TRACKED_TABLES:
            gone.append((table, obj.id))
        elif table in DEPENDENT_TABLES:
            owner_changed(obj, table)
    for key in gone:  # an owner deleted with its dependents keeps no version
        bumps.pop(key, None)
    if bumps:
        _upsert(
            session,
            [
                {"table_name": table, "row_id": row_id, "version": version, "last_updated": now}
                for (table, row_id), version in bumps.items()
            ],
        )
    if gone:
        table = cast(Table, ResourceVersion.__table__)
        for name, row_id in gone:
            session.connection().execute(
                table.delete().where(table.c.table_name == name, table.c.row_id == row_id)
            )
