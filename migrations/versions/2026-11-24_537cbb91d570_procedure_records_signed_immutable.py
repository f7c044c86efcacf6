"""procedure records: signer, re-check, amendments; signed rows immutable (triggers)

Revision ID: 537cbb91d570
Revises: 5e7a1c9d2b40
Create Date: 2026-11-24 21:05:12.118842
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "537cbb91d570"
down_revision: str | None = "5e7a1c9d2b40"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DECISIONS = "('candidate', 'candidate_with_precautions', 'not_candidate', 'refer')"

# A signed procedure record never changes: the database refuses UPDATE and DELETE of a
# signed row, whatever the application does. Corrections are new rows (amends_id).
SQLITE_TRIGGERS = (
    """
    CREATE TRIGGER procedure_signed_no_update BEFORE UPDATE ON procedure
    FOR EACH ROW WHEN OLD.status = 'signed'
    BEGIN SELECT RAISE(ABORT, 'procedure record is signed: it cannot be changed'); END
    """,
    """
    CREATE TRIGGER procedure_signed_no_delete BEFORE DELETE ON procedure
    FOR EACH ROW WHEN OLD.status = 'signed'
    BEGIN SELECT RAISE(ABORT, 'procedure record is signed: it cannot be deleted'); END
    """,
)
POSTGRES_FUNCTION = """
CREATE FUNCTION procedure_signed_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'procedure record % is signed: it cannot be changed', OLD.id
        USING ERRCODE = 'integrity_constraint_violation';
END
$$
"""
POSTGRES_TRIGGER = """
CREATE TRIGGER procedure_signed_immutable BEFORE UPDATE OR DELETE ON procedure
FOR EACH ROW WHEN (OLD.status = 'signed') EXECUTE FUNCTION procedure_signed_immutable()
"""


def upgrade() -> None:
    with op.batch_alter_table("procedure", schema=None) as batch_op:
        batch_op.add_column(sa.Column("body_region", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("screening_decision", sa.String(length=30), nullable=True))
        batch_op.add_column(sa.Column("signed_by_user_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("signed_by_name", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("amendment_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_constraint(batch_op.f("ck_procedure_status_valid"), type_="check")
        batch_op.create_check_constraint(
            batch_op.f("ck_procedure_status_valid"), "status IN ('draft', 'signed')"
        )
        batch_op.create_check_constraint(
            batch_op.f("ck_procedure_screening_decision_valid"),
            f"screening_decision IN {DECISIONS}",
        )
        batch_op.create_check_constraint(
            batch_op.f("ck_procedure_signed_at_iff_signed"),
            "(status = 'signed') = (signed_at IS NOT NULL)",
        )
        batch_op.create_check_constraint(
            batch_op.f("ck_procedure_signer_iff_signed"),
            "(status = 'signed') = (signed_by_user_id IS NOT NULL)",
        )
        batch_op.create_check_constraint(
            batch_op.f("ck_procedure_amendment_has_reason"),
            "(amends_id IS NULL) = (amendment_reason IS NULL)",
        )
        batch_op.drop_index(batch_op.f("ix_procedure_amends_id"))
        batch_op.create_unique_constraint(batch_op.f("uq_procedure_amends_id"), ["amends_id"])
        batch_op.create_index(
            "ix_procedure_patient_performed", ["patient_id", "performed_at"], unique=False
        )
        batch_op.create_index(
            "uq_procedure_appointment_original",
            ["appointment_id"],
            unique=True,
            sqlite_where=sa.text("amends_id IS NULL"),
            postgresql_where=sa.text("amends_id IS NULL"),
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_procedure_signed_by_user_id_app_user"),
            "app_user",
            ["signed_by_user_id"],
            ["id"],
            ondelete="RESTRICT",
        )
    # After the batch operation: on SQLite it rebuilds the table, which drops triggers.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_FUNCTION)
        op.execute(POSTGRES_TRIGGER)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS procedure_signed_immutable ON procedure")
        op.execute("DROP FUNCTION IF EXISTS procedure_signed_immutable()")
    else:
        op.execute("DROP TRIGGER IF EXISTS procedure_signed_no_update")
        op.execute("DROP TRIGGER IF EXISTS procedure_signed_no_delete")
    with op.batch_alter_table("procedure", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_procedure_signed_by_user_id_app_user"), type_="foreignkey"
        )
        batch_op.drop_index(
            "uq_procedure_appointment_original",
            sqlite_where=sa.text("amends_id IS NULL"),
            postgresql_where=sa.text("amends_id IS NULL"),
        )
        batch_op.drop_index("ix_procedure_patient_performed")
        batch_op.drop_constraint(batch_op.f("uq_procedure_amends_id"), type_="unique")
        batch_op.create_index(batch_op.f("ix_procedure_amends_id"), ["amends_id"], unique=False)
        for name in (
            "ck_procedure_amendment_has_reason",
            "ck_procedure_signer_iff_signed",
            "ck_procedure_signed_at_iff_signed",
            "ck_procedure_screening_decision_valid",
            "ck_procedure_status_valid",
        ):
            batch_op.drop_constraint(batch_op.f(name), type_="check")
        batch_op.create_check_constraint(
            batch_op.f("ck_procedure_status_valid"), "status IN ('draft', 'signed', 'amended')"
        )
        batch_op.drop_column("updated_at")
        batch_op.drop_column("amendment_reason")
        batch_op.drop_column("signed_by_name")
        batch_op.drop_column("signed_by_user_id")
        batch_op.drop_column("screening_decision")
        batch_op.drop_column("body_region")
