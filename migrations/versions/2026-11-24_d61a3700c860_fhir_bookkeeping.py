"""FHIR bookkeeping: resource versions, imported identifiers, bulk export jobs and files

Revision ID: d61a3700c860
Revises: 537cbb91d570
Create Date: 2026-11-24 20:25:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "d61a3700c860"
down_revision: str | None = "537cbb91d570"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "fhir_resource_version",
        sa.Column("table_name", sa.String(length=40), nullable=False),
        sa.Column("row_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("table_name", "row_id", name=op.f("pk_fhir_resource_version")),
    )

    with op.batch_alter_table("fhir_resource_version", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fhir_resource_version_table_updated", ["table_name", "last_updated"], unique=False
        )

    op.create_table(
        "fhir_identifier",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("resource_type", sa.String(length=40), nullable=False),
        sa.Column("resource_id", sa.Integer(), nullable=False),
        sa.Column("system", sa.String(length=255), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinic.id"],
            name=op.f("fk_fhir_identifier_clinic_id_clinic"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fhir_identifier")),
        sa.UniqueConstraint(
            "clinic_id",
            "resource_type",
            "system",
            "value",
            name=op.f("uq_fhir_identifier_clinic_id_resource_type_system_value"),
        ),
    )

    with op.batch_alter_table("fhir_identifier", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fhir_identifier_resource", ["resource_type", "resource_id"], unique=False
        )

    op.create_table(
        "fhir_export_job",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("group_id", sa.String(length=100), nullable=True),
        sa.Column("patient_id", sa.Integer(), nullable=True),
        sa.Column(
            "types",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("request_url", sa.String(length=2000), nullable=False),
        sa.Column("base_url", sa.String(length=500), nullable=False),
        sa.Column("transaction_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("progress", sa.String(length=200), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(level = 'group') = (group_id IS NOT NULL)",
            name=op.f("ck_fhir_export_job_group_level"),
        ),
        sa.CheckConstraint(
            "level IN ('system', 'group', 'patient')", name=op.f("ck_fhir_export_job_level_valid")
        ),
        sa.CheckConstraint(
            "status IN ('accepted', 'in-progress', 'completed', 'failed', 'cancelled')",
            name=op.f("ck_fhir_export_job_status_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinic.id"],
            name=op.f("fk_fhir_export_job_clinic_id_clinic"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["app_user.id"],
            name=op.f("fk_fhir_export_job_user_id_app_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fhir_export_job")),
    )

    with op.batch_alter_table("fhir_export_job", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fhir_export_job_user_id"), ["user_id"], unique=False)

    op.create_table(
        "fhir_export_file",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("resource_type", sa.String(length=40), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["fhir_export_job.id"],
            name=op.f("fk_fhir_export_file_job_id_fhir_export_job"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fhir_export_file")),
        sa.UniqueConstraint(
            "job_id",
            "resource_type",
            "part",
            name=op.f("uq_fhir_export_file_job_id_resource_type_part"),
        ),
    )


def downgrade() -> None:
    op.drop_table("fhir_export_file")
    with op.batch_alter_table("fhir_export_job", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fhir_export_job_user_id"))
    op.drop_table("fhir_export_job")
    with op.batch_alter_table("fhir_identifier", schema=None) as batch_op:
        batch_op.drop_index("ix_fhir_identifier_resource")
    op.drop_table("fhir_identifier")
    with op.batch_alter_table("fhir_resource_version", schema=None) as batch_op:
        batch_op.drop_index("ix_fhir_resource_version_table_updated")
    op.drop_table("fhir_resource_version")
