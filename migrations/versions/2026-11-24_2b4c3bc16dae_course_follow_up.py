"""course follow-up: surgery plans and pain-medicine use per course timepoint

Revision ID: 2b4c3bc16dae
Revises: c2d80f88be72
Create Date: 2026-11-24 20:07:57.887035
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "2b4c3bc16dae"
down_revision: str | None = "c2d80f88be72"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "course_follow_up",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("timepoint", sa.String(length=12), nullable=False),
        sa.Column("surgery_planned", sa.Boolean(), nullable=True),
        sa.Column("surgery_done", sa.Boolean(), nullable=True),
        sa.Column("pain_medicine_use", sa.Boolean(), nullable=True),
        sa.Column("opioid_use", sa.Boolean(), nullable=True),
        sa.Column("opioid_mme_per_day", sa.Float(), nullable=True),
        sa.Column(
            "opioids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "timepoint <> 'baseline' OR surgery_done IS NULL",
            name=op.f("ck_course_follow_up_no_surgery_done_at_baseline"),
        ),
        sa.CheckConstraint(
            "timepoint IN ('baseline', 'week_6', 'month_3', 'month_6', 'month_12')",
            name=op.f("ck_course_follow_up_timepoint_valid"),
        ),
        sa.CheckConstraint(
            "opioid_mme_per_day IS NULL OR opioid_mme_per_day >= 0",
            name=op.f("ck_course_follow_up_mme_not_negative"),
        ),
        sa.CheckConstraint(
            "opioid_mme_per_day IS NULL OR opioid_use IS NOT NULL",
            name=op.f("ck_course_follow_up_mme_needs_opioid_use"),
        ),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinic.id"],
            name=op.f("fk_course_follow_up_clinic_id_clinic"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["course_id"],
            ["treatment_course.id"],
            name=op.f("fk_course_follow_up_course_id_treatment_course"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patient.id"],
            name=op.f("fk_course_follow_up_patient_id_patient"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_course_follow_up")),
        sa.UniqueConstraint(
            "course_id", "timepoint", name=op.f("uq_course_follow_up_course_id_timepoint")
        ),
    )
    with op.batch_alter_table("course_follow_up", schema=None) as batch_op:
        batch_op.create_index(
            "ix_course_follow_up_clinic_timepoint", ["clinic_id", "timepoint"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_course_follow_up_patient_id"), ["patient_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("course_follow_up", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_course_follow_up_patient_id"))
        batch_op.drop_index("ix_course_follow_up_clinic_timepoint")

    op.drop_table("course_follow_up")
