"""allergy: how certain an allergy is (FHIR AllergyIntolerance.verificationStatus)

An allergy sent over FHIR as ``confirmed`` or ``unconfirmed`` was kept without saying
which, and read back without a verification status. A suspected allergy to an
injectate component must stay on the chart (the procedure pre-check acts on every
listed allergy), so the chart now records which it is: ``confirmed``, ``unconfirmed``,
or NULL when it was not said (every allergy recorded before, and those added on the
chart's form). Refuted and entered-in-error allergies are not kept at all.

Existing rows stay NULL: nothing recorded how certain they were. Downgrade drops the
column and its check.

Revision ID: 290ea4ad4c63
Revises: e8c1f4a7b3d9
Create Date: 2026-11-25 05:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "290ea4ad4c63"
down_revision: str | None = "e8c1f4a7b3d9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("allergy", schema=None) as batch_op:
        batch_op.add_column(sa.Column("verification_status", sa.String(length=12), nullable=True))
        batch_op.create_check_constraint(
            batch_op.f("ck_allergy_verification_status_valid"),
            "verification_status IN ('confirmed', 'unconfirmed')",
        )


def downgrade() -> None:
    with op.batch_alter_table("allergy", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("ck_allergy_verification_status_valid"), type_="check"
        )
        batch_op.drop_column("verification_status")
