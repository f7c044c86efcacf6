"""audit chain format version 2: the hashed bytes are the record

Each entry becomes one canonical JSON text (``entry``) and its raw SHA-256 ``digest``
(over the previous digest and ``entry``), with ``lane`` and ``prev_id`` as before; the
field columns (``recorded_at``, ``user_id`` ... ``detail``) become generated from
``entry`` (virtual on SQLite, stored on PostgreSQL), so readers are unchanged and no
field can be edited apart from what was hashed. Verification reads four small columns
instead of fourteen (see ``prolo.security.chain`` and docs/deploy.md section 5).

A column cannot be turned into a generated one in place on either database, so the
table is rebuilt: renamed aside, created anew, every row copied, the old one dropped.
Existing entries stay version 1: each is converted into the canonical text with
``"v": 1`` and its original ``prev_hash`` kept, and its digest is its old hash, so it
still verifies against its version 1 hash input (history is not re-blessed); the next
entry of each lane, version 2, chains on from it. The conversion is done here in
Python, by the chain format's own encoder, because verify requires a version 1
``entry`` to be exactly that encoding. A hash that is not 64 hex digits (edited before
the upgrade) is kept as its bytes, so verify still names that entry.

Downgrade converts a log of version 1 entries back; once version 2 entries exist it
refuses (they have no version 1 form: restore the backup taken before the upgrade).

Revision ID: c4e8a1f2b6d3
Revises: f1c0a7e5b9d2
Create Date: 2026-11-25 01:10:00.000000
"""

import datetime as dt
import json
from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from alembic import op

# The chain format's own encoder: verify accepts a version 1 entry only as exactly
# this encoding, so the conversion must not be a copy that could drift from it.
from prolo.security import chain

revision: str = "c4e8a1f2b6d3"
down_revision: str | None = "f1c0a7e5b9d2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 10_000
OLD_FIELDS = (
    "user_id, user_role, clinic_id, action, event, entity_type, entity_id, patient_id, "
    "outcome, source_ip, detail"
)
# (column, entry key, kind, type), in the table's column order.
GENERATED = (
    ("recorded_at", "at", "timestamp", sa.DateTime(timezone=True), False),
    ("user_id", "user", "integer", sa.Integer(), True),
    ("user_role", "role", "text", sa.String(length=20), True),
    ("clinic_id", "clinic", "integer", sa.Integer(), True),
    ("action", "action", "text", sa.String(length=1), False),
    ("event", "event", "text", sa.String(length=60), False),
    ("entity_type", "entity_type", "text", sa.String(length=40), False),
    ("entity_id", "entity", "text", sa.String(length=64), True),
    ("patient_id", "patient", "integer", sa.Integer(), True),
    ("outcome", "outcome", "text", sa.String(length=2), False),
    ("source_ip", "ip", "text", sa.String(length=45), True),
    ("detail", "detail", "text", sa.String(length=300), True),
)
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _field_sql(key: str, kind: str, dialect: str) -> str:
    # Frozen copy of prolo.security.models.entry_field_sql as of this revision.
    if dialect == "postgresql":
        value = f"((entry::json) ->> '{key}')"
        if kind == "integer":
            return f"({value})::integer"
        if kind == "timestamp":
            parts = ", ".join(
                f"substr({value}, {start}, {length})::integer"
                for start, length in ((1, 4), (6, 2), (9, 2), (12, 2), (15, 2))
            )
            return f"timezone('UTC', make_timestamp({parts}, substr({value}, 18, 9)::float8))"
        return value
    if kind == "timestamp":
        return f"replace(substr(json_extract(entry, '$.{key}'), 1, 26), 'T', ' ')"
    return f"json_extract(entry, '$.{key}')"


def _checks() -> list[sa.CheckConstraint]:
    return [
        sa.CheckConstraint(
            "outcome IN ('0', '4', '8', '12')", name=op.f("ck_audit_event_outcome_valid")
        ),
        sa.CheckConstraint(
            "action IN ('C', 'R', 'U', 'D', 'E')", name=op.f("ck_audit_event_action_valid")
        ),
    ]


def _set_aside(postgres: bool) -> None:
    """Rename audit_event to audit_event_old, freeing the names the new table takes."""
    op.drop_index("ix_audit_event_patient_recorded", table_name="audit_event")
    op.drop_index("ix_audit_event_lane_id", table_name="audit_event")
    op.rename_table("audit_event", "audit_event_old")
    if postgres:  # an index-backed constraint's name is taken schema-wide
        op.execute(
            "ALTER TABLE audit_event_old RENAME CONSTRAINT pk_audit_event TO pk_audit_event_old"
        )


