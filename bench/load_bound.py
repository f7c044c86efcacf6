"""What the hardware allows: the questionnaire submission's writes with no framework.

Served by uvicorn as ``load_bound:app`` beside ``bench/load.py``'s runs (``--bound``),
on the same migrated PostgreSQL database, so the real path, this bound and the bare
ceiling are measured in one run on the same machine.

Each ``POST /r/{patient_id}`` with ``{"answers": {...}}`` does only what a submission
cannot skip, and nothing prolo adds: read the patient's clinic (the access check's
query), insert the ``questionnaire_response`` row (its real table, indexes and
change-log trigger), one ``score`` row, the FHIR version row, and one audit-shaped row
(17 columns, a scratch table without the chain), then commit. There is no
authentication, no validation, no scoring rule, no ORM, no thread pool: a raw ASGI
callable on psycopg's async connections (8 per worker), responses by orjson. It is an
upper bound for the real path, not an alternative to it.

``BOUND_GROUP=1`` adds group commit: requests arriving while a transaction runs are
written together in the next one (multi-row statements, one commit), and each is
answered after that commit. That is the remaining lever the real path does not use.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from typing import Any

import orjson
import psycopg

DSN = os.environ.get("BOUND_DSN", "postgresql://root@127.0.0.1:5432/prolo_bench_load")
GROUP = os.environ.get("BOUND_GROUP") == "1"
CONNECTIONS = 8
MAX_GROUP = 64

AUDIT_TABLE = """CREATE TABLE IF NOT EXISTS bound_audit (
    id bigserial PRIMARY KEY, recorded_at timestamptz, user_id int, user_role text,
    clinic_id int, action text, event text, entity_type text, entity_id text,
    patient_id int, outcome text, source_ip text, detail text, prev_hash text,
    hash text, lane smallint, prev_id bigint)"""

_CLINIC = "SELECT clinic_id FROM patient WHERE id = %s"
_RESPONSE = (
    "INSERT INTO questionnaire_response (clinic_id, patient_id, course_id, instrument_id,"
    " timepoint, status, answers, authored_at, idempotency_key, created_at)"
    " VALUES (%s, %s, NULL, 'odi', 'ad_hoc', 'completed', %s, %s, NULL, %s) RETURNING id"
)
_SCORE = (
    "INSERT INTO score (response_id, patient_id, instrument_id, score_key, value,"
    " effective_at) VALUES (%s, %s, 'odi', 'total', %s, %s)"
)
_VERSION = (
    "INSERT INTO fhir_resource_version (table_name, row_id, version, last_updated)"
    " VALUES ('questionnaire_response', %s, 1, %s)"
)
_AUDIT = (
    "INSERT INTO bound_audit (recorded_at, user_id, user_role, clinic_id, action, event,"
    " entity_type, entity_id, patient_id, outcome, source_ip, detail, prev_hash, hash,"
    " lane, prev_id) VALUES (%s, %s, 'patient', %s, 'C', 'questionnaire_response.create',"
    " 'QuestionnaireResponse', %s, %s, '0', '127.0.0.1', NULL, %s, %s, 1, NULL)"
)
# Group commit: the same rows, one statement per table for the whole group.
_GROUP_RESPONSE = (
    "INSERT INTO questionnaire_response (clinic_id, patient_id, course_id, instrument_id,"
    " timepoint, status, answers, authored_at, idempotency_key, created_at) VALUES "
)
_GROUP_CLINIC = "SELECT id, clinic_id FROM patient WHERE id = ANY(%s)"
_GROUP_SCORE = (
    "INSERT INTO score (response_id, patient_id, instrument_id, score_key, value,"
    " effective_at) SELECT r, p, 'odi', 'total', v, %s"
    " FROM unnest(%s::int[], %s::int[], %s::float8[]) AS t(r, p, v)"
)
_GROUP_VERSION = (
    "INSERT INTO fhir_resource_version (table_name, row_id, version, last_updated)"
    " SELECT 'questionnaire_response', r, 1, %s FROM unnest(%s::int[]) AS r"
)
_GROUP_AUDIT = (
    "INSERT INTO bound_audit (recorded_at, user_id, user_role, clinic_id, action, event,"
    " entity_type, entity_id, patient_id, outcome, source_ip, detail, prev_hash, hash,"
    " lane, prev_id) SELECT %s, p, 'patient', c, 'C', 'questionnaire_response.create',"
    " 'QuestionnaireResponse', r::text, p, '0', '127.0.0.1', NULL, %s, %s, 1, NULL"
    " FROM unnest(%s::int[], %s::int[], %s::int[]) AS t(r, p, c)"
)
HASH = "0" * 64

Submission = tuple[int, str, float]  # patient id, answers as JSON, score


class Bound:
    """One worker's connections and, in group mode, its queue of waiting submissions."""

    def __init__(self) -> None:
        self.pool: asyncio.Queue[psycopg.AsyncConnection[Any]] | None = None
        self.waiting: asyncio.Queue[tuple[Submission, asyncio.Future[int]]] = asyncio.Queue()
        self.writer: asyncio.Task[None] | None = None
        self.opening = asyncio.Lock()

    async def connections(self) -> asyncio.Queue[psycopg.AsyncConnection[Any]]:
        if self.pool is None:
            async with self.opening:  # the first requests arrive together: open once
                if self.pool is None:
                    pool: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()
                    for _ in range(CONNECTIONS):
                        pool.put_nowait(await psycopg.AsyncConnection.connect(DSN))
                    self.pool = pool
        return self.pool

    async def write_one(self, item: Submission) -> int:
        pool = await self.connections()
        conn = await pool.get()
        try:
            patient_id, answers, value = item
            now = dt.datetime.now(dt.UTC)
            async with conn.transaction():
                cur = conn.cursor()
                row = await (await cur.execute(_CLINIC, (patient_id,))).fetchone()
                if row is None:
                    raise LookupError("no such patient")
                clinic_id = row[0]
                await cur.execute(_RESPONSE, (clinic_id, patient_id, answers, now, now))
                created = await cur.fetchone()
                assert created is not None
                rid = int(created[0])
                await cur.execute(_SCORE, (rid, patient_id, value, now))
                await cur.execute(_VERSION, (rid, now))
                await cur.execute(
                    _AUDIT, (now, patient_id, clinic_id, str(rid), patient_id, HASH, HASH)
                )
            return rid
        finally:
            pool.put_nowait(conn)

    async def submit(self, item: Submission) -> int:
        if self.writer is None:
            self.writer = asyncio.ensure_future(self._write_groups())
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.waiting.put_nowait((item, future))
        return await future

    async def _write_groups(self) -> None:
        pool = await self.connections()
        while True:
            group = [await self.waiting.get()]
            while not self.waiting.empty() and len(group) < MAX_GROUP:
                group.append(self.waiting.get_nowait())
            conn = await pool.get()
            asyncio.ensure_future(self._write_group(conn, group))

    async def _write_group(
        self,
        conn: psycopg.AsyncConnection[Any],
        group: list[tuple[Submission, asyncio.Future[int]]],
    ) -> None:
        pool = await self.connections()
        try:
            now = dt.datetime.now(dt.UTC)
            patients = [item[0] for item, _ in group]
            async with conn.transaction():
                cur = conn.cursor()
                await cur.execute(_GROUP_CLINIC, (patients,))
                clinic_of: dict[int, int] = dict(await cur.fetchall())  # type: ignore[arg-type]
                clinics = [clinic_of[p] for p in patients]
                values = ", ".join(
                    ["(%s, %s, NULL, 'odi', 'ad_hoc', 'completed', %s, %s, NULL, %s)"] * len(group)
                )
                params: list[object] = []
                for (patient_id, answers, _), clinic_id in zip(
                    (item for item, _ in group), clinics, strict=True
                ):
                    params += [clinic_id, patient_id, answers, now, now]
                # The statement's text is fixed placeholders repeated; values are parameters.
                await cur.execute(_GROUP_RESPONSE + values + " RETURNING id", params)
                ids = [int(r[0]) for r in await cur.fetchall()]
                scores = [item[2] for item, _ in group]
                await cur.execute(_GROUP_SCORE, (now, ids, patients, scores))
                await cur.execute(_GROUP_VERSION, (now, ids))
                await cur.execute(_GROUP_AUDIT, (now, HASH, HASH, ids, patients, clinics))
            for (_, future), rid in zip(group, ids, strict=True):
                future.set_result(rid)
        except Exception as exc:  # every waiting request learns of the failure
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
        finally:
            pool.put_nowait(conn)


_bound = Bound()


async def _body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    status, out = 200, b'{"status":"ok"}'
    if scope["method"] == "POST" and scope["path"].startswith("/r/"):
        data = orjson.loads(await _body(receive))
        answers = data["answers"]
        item = (int(scope["path"][3:]), orjson.dumps(answers).decode(), 2.0 * sum(answers.values()))
        rid = await (_bound.submit(item) if GROUP else _bound.write_one(item))
        status, out = 201, orjson.dumps({"id": rid, "score": item[2]})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(out)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": out})
