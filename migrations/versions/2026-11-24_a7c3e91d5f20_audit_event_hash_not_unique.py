"""audit_event.hash: no unique index (appends insert at random places in it)

The chain never needed it: the primary key and each lane's locked head already keep
an entry from being appended twice, and verification checks every hash. Kept, it was
most of an append's cost (a random B-tree insert and the pages it dirties per entry).

Revision ID: a7c3e91d5f20
Revises: 8f3a2c1d9e47
Create Date: 2026-11-24 22:50:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "a7c3e91d5f20"
down_revision: str | None = "8f3a2c1d9e47"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("uq_audit_event_hash"), type_="unique")


def downgrade() -> None:
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_unique_constraint(op.f("uq_audit_event_hash"), ["hash"])