def _finish(postgres: bool) -> None:
    """Drop the old table; index the new one; on PostgreSQL hand it the id sequence."""
    if postgres:
        op.execute(
            "ALTER TABLE audit_event ALTER COLUMN id SET DEFAULT nextval('audit_event_id_seq')"
        )
        op.execute("ALTER SEQUENCE audit_event_id_seq OWNED BY audit_event.id")
    op.drop_table("audit_event_old")
    op.create_index("ix_audit_event_patient_recorded", "audit_event", ["patient_id", "recorded_at"])
    op.create_index("ix_audit_event_lane_id", "audit_event", ["lane", "id"])


def _moment(value: object) -> dt.datetime:
    if isinstance(value, str):  # SQLite keeps UTC as naive text
        value = dt.datetime.fromisoformat(value)
    if not isinstance(value, dt.datetime):
        raise TypeError(f"audit_event.recorded_at holds {value!r}, not a time")
    moment = value
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _digest(hash_hex: str) -> bytes:
    try:
        if len(hash_hex) == 64:
            return bytes.fromhex(hash_hex)
    except ValueError:
        pass
    return hash_hex.encode()  # not what a hash looks like: verify names the entry


def _batches(bind: sa.Connection, select: str) -> Iterator[sa.Row[tuple[object, ...]]]:
    after = -(2**62)
    while rows := bind.execute(sa.text(select), {"after": after, "n": BATCH}).all():
        yield from rows
        after = rows[-1][0]


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    _set_aside(postgres)
    op.create_table(
        "audit_event",
        sa.Column("id", ID, autoincrement=False, nullable=False),
        sa.Column("lane", sa.SmallInteger(), server_default=sa.text("1"), nullable=False),
        sa.Column("prev_id", ID, nullable=True),
        sa.Column("entry", sa.Text(), nullable=False),
        sa.Column("digest", sa.LargeBinary(), nullable=False),
        *(
            sa.Column(
                name, type_, sa.Computed(_field_sql(key, kind, bind.dialect.name)), nullable=null
            )
            for name, key, kind, type_, null in GENERATED
        ),
        *_checks(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
    )
    insert = sa.text(
        "INSERT INTO audit_event (id, lane, prev_id, entry, digest) "
        "VALUES (:id, :lane, :prev_id, :entry, :digest)"
    ).bindparams(sa.bindparam("digest", type_=sa.LargeBinary()))
    rows: list[dict[str, object]] = []
    select = (
        f"SELECT id, recorded_at, {OLD_FIELDS}, prev_hash, hash, lane, prev_id "  # noqa: S608
        "FROM audit_event_old WHERE id > :after ORDER BY id LIMIT :n"
    )
    for row in _batches(bind, select):
        fields = tuple(row[2:13])
        rows.append(
            {
                "id": row[0],
                "lane": row[15],
                "prev_id": row[16],
                "entry": chain.v1_entry(_moment(row[1]), fields, str(row[13])),
                "digest": _digest(str(row[14])),
            }
        )
        if len(rows) == BATCH:
            bind.execute(insert, rows)
            rows.clear()
    if rows:
        bind.execute(insert, rows)
    _finish(postgres)


def downgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    version = "(entry::json ->> 'v')::integer" if postgres else "json_extract(entry, '$.v')"
    newer = bind.execute(
        sa.text(f"SELECT count(*) FROM audit_event WHERE {version} <> 1")  # noqa: S608
    ).scalar_one()
    if newer:
        raise RuntimeError(
            f"cannot downgrade the audit log: {newer} entries are in chain format version 2, "
            "which has no version 1 form; restore the backup taken before the upgrade"
        )
    _set_aside(postgres)
    op.create_table(
        "audit_event",
        sa.Column("id", ID, autoincrement=False, nullable=False),
        *(sa.Column(name, type_, nullable=null) for name, _key, _kind, type_, null in GENERATED),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("lane", sa.SmallInteger(), server_default=sa.text("1"), nullable=False),
        sa.Column("prev_id", ID, nullable=True),
        *_checks(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
    )
    table = sa.table(
        "audit_event",
        *(sa.column(name, type_) for name, _k, _t, type_, _n in GENERATED),
        sa.column("id"),
        sa.column("prev_hash"),
        sa.column("hash"),
        sa.column("lane"),
        sa.column("prev_id"),
    )
    rows: list[dict[str, object]] = []
    select = (
        "SELECT id, entry, digest, lane, prev_id FROM audit_event_old "
        "WHERE id > :after ORDER BY id LIMIT :n"
    )
    for row in _batches(bind, select):
        doc = json.loads(row[1])
        values: dict[str, object] = {
            column: doc[key] for column, key, _kind, _type, _null in GENERATED[1:]
        }
        digest = bytes(row[2])
        values.update(
            id=row[0],
            recorded_at=chain.parse_at(doc["at"]),
            prev_hash=doc["prev"],
            hash=digest.hex() if len(digest) == 32 else digest.decode(errors="replace"),
            lane=row[3],
            prev_id=row[4],
        )
        rows.append(values)
        if len(rows) == BATCH:
            bind.execute(sa.insert(table), rows)
            rows.clear()
    if rows:
        bind.execute(sa.insert(table), rows)
    _finish(postgres)
