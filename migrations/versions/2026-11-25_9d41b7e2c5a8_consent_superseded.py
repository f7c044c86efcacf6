"""consent: one consent on file per course; a newer consent supersedes the older one

Before, "consent on file" was the newest consent of a course not withdrawn, so withdrawing
the newest made an older, never-withdrawn consent count again. Now recording a consent
sets ``superseded_at`` on the one on file, and a partial unique index allows one consent
on file (neither withdrawn nor superseded) per course.

Existing data: of each course's consents, only the newest (by ``signed_at``, then ``id``,
the order the old rule used) may stay on file; every other consent not withdrawn is
marked superseded when the newest was recorded (its ``created_at``, or the older
consent's own ``signed_at`` if that is later), so a course whose newest consent was
withdrawn has none on file, as the clinician who recorded the withdrawal meant.
Downgrade drops the column, the checks and the index (superseded consents then count as
not withdrawn again, as the old rule read them).

Revision ID: 9d41b7e2c5a8
Revises: c4e8a1f2b6d3
Create Date: 2026-11-25 02:00:00.000000
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "9d41b7e2c5a8"
down_revision: str | None = "c4e8a1f2b6d3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ON_FILE = "withdrawn_at IS NULL AND superseded_at IS NULL"


def _supersede_older(conn: sa.Connection) -> None:
    consent = sa.table(
        "consent",
        sa.column("id", sa.Integer()),
        sa.column("course_id", sa.Integer()),
        sa.column("signed_at", sa.DateTime(timezone=True)),
        sa.column("withdrawn_at", sa.DateTime(timezone=True)),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("superseded_at", sa.DateTime(timezone=True)),
    )
    rows = conn.execute(
        sa.select(
            consent.c.id,
            consent.c.course_id,
            consent.c.signed_at,
            consent.c.withdrawn_at,
            consent.c.created_at,
        ).order_by(consent.c.course_id, consent.c.signed_at.desc(), consent.c.id.desc())
    ).all()
    newest_recorded: dict[int, Any] = {}
    for row in rows:
        if row.course_id not in newest_recorded:
            newest_recorded[row.course_id] = row.created_at
            continue
        if row.withdrawn_at is not None:
            continue
        ended = newest_recorded[row.course_id]
        if ended is None or ended < row.signed_at:
            ended = row.signed_at
        conn.execute(sa.update(consent).where(consent.c.id == row.id).values(superseded_at=ended))


def upgrade() -> None:
    with op.batch_alter_table("consent", schema=None) as batch_op:
        batch_op.add_column(sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True))
    _supersede_older(op.get_bind())
    with op.batch_alter_table("consent", schema=None) as batch_op:
        batch_op.create_check_constraint(
            batch_op.f("ck_consent_superseded_after_signed"),
            "superseded_at IS NULL OR superseded_at >= signed_at",
        )
        batch_op.create_check_constraint(
            batch_op.f("ck_consent_withdrawn_or_superseded"),
            "withdrawn_at IS NULL OR superseded_at IS NULL",
        )
        batch_op.create_index(
            "uq_consent_course_on_file",
            ["course_id"],
            unique=True,
            sqlite_where=sa.text(ON_FILE),
            postgresql_where=sa.text(ON_FILE),
        )


def downgrade() -> None:
    with op.batch_alter_table("consent", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_consent_course_on_file",
            sqlite_where=sa.text(ON_FILE),
            postgresql_where=sa.text(ON_FILE),
        )
        batch_op.drop_constraint(batch_op.f("ck_consent_withdrawn_or_superseded"), type_="check")
        batch_op.drop_constraint(batch_op.f("ck_consent_superseded_after_signed"), type_="check")
        batch_op.drop_column("superseded_at")
