"""calendar and booking: appointment types, working hours, closures, consent; no double-booking

Revision ID: 5e7a1c9d2b40
Revises: 24c64f270738, b74956bf7ebb
Create Date: 2026-11-24 21:30:00

The database refuses overlapping active appointments of a practitioner, a room or a
patient: on PostgreSQL with exclusion constraints over ``tstzrange`` (btree_gist), on
SQLite with triggers that abort the statement. The practitioner is held for
``[practitioner_starts_at, practitioner_ends_at)`` (the phases of the visit that need
them), or the whole visit when those are NULL.

SQLite tables are never rebuilt here: other tables reference ``appointment`` and
``treatment_course`` (some ON DELETE CASCADE), and a rebuild inside the migration's
transaction would run those actions. New columns are added with ALTER TABLE, carrying
their CHECK constraints inline; ``treatment_course.injectate`` is widened by adding a
column, copying, dropping the old one and renaming.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "5e7a1c9d2b40"
# Also merges the two heads committed side by side (portal and audit chain).
down_revision: str | tuple[str, ...] | None = ("24c64f270738", "b74956bf7ebb")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
ACTIVE = "status IN ('booked', 'arrived', 'fulfilled')"

# name: SQL, for the CHECK constraints added to existing tables
APPOINTMENT_CHECKS = {
    "ck_appointment_cancel_reason_valid": (
        "cancel_reason IN ('patient_request', 'clinic_request', 'course_stopped', 'other')"
    ),
    "ck_appointment_practitioner_span_pair": (
        "(practitioner_starts_at IS NULL) = (practitioner_ends_at IS NULL)"
    ),
    "ck_appointment_practitioner_span_in_visit": (
        "practitioner_starts_at IS NULL OR (practitioner_starts_at >= starts_at "
        "AND practitioner_ends_at <= ends_at "
        "AND practitioner_ends_at > practitioner_starts_at)"
    ),
    "ck_appointment_session_number_range": "session_number BETWEEN 1 AND 20",
}
COURSE_CHECKS = {
    "ck_treatment_course_protocol_status_valid": (
        "protocol_status IN ('published', 'incomplete', 'not_published')"
    ),
}

# PostgreSQL: the exclusion constraints.
PRACTITIONER_RANGE = (
    "tstzrange(COALESCE(practitioner_starts_at, starts_at), "
    "COALESCE(practitioner_ends_at, ends_at), '[)')"
)
VISIT_RANGE = "tstzrange(starts_at, ends_at, '[)')"
EXCLUSIONS = {
    "ex_appointment_practitioner_overlap": f"practitioner_id WITH =, {PRACTITIONER_RANGE} WITH &&",
    "ex_appointment_room_overlap": f"room_id WITH =, {VISIT_RANGE} WITH &&",
    "ex_appointment_patient_overlap": f"patient_id WITH =, {VISIT_RANGE} WITH &&",
}

# SQLite: the same rule as triggers. Datetimes are stored as fixed-width UTC text, so
# text comparison orders them.
_OVERLAP = f"""
  SELECT RAISE(ABORT, 'double_booked: the practitioner is already booked then')
  WHERE EXISTS (
    SELECT 1 FROM appointment AS a
    WHERE a.id IS NOT NEW.id AND a.{ACTIVE}
      AND a.practitioner_id = NEW.practitioner_id
      AND COALESCE(a.practitioner_starts_at, a.starts_at)
          < COALESCE(NEW.practitioner_ends_at, NEW.ends_at)
      AND COALESCE(a.practitioner_ends_at, a.ends_at)
          > COALESCE(NEW.practitioner_starts_at, NEW.starts_at)
  );
  SELECT RAISE(ABORT, 'double_booked: the room is already in use then')
  WHERE NEW.room_id IS NOT NULL AND EXISTS (
    SELECT 1 FROM appointment AS a
    WHERE a.id IS NOT NEW.id AND a.{ACTIVE}
      AND a.room_id = NEW.room_id
      AND a.starts_at < NEW.ends_at AND a.ends_at > NEW.starts_at
  );
  SELECT RAISE(ABORT, 'double_booked: the patient already has an appointment then')
  WHERE EXISTS (
    SELECT 1 FROM appointment AS a
    WHERE a.id IS NOT NEW.id AND a.{ACTIVE}
      AND a.patient_id = NEW.patient_id
      AND a.starts_at < NEW.ends_at AND a.ends_at > NEW.starts_at
  );
