"""audit chain lanes seed: heads for lanes 2 to 64; ids from the sequence on PostgreSQL

Revision ID: 71dbf56ef31b
Revises: 505c9e074a5b
Create Date: 2026-11-24 21:05:30.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "71dbf56ef31b"
down_revision: str | None = "505c9e074a5b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = "0" * 64
LANES = 64


def upgrade() -> None:
    # Re-runnable: only lanes that are not there yet are added.
    bind = op.get_bind()
    have = {row[0] for row in bind.execute(sa.text("SELECT id FROM audit_head"))}
    for lane in range(1, LANES + 1):
        if lane not in have:
            bind.execute(
                sa.text("INSERT INTO audit_head (id, last_id, last_hash) VALUES (:lane, 0, :g)"),
                {"lane": lane, "g": GENESIS},
            )
    if bind.dialect.name == "postgresql":
        # Entries used to take the next id by hand; from now on PostgreSQL's sequence
        # hands them out, so it must start above every id already used.
        bind.execute(
            sa.text(
                "SELECT setval(pg_get_serial_sequence('audit_event', 'id'), max(id)) "
                "FROM audit_event HAVING max(id) IS NOT NULL"
            )
        )


def downgrade() -> None:
    op.execute("DELETE FROM audit_head WHERE id > 1")
