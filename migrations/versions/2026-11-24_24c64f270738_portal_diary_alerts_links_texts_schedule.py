"""portal: flare diary, clinic alerts, portal links, licensed instrument text, due schedule

Revision ID: 24c64f270738
Revises: e436b388f4c1
Create Date: 2026-11-24 20:12:12.628591
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "24c64f270738"
down_revision: str | None = "e436b388f4c1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "clinic_alert": (
        "ix_clinic_alert_clinic_open",
        "ix_clinic_alert_diary_entry_id",
        "ix_clinic_alert_patient_id",
    ),
    "flare_diary_entry": ("ix_flare_diary_entry_clinic_id", "ix_flare_diary_entry_patient_id"),
    "portal_link": ("ix_portal_link_patient_id",),
}


def upgrade() -> None:
    op.create_table(
        "due_schedule_setting",
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("pre_session", sa.Boolean(), nullable=False),
        sa.Column(
            "follow_up_days",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("open_days_before", sa.Integer(), nullable=False),
        sa.Column("due_hours_before_session", sa.Integer(), nullable=False),
        sa.Column("follow_up_due_days", sa.Integer(), nullable=False),
        sa.Column("last_follow_up_grace_days", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "due_hours_before_session BETWEEN 0 AND 168",
            name=op.f("ck_due_schedule_setting_due_hours_range"),
        ),
        sa.CheckConstraint(
            "follow_up_due_days BETWEEN 0 AND 60",
            name=op.f("ck_due_schedule_setting_due_days_range"),
        ),
        sa.CheckConstraint(
            "last_follow_up_grace_days BETWEEN 0 AND 365",
            name=op.f("ck_due_schedule_setting_grace_range"),
        ),
        sa.CheckConstraint(
            "open_days_before BETWEEN 0 AND 60",
            name=op.f("ck_due_schedule_setting_open_days_range"),
        ),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinic.id"],
            name=op.f("fk_due_schedule_setting_clinic_id_clinic"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("clinic_id", name=op.f("pk_due_schedule_setting")),
    )
    op.create_table(
        "instrument_text",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("instrument_id", sa.String(length=40), nullable=False),
        sa.Column(
            "texts",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("loaded_by", sa.Integer(), nullable=True),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinic.id"],
            name=op.f("fk_instrument_text_clinic_id_clinic"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["loaded_by"],
            ["app_user.id"],
            name=op.f("fk_instrument_text_loaded_by_app_user"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instrument_text")),
        sa.UniqueConstraint(
            "clinic_id", "instrument_id", name=op.f("uq_instrument_text_clinic_id_instrument_id")
        ),
    )
    op.create_table(
        "portal_link",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("visit_hash", sa.String(length=64), nullable=True),
        sa.Column("visit_csrf", sa.String(length=64), nullable=True),
        sa.Column("visit_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(used_at IS NULL) = (visit_hash IS NULL)", name=op.f("ck_portal_link_used_has_visit")
        ),
        sa.CheckConstraint(
            "expires_at > created_at", name=op.f("ck_portal_link_expires_after_created")
        ),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinic.id"],
            name=op.f("fk_portal_link_clinic_id_clinic"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["app_user.id"],
            name=op.f("fk_portal_link_created_by_app_user"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patient.id"],
            name=op.f("fk_portal_link_patient_id_patient"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_link")),
        sa.UniqueConstraint("visit_hash", name=op.f("uq_portal_link_visit_hash")),
    )
    with op.batch_alter_table("portal_link", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_portal_link_patient_id"), ["patient_id"], unique=False)
    op.create_table(
        "flare_diary_entry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("appointment_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("pain", sa.Integer(), nullable=False),
        sa.Column("swelling", sa.String(length=8), nullable=False),
        sa.Column("redness", sa.String(length=10), nullable=False),
        sa.Column("warmth", sa.Boolean(), nullable=False),
        sa.Column("fever", sa.Boolean(), nullable=False),
        sa.Column("normal_activity", sa.Boolean(), nullable=False),
        sa.Column(
            "red_flags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "redness IN ('none', 'at_site', 'spreading')",
            name=op.f("ck_flare_diary_entry_redness_valid"),
        ),
        sa.CheckConstraint(
            "swelling IN ('none', 'some', 'marked')",
            name=op.f("ck_flare_diary_entry_swelling_valid"),
        ),
        sa.CheckConstraint("day BETWEEN 1 AND 7", name=op.f("ck_flare_diary_entry_day_range")),
        sa.CheckConstraint("pain BETWEEN 0 AND 10", name=op.f("ck_flare_diary_entry_pain_range")),
        sa.ForeignKeyConstraint(
            ["appointment_id"],
            ["appointment.id"],
            name=op.f("fk_flare_diary_entry_appointment_id_appointment"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinic.id"],
            name=op.f("fk_flare_diary_entry_clinic_id_clinic"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patient.id"],
            name=op.f("fk_flare_diary_entry_patient_id_patient"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flare_diary_entry")),
        sa.UniqueConstraint(
            "appointment_id", "day", name=op.f("uq_flare_diary_entry_appointment_id_day")
        ),
    )
    with op.batch_alter_table("flare_diary_entry", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_flare_diary_entry_clinic_id"), ["clinic_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_flare_diary_entry_patient_id"), ["patient_id"], unique=False
        )
    op.create_table(
        "clinic_alert",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("diary_entry_id", sa.Integer(), nullable=True),
        sa.Column(
            "signs",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.Integer(), nullable=True),
        sa.CheckConstraint("kind IN ('flare_red_flag')", name=op.f("ck_clinic_alert_kind_valid")),
        sa.CheckConstraint(
            "(acknowledged_at IS NULL) = (acknowledged_by IS NULL)",
            name=op.f("ck_clinic_alert_acknowledged_pair"),
        ),
        sa.ForeignKeyConstraint(
            ["acknowledged_by"],
            ["app_user.id"],
            name=op.f("fk_clinic_alert_acknowledged_by_app_user"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinic.id"],
            name=op.f("fk_clinic_alert_clinic_id_clinic"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["diary_entry_id"],
            ["flare_diary_entry.id"],
            name=op.f("fk_clinic_alert_diary_entry_id_flare_diary_entry"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patient.id"],
            name=op.f("fk_clinic_alert_patient_id_patient"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinic_alert")),
    )
    with op.batch_alter_table("clinic_alert", schema=None) as batch_op:
        batch_op.create_index(
            "ix_clinic_alert_clinic_open",
            ["clinic_id", "acknowledged_at", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_clinic_alert_diary_entry_id"), ["diary_entry_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_clinic_alert_patient_id"), ["patient_id"], unique=False
        )


def downgrade() -> None:
    for table in ("clinic_alert", "flare_diary_entry", "portal_link"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for index in INDEXES[table]:
                batch_op.drop_index(index)
    op.drop_table("clinic_alert")
    op.drop_table("flare_diary_entry")
    op.drop_table("portal_link")
    op.drop_table("instrument_text")
    op.drop_table("due_schedule_setting")
