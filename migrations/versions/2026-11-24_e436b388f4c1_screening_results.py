"""screening results stored on the patient's record

Revision ID: e436b388f4c1
Revises: 19b7d530331b
Create Date: 2026-11-24 20:11:20.865840
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "e436b388f4c1"
down_revision: str | None = "19b7d530331b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "screening",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("screened_by_user_id", sa.Integer(), nullable=True),
        sa.Column("screened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decision", sa.String(length=30), nullable=False),
        sa.Column("safety_rules_version", sa.Integer(), nullable=False),
        sa.Column("answers", JSON_DOC, nullable=False),
        sa.Column("result", JSON_DOC, nullable=False),
        sa.CheckConstraint(
            "decision IN ('candidate', 'candidate_with_precautions', 'not_candidate', 'refer')",
            name=op.f("ck_screening_decision_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinic.id"],
            name=op.f("fk_screening_clinic_id_clinic"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patient.id"],
            name=op.f("fk_screening_patient_id_patient"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["screened_by_user_id"],
            ["app_user.id"],
            name=op.f("fk_screening_screened_by_user_id_app_user"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_screening")),
    )
    with op.batch_alter_table("screening", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_screening_clinic_id"), ["clinic_id"], unique=False)
        batch_op.create_index(
            "ix_screening_patient_screened", ["patient_id", "screened_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_screening_screened_by_user_id"), ["screened_by_user_id"], unique=False
        )

    op.create_table(
        "screening_reason",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("screening_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.String(length=60), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("condition_id", sa.String(length=60), nullable=True),
        sa.Column("patient_message", sa.Text(), nullable=False),
        sa.Column("clinician_message", sa.Text(), nullable=False),
        sa.Column("sources", JSON_DOC, nullable=False),
        sa.CheckConstraint(
            "kind IN ('red_flag', 'absolute', 'relative', 'duration', 'evidence')",
            name=op.f("ck_screening_reason_kind_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["screening_id"],
            ["screening.id"],
            name=op.f("fk_screening_reason_screening_id_screening"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_screening_reason")),
        sa.UniqueConstraint(
            "screening_id", "position", name=op.f("uq_screening_reason_screening_id_position")
        ),
    )
    with op.batch_alter_table("screening_reason", schema=None) as batch_op:
        batch_op.create_index("ix_screening_reason_rule", ["rule_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("screening_reason", schema=None) as batch_op:
        batch_op.drop_index("ix_screening_reason_rule")
    op.drop_table("screening_reason")
    with op.batch_alter_table("screening", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_screening_screened_by_user_id"))
        batch_op.drop_index("ix_screening_patient_screened")
        batch_op.drop_index(batch_op.f("ix_screening_clinic_id"))
    op.drop_table("screening")
