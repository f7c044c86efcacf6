"""security generation: a counter SQLite triggers raise when a user or API token changes

A SQLite app process caches bearer-token principals and checks this counter inside each
request's transaction (prolo.security.principal_cache), so a revocation or a change to
a user made by any process or by hand is honoured by the very next request. The table
exists on both databases, so the schema is one; only SQLite gets the triggers, since
PostgreSQL announces the same changes with NOTIFY (migration f1c0a7e5b9d2) and a row
updated by every login would serialise logins there.

Revision ID: b2d7e4a9c1f3
Revises: 9d41b7e2c5a8
Create Date: 2026-11-25 03:30:00.000000
"""

# ruff: noqa: S608  (trigger SQL built from this migration's own table names; no values)
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b2d7e4a9c1f3"
down_revision: str | None = "9d41b7e2c5a8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("app_user", "api_token")
EVENTS = ("UPDATE", "DELETE")


def upgrade() -> None:
    op.create_table(
        "security_generation",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_security_generation_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_security_generation")),
    )
    op.execute("INSERT INTO security_generation (id, value) VALUES (1, 0)")
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        for kind in EVENTS:
            op.execute(
                f"CREATE TRIGGER {table}_{kind.lower()}_security_generation "
                f"AFTER {kind} ON {table} "
                "BEGIN UPDATE security_generation SET value = value + 1 WHERE id = 1; END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in TABLES:
            for kind in EVENTS:
                op.execute(f"DROP TRIGGER IF EXISTS {table}_{kind.lower()}_security_generation")
    op.drop_table("security_generation")
