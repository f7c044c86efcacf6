"""audit chain lanes: each entry names its lane and the entry before it there

Revision ID: 505c9e074a5b
Revises: d61a3700c860
Create Date: 2026-11-24 21:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "505c9e074a5b"
down_revision: str | None = "d61a3700c860"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("lane", sa.SmallInteger(), server_default=sa.text("1"), nullable=False)
        )
        batch_op.add_column(
            sa.Column("prev_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True)
        )
        batch_op.create_index("ix_audit_event_lane_id", ["lane", "id"], unique=False)
    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_audit_head_single_row"), type_="check")
        batch_op.create_check_constraint(op.f("ck_audit_head_lane_number"), "id >= 1")


def downgrade() -> None:
    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_audit_head_lane_number"), type_="check")
        batch_op.create_check_constraint(op.f("ck_audit_head_single_row"), "id = 1")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_event_lane_id")
        batch_op.drop_column("prev_id")
        batch_op.drop_column("lane")