"""  # noqa: S608  (constants only: no input reaches this SQL)
SQLITE_TRIGGERS = {
    "trg_appointment_no_overlap_insert": (
        f"BEFORE INSERT ON appointment WHEN NEW.{ACTIVE} BEGIN {_OVERLAP} END"
    ),
    "trg_appointment_no_overlap_update": (
        "BEFORE UPDATE OF status, starts_at, ends_at, practitioner_starts_at, "
        "practitioner_ends_at, practitioner_id, room_id, patient_id ON appointment "
        f"WHEN NEW.{ACTIVE} BEGIN {_OVERLAP} END"
    ),
}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "appointment_type",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.Column("phases", JSON_DOC, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "code IN ('consultation', 'injection', 'follow_up')",
            name=op.f("ck_appointment_type_code_valid"),
        ),
        sa.CheckConstraint(
            "minutes BETWEEN 5 AND 480", name=op.f("ck_appointment_type_minutes_range")
        ),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinic.id"],
            name=op.f("fk_appointment_type_clinic_id_clinic"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appointment_type")),
        sa.UniqueConstraint("clinic_id", "code", name=op.f("uq_appointment_type_clinic_id_code")),
    )
    op.create_table(
        "calendar_closure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("room_id", sa.Integer(), nullable=True),
        sa.Column("practitioner_id", sa.Integer(), nullable=True),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "last_day >= first_day", name=op.f("ck_calendar_closure_last_after_first")
        ),
        sa.CheckConstraint(
            "room_id IS NULL OR practitioner_id IS NULL",
            name=op.f("ck_calendar_closure_room_or_practitioner"),
        ),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinic.id"],
            name=op.f("fk_calendar_closure_clinic_id_clinic"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["practitioner_id"],
            ["practitioner.id"],
            name=op.f("fk_calendar_closure_practitioner_id_practitioner"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["room_id"],
            ["room.id"],
            name=op.f("fk_calendar_closure_room_id_room"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_closure")),
    )
    op.create_index(
        "ix_calendar_closure_clinic_days",
        "calendar_closure",
        ["clinic_id", "first_day", "last_day"],
        unique=False,
    )
    op.create_index(
        op.f("ix_calendar_closure_practitioner_id"),
        "calendar_closure",
        ["practitioner_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_calendar_closure_room_id"), "calendar_closure", ["room_id"], unique=False
    )
    op.create_table(
        "working_hours",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("practitioner_id", sa.Integer(), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("starts_local", sa.Time(), nullable=False),
        sa.Column("ends_local", sa.Time(), nullable=False),
        sa.CheckConstraint(
            "ends_local > starts_local", name=op.f("ck_working_hours_ends_after_start")
        ),
        sa.CheckConstraint("weekday BETWEEN 0 AND 6", name=op.f("ck_working_hours_weekday_range")),
        sa.ForeignKeyConstraint(
            ["practitioner_id"],
            ["practitioner.id"],
            name=op.f("fk_working_hours_practitioner_id_practitioner"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_working_hours")),
        sa.UniqueConstraint(
            "practitioner_id",
            "weekday",
            "starts_local",
            name=op.f("uq_working_hours_practitioner_id_weekday_starts_local"),
        ),
    )
    op.create_table(
        "consent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by_user_id", sa.Integer(), nullable=False),
        sa.Column("recorded_by_name", sa.String(length=200), nullable=False),
        sa.Column("text_version", sa.String(length=20), nullable=False),
        sa.Column("items", JSON_DOC, nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "withdrawn_at IS NULL OR withdrawn_at >= signed_at",
            name=op.f("ck_consent_withdrawn_after_signed"),
        ),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinic.id"],
            name=op.f("fk_consent_clinic_id_clinic"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["course_id"],
            ["treatment_course.id"],
            name=op.f("fk_consent_course_id_treatment_course"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patient.id"],
            name=op.f("fk_consent_patient_id_patient"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent")),
    )
    op.create_index(op.f("ix_consent_course_id"), "consent", ["course_id"], unique=False)
    op.create_index(op.f("ix_consent_patient_id"), "consent", ["patient_id"], unique=False)

    # appointment: new columns; the checks inline on SQLite (no table rebuild).
    columns = [
        ("session_number", "INTEGER", sa.Integer(), ["ck_appointment_session_number_range"]),
        ("practitioner_starts_at", "DATETIME", sa.DateTime(timezone=True), []),
        (
            "practitioner_ends_at",
            "DATETIME",
            sa.DateTime(timezone=True),
            ["ck_appointment_practitioner_span_pair", "ck_appointment_practitioner_span_in_visit"],
        ),
        ("cancelled_at", "DATETIME", sa.DateTime(timezone=True), []),
        (
            "cancel_reason",
            "VARCHAR(20)",
            sa.String(length=20),
            ["ck_appointment_cancel_reason_valid"],
        ),
        ("booked_by_user_id", "INTEGER", sa.Integer(), []),
        ("updated_at", "DATETIME", sa.DateTime(timezone=True), []),
    ]
    _add_columns("appointment", columns, APPOINTMENT_CHECKS, dialect)
    op.drop_index("ix_appointment_clinic_id", table_name="appointment")
    op.create_index(
        "ix_appointment_clinic_starts", "appointment", ["clinic_id", "starts_at"], unique=False
    )
    live_session = sa.text(f"session_number IS NOT NULL AND {ACTIVE}")
    op.create_index(
        "uq_appointment_course_session",
        "appointment",
        ["course_id", "session_number"],
        unique=True,
        sqlite_where=live_session,
        postgresql_where=live_session,
    )

    # treatment_course: new columns, and a wider injectate.
    course_columns = [
        (
            "protocol_status",
            "VARCHAR(16)",
            sa.String(length=16),
            ["ck_treatment_course_protocol_status_valid"],
        ),
        ("protocol", "JSON", JSON_DOC, []),
        ("preferences", "JSON", JSON_DOC, []),
        ("created_by_user_id", "INTEGER", sa.Integer(), []),
        ("updated_at", "DATETIME", sa.DateTime(timezone=True), []),
    ]
    _add_columns("treatment_course", course_columns, COURSE_CHECKS, dialect)
    if dialect == "sqlite":
        op.execute(
            "ALTER TABLE treatment_course ADD COLUMN injectate_wide VARCHAR(400) NOT NULL "
            "DEFAULT ''"
        )
        op.execute("UPDATE treatment_course SET injectate_wide = injectate")
        op.execute("ALTER TABLE treatment_course DROP COLUMN injectate")
        op.execute("ALTER TABLE treatment_course RENAME COLUMN injectate_wide TO injectate")
    else:
        op.alter_column(
            "treatment_course",
            "injectate",
            existing_type=sa.String(length=200),
            type_=sa.String(length=400),
            existing_nullable=False,
        )

    # The database-level guard against double booking.
    if dialect == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        for name, elements in EXCLUSIONS.items():
            op.execute(
                f"ALTER TABLE appointment ADD CONSTRAINT {name} "
                f"EXCLUDE USING gist ({elements}) WHERE ({ACTIVE})"
            )
    elif dialect == "sqlite":
        for name, body in SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {body}")


def _add_columns(
    table: str,
    columns: list[tuple[str, str, sa.types.TypeEngine[object], list[str]]],
    checks: dict[str, str],
    dialect: str,
) -> None:
    for name, sqlite_type, sa_type, check_names in columns:
        if dialect == "sqlite":
            inline = "".join(f" CONSTRAINT {c} CHECK ({checks[c]})" for c in check_names)
            op.execute(f"ALTER TABLE {table} ADD COLUMN {name} {sqlite_type}{inline}")
        else:
            op.add_column(table, sa.Column(name, sa_type, nullable=True))
    if dialect != "sqlite":
        for check_name, sql in checks.items():
            op.create_check_constraint(op.f(check_name), table, sql)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for name in EXCLUSIONS:
            op.execute(f"ALTER TABLE appointment DROP CONSTRAINT IF EXISTS {name}")
    elif dialect == "sqlite":
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_index("uq_appointment_course_session", table_name="appointment")
    op.drop_index("ix_appointment_clinic_starts", table_name="appointment")
    op.create_index("ix_appointment_clinic_id", "appointment", ["clinic_id"], unique=False)
    if dialect != "sqlite":
        for check_name in APPOINTMENT_CHECKS:
            op.drop_constraint(op.f(check_name), "appointment", type_="check")
        for check_name in COURSE_CHECKS:
            op.drop_constraint(op.f(check_name), "treatment_course", type_="check")
    # SQLite cannot drop a column its own inline CHECK mentions without rebuilding the
    # table (which this migration never does): those columns stay, unused.
    keep = {"session_number", "practitioner_ends_at", "cancel_reason", "protocol_status"}
    for table, names in (
        (
            "appointment",
            (
                "session_number",
                "practitioner_starts_at",
                "practitioner_ends_at",
                "cancelled_at",
                "cancel_reason",
                "booked_by_user_id",
                "updated_at",
            ),
        ),
        (
            "treatment_course",
            ("protocol_status", "protocol", "preferences", "created_by_user_id", "updated_at"),
        ),
    ):
        for name in names:
            if dialect != "sqlite" or name not in keep:
                op.drop_column(table, name)
    op.drop_index(op.f("ix_consent_patient_id"), table_name="consent")
    op.drop_index(op.f("ix_consent_course_id"), table_name="consent")
    op.drop_table("consent")
    op.drop_table("working_hours")
    op.drop_index(op.f("ix_calendar_closure_room_id"), table_name="calendar_closure")
    op.drop_index(op.f("ix_calendar_closure_practitioner_id"), table_name="calendar_closure")
    op.drop_index("ix_calendar_closure_clinic_days", table_name="calendar_closure")
    op.drop_table("calendar_closure")
    op.drop_table("appointment_type")
