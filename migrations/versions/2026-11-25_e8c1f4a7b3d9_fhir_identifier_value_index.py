"""fhir_identifier: an index for looking an identifier up by type and value

The ``identifier`` search parameter, and so every conditional create on identifier,
looks a value up by resource type without a clinic; the unique key leads with the
clinic, so such a lookup read every identifier of the type. A re-import of a large
bundle makes one lookup per resource.

Revision ID: e8c1f4a7b3d9
Revises: b2d7e4a9c1f3
Create Date: 2026-11-25 04:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "e8c1f4a7b3d9"
down_revision: str | None = "b2d7e4a9c1f3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_fhir_identifier_value", "fhir_identifier", ["resource_type", "value", "system"]
    )


def downgrade() -> None:
    op.drop_index("ix_fhir_identifier_value", table_name="fhir_identifier")
