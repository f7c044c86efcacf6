"""audit chain head backfill: point the head at the log's last entry

Revision ID: b74956bf7ebb
Revises: bd42bd8ddbd4
Create Date: 2026-11-24 20:17:30.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b74956bf7ebb"
down_revision: str | None = "bd42bd8ddbd4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = "0" * 64


def upgrade() -> None:
    # Re-runnable: only writes the head when it is not there yet.
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT 1 FROM audit_head WHERE id = 1")).first() is not None:
        return
    last = bind.execute(
        sa.text("SELECT id, hash FROM audit_event ORDER BY id DESC LIMIT 1")
    ).first()
    last_id, last_hash = (last[0], last[1]) if last is not None else (0, GENESIS)
    bind.execute(
        sa.text("INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, :last_id, :last_hash)"),
        {"last_id": last_id, "last_hash": last_hash},
    )


def downgrade() -> None:
    op.execute("DELETE FROM audit_head")
