# ruff: noqa: S608  (SQL text built from this migration's own table names; no values)
"""outcome change log: triggers mark each course whose registry rows change; synth answers
keyed by the pain rating's linkId

Revision ID: 8f3a2c1d9e47
Revises: 71dbf56ef31b
Create Date: 2026-11-24 23:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8f3a2c1d9e47"
down_revision: str | None = "71dbf56ef31b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every table the outcome report reads, and how a row names its course (NEW/OLD is put
# in front of each column). The kept course facts (prolo.outcomes.facts) are refreshed for
# the courses these triggers mark, so a write path cannot bypass them.
SOURCES: dict[str, str] = {
    "treatment_course": "{row}.id",
    "questionnaire_response": "{row}.course_id",
    "score": "(SELECT course_id FROM questionnaire_response WHERE id = {row}.response_id)",
    "course_follow_up": "{row}.course_id",
    "appointment": "{row}.course_id",
    "procedure": "{row}.course_id",
    "flare_diary_entry": "(SELECT course_id FROM appointment WHERE id = {row}.appointment_id)",
}
EVENTS = {"INSERT": ("NEW",), "UPDATE": ("NEW", "OLD"), "DELETE": ("OLD",)}


def _sqlite_trigger(table: str, event: str) -> str:
    # Writers are serialized on SQLite, so max + 1 grows in commit order.
    courses = " UNION ".join(
        f"SELECT {SOURCES[table].format(row=row)} AS course_id" for row in EVENTS[event]
    )
    return f"""
    CREATE TRIGGER outcome_change_{table}_{event.lower()} AFTER {event} ON {table}
    FOR EACH ROW BEGIN
        INSERT INTO outcome_change (course_id, seq)
        SELECT course_id, (SELECT coalesce(max(seq), 0) + 1 FROM outcome_change)
        FROM ({courses}) WHERE course_id IS NOT NULL
        ON CONFLICT (course_id) DO UPDATE SET seq = excluded.seq;
    END
    """


def _postgres_function(table: str) -> str:
    new = SOURCES[table].format(row="NEW")
    old = SOURCES[table].format(row="OLD")
    return f"""
    CREATE FUNCTION outcome_change_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        changed integer[] := ARRAY[]::integer[];
    BEGIN
        IF TG_OP <> 'DELETE' THEN changed := changed || {new}; END IF;
        IF TG_OP <> 'INSERT' THEN changed := changed || {old}; END IF;
        -- seq: this transaction's id, read against pg_snapshot_xmin by the refresh.
        INSERT INTO outcome_change (course_id, seq)
        SELECT DISTINCT c, pg_current_xact_id()::text::bigint
        FROM unnest(changed) AS c WHERE c IS NOT NULL
        ON CONFLICT (course_id) DO UPDATE SET seq = EXCLUDED.seq;
        RETURN NULL;
    END
    $$
    """


def upgrade() -> None:
    op.create_table(
        "outcome_change",
        sa.Column("course_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("course_id", name=op.f("pk_outcome_change")),
    )
    with op.batch_alter_table("outcome_change", schema=None) as batch_op:
        batch_op.create_index("ix_outcome_change_seq", ["seq"], unique=False)
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in SOURCES:
        if postgres:
            op.execute(_postgres_function(table))
            op.execute(
                f"CREATE TRIGGER outcome_change AFTER INSERT OR UPDATE OR DELETE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION outcome_change_{table}()"
            )
        else:
            for event in EVENTS:
                op.execute(_sqlite_trigger(table, event))
    # Every existing course is marked once, so kept facts start from all of them.
    op.execute(
        "INSERT INTO outcome_change (course_id, seq) SELECT id, "
        + ("pg_current_xact_id()::text::bigint" if postgres else "1")
        + " FROM treatment_course"
    )
    # synth used to key the pain rating's answer "pain"; the Questionnaire's linkId is
    # "pain-nrs". Only answer sets holding exactly that one key are rewritten.
    if postgres:
        op.execute(
            "UPDATE questionnaire_response SET answers = "
            "jsonb_build_object('pain-nrs', answers->'pain') "
            "WHERE instrument_id = 'pain-nrs' AND answers ? 'pain' "
            "AND (SELECT count(*) FROM jsonb_object_keys(answers)) = 1"
        )
    else:
        op.execute(
            "UPDATE questionnaire_response SET answers = "
            "json_object('pain-nrs', json_extract(answers, '$.pain')) "
            "WHERE instrument_id = 'pain-nrs' AND json_type(answers, '$.pain') IS NOT NULL "
            "AND (SELECT count(*) FROM json_each(answers)) = 1"
        )


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in SOURCES:
        if postgres:
            op.execute(f"DROP TRIGGER IF EXISTS outcome_change ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS outcome_change_{table}()")
        else:
            for event in EVENTS:
                op.execute(f"DROP TRIGGER IF EXISTS outcome_change_{table}_{event.lower()}")
    with op.batch_alter_table("outcome_change", schema=None) as batch_op:
        batch_op.drop_index("ix_outcome_change_seq")
    op.drop_table("outcome_change")
