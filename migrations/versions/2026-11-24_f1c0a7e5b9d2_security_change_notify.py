"""security change notification: PostgreSQL tells app processes when a user or token changes

Each app process keeps a short-lived cache of bearer-token principals
(prolo.security.principal_cache) and empties it when this notification arrives. A
trigger, rather than the code paths that revoke or deactivate, so that a change made
anywhere (admin page, CLI, SQL by hand) reaches every process. SQLite keeps no such
cache, so it needs no trigger.

Revision ID: f1c0a7e5b9d2
Revises: a7c3e91d5f20
Create Date: 2026-11-24 23:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "f1c0a7e5b9d2"
down_revision: str | None = "a7c3e91d5f20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNEL = "prolo_security"
TABLES = ("app_user", "api_token")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE FUNCTION prolo_security_changed() RETURNS trigger AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);
            RETURN NULL;
        END;
        $$ LANGUAGE plpgsql
        """
    )
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_security_changed AFTER UPDATE OR DELETE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION prolo_security_changed()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_security_changed ON {table}")
    op.execute("DROP FUNCTION IF EXISTS prolo_security_changed()")
