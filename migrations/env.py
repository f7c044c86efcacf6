"""Alembic environment: runs against the connection prolo hands it, or its settings' URL."""

from typing import Any, Literal

import sqlalchemy as sa
from alembic import context
from sqlalchemy import Connection

import prolo.models  # noqa: F401  (registers every table on the metadata)
from prolo.db import Base, UTCDateTime, create_db_engine
from prolo.settings import Settings

config = context.config
target_metadata = Base.metadata


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    """Render prolo's column types as plain SQLAlchemy ones: migrations never import app code."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if type_ == "type" and isinstance(obj, sa.JSON) and obj._variant_mapping:
        # prolo.dbtypes.JsonDoc: JSONB on PostgreSQL. Alembic's default rendering
        # names a bare `Text()` that the revision file never imports.
        autogen_context.imports.add("from sqlalchemy.dialects import postgresql")
        return 'sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")'
    return False


def run(connection: Connection) -> None:
    context.configure(
        render_item=render_item,
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    engine = create_db_engine(Settings())
    with engine.connect() as conn:
        run(conn)
    engine.dispose()
