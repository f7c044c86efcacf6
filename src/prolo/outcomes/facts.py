"""Kept course facts for the running application, refreshed from the database's change log.

The report's expensive part is grouping the raw rows by course (``engine`` module
docstring). A long-lived process therefore keeps each clinic's registry in DuckDB with
its course facts (:meth:`engine.LoadedRegistry.keep_facts`) and, before every report,
brings it up to date with the database:

1. Database triggers (migration ``8f3a2c1d9e47``) write the id of every course whose rows
   change (a score, a response, the course itself, a follow-up record, an appointment, a
   procedure record, a diary day; inserted, edited or deleted) to ``outcome_change``,
   with a sequence number ``seq`` in commit order. No write path can skip it.
2. :meth:`KeptRegistry.refresh` reads the courses marked since its watermark, loads their
   complete current rows from the database and replaces them in DuckDB
   (:meth:`engine.LoadedRegistry.replace`), which recomputes their facts only.
3. The report is computed from the kept facts (``engine.compute`` on the kept registry).

Correctness rules:

- A refresh reads only committed data: it runs on its own connection in its own
  transaction (REPEATABLE READ on PostgreSQL), never in the caller's, so a rolled-back
  write can never leave a phantom in the kept facts.
- Watermark. SQLite serializes writers, so ``seq`` (max + 1) grows in commit order and the
  watermark is the largest ``seq`` seen. On PostgreSQL ``seq`` is the writing
  transaction's id, and a transaction may commit after a later one; the watermark is
  therefore the oldest transaction still running when the refresh took its snapshot
  (``pg_snapshot_xmin``): every transaction below it had finished and is visible. Rows at
  or above the watermark are read again next time and skipped when already applied.
- A report is served from kept facts only when the caller's own transaction sees exactly
  the changes the refresh applied; when it sees others (its own uncommitted writes, or a
  commit after the refresh) the report is computed from the raw rows the caller sees. The
  report's ``facts`` entry says which, and how many courses the refresh brought up to
  date.

One report at a time per kept registry (a DuckDB connection is not shared between
threads); reports of other clinics, and every other request, proceed meanwhile. Each
process keeps its own copy: memory is about that of the clinic's registry in DuckDB.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, select, text
from sqlalchemy.orm import Session

from prolo.outcomes import engine
from prolo.outcomes.models import OutcomeChange
from prolo.outcomes.report import InstrumentRule, RegistryTables

__all__ = ["KeptRegistry", "Probe", "Refresh", "kept_registry", "probe", "reset"]

# Above this many changed courses a refresh reloads the clinic's registry whole: one
# scan of each table beats many id-list queries.
FULL_RELOAD_SHARE = 0.25
ID_CHUNK = 5000  # course ids per IN list (well under SQLite's bound-parameter limit)
MAX_KEPT = 8  # kept registries per process (least recently used dropped first)


@dataclass
class Refresh:
    """What one refresh did."""

    courses: int = 0  # courses whose rows were reloaded
    full: bool = False  # the whole registry was (re)loaded
    seconds: float = 0.0


@dataclass(frozen=True)
class Probe:
    """What the caller's own transaction sees of the change log (see :func:`probe`)."""

    postgres: bool
    max_seq: int | None = None  # SQLite: the largest seq in the caller's view
    own_xid: int | None = None  # PostgreSQL: the caller's transaction id, if it wrote
    own_writes: bool = False  # PostgreSQL: the caller marked a course itself


def probe(session: Session) -> Probe:
    """Look at the change log from the caller's transaction, before a refresh.

    On SQLite this also pins the caller's snapshot, so that without writes of its own it
    can never see more than the refresh that follows.
    """
    if session.get_bind().dialect.name == "postgresql":
        row = session.execute(
            text(
                "SELECT pg_current_xact_id_if_assigned()::text::bigint, EXISTS (SELECT 1 "
                "FROM outcome_change WHERE seq = "
                "pg_current_xact_id_if_assigned()::text::bigint)"
            )
        ).one()
        return Probe(True, own_xid=row[0], own_writes=bool(row[1]))
    return Probe(False, max_seq=session.scalar(select(func.max(OutcomeChange.seq))))


def _seq_rows(conn: Connection | Session, since: int | None) -> list[tuple[int, int]]:
    query = select(OutcomeChange.course_id, OutcomeChange.seq)
    if since is not None:
        query = query.where(OutcomeChange.seq >= since)
    return [(int(c), int(s)) for c, s in conn.execute(query).all()]


class KeptRegistry:
    """One clinic's (or every clinic's) registry with kept course facts, in this process."""

    def __init__(self, clinic_id: int | None, rules: Mapping[str, InstrumentRule]) -> None:
        self.clinic_id = clinic_id
        self.rules = dict(rules)
        self.lock = threading.Lock()
        self.loaded: engine.LoadedRegistry | None = None
        self.watermark: int | None = None
        # (course, seq) pairs at or above the watermark that are already applied.
        self.applied: dict[int, int] = {}
        self.n_courses = 0
        self.committed_max: int | None = None  # the largest seq the last refresh saw

    def seed(self, tables: RegistryTables, *, watermark: int | None) -> float:
        """Start from registry tables already at hand instead of a first full load from
        the database; ``watermark`` must be the change-log position they reflect (None:
        the database's change log was empty). Returns the seconds spent keeping facts.
        Caller holds :attr:`lock`."""
        self.close()
        self.loaded = engine.load(tables)
        start = time.perf_counter()
        self.loaded.keep_facts(self.rules)
        self.n_courses = tables.courses.num_rows
        self.watermark, self.applied, self.committed_max = watermark, {}, watermark
        return time.perf_counter() - start

    # -- refresh ------------------------------------------------------------------------
    def refresh(self, bind: Engine, *, progress: Any = None) -> Refresh:
        """Bring the kept facts up to date with the committed database. Caller holds
        :attr:`lock`. ``progress(done, total)`` is called as courses are reloaded."""
        from prolo.outcomes.service import load_registry

        start = time.perf_counter()
        result = Refresh()
        with _snapshot(bind) as (session, horizon):
            rows = _seq_rows(session, self.watermark)
            changed = sorted({c for c, s in rows if self.applied.get(c) != s})
            full = self.loaded is None or len(changed) > FULL_RELOAD_SHARE * max(self.n_courses, 1)
            if full:
                tables = load_registry(session=session, clinic_id=self.clinic_id)
                if self.loaded is not None:
                    self.loaded.close()
                self.loaded = engine.load(tables)
                self.loaded.keep_facts(self.rules)
                self.n_courses = tables.courses.num_rows
                result.full = True
                result.courses = self.n_courses
                if progress is not None:
                    progress(self.n_courses, self.n_courses)
            elif changed:
                assert self.loaded is not None  # noqa: S101  (not full, so loaded)
                for done, chunk in _chunks(changed, ID_CHUNK):
                    tables = load_registry(
                        session=session, clinic_id=self.clinic_id, course_ids=chunk
                    )
                    self.loaded.replace(tables, chunk)
                    if progress is not None:
                        progress(done, len(changed))
                self.n_courses = _count_courses(self.loaded)
                result.courses = len(changed)
            # SQLite: the largest seq seen; PostgreSQL: the oldest running transaction.
            seen_max = max((s for _, s in rows), default=self.watermark)
            self.committed_max = seen_max
            self.watermark = horizon if horizon is not None else seen_max
            self.applied = {
                c: s for c, s in rows if self.watermark is not None and s >= self.watermark
            }
        result.seconds = time.perf_counter() - start
        return result

    def serves(self, probe: Probe) -> bool:
        """Whether a caller whose view was probed (before the refresh) can be served
        from the kept facts: it has no uncommitted registry writes of its own."""
        if self.loaded is None:
            return False
        if probe.postgres:
            return not probe.own_writes
        # SQLite: the caller's snapshot was pinned before the refresh, so without writes
        # of its own it sees at most what the refresh saw; its own writes are numbered
        # above everything committed.
        return (probe.max_seq or 0) <= (self.committed_max or 0)

    def close(self) -> None:
        if self.loaded is not None:
            self.loaded.close()
            self.loaded = None


def _count_courses(loaded: engine.LoadedRegistry) -> int:
    row = loaded.con.execute("SELECT count(*) FROM courses_all").fetchone()
    return int(row[0]) if row else 0


def _chunks(ids: Sequence[int], size: int) -> Iterator[tuple[int, list[int]]]:
    for i in range(0, len(ids), size):
        chunk = list(ids[i : i + size])
        yield i + len(chunk), chunk


@contextmanager
def _snapshot(bind: Engine) -> Iterator[tuple[Session, int | None]]:
    """A read-only session of its own on committed data, and (PostgreSQL) the oldest
    transaction still running when its snapshot was taken."""
    postgres = bind.dialect.name == "postgresql"
    # A reader, never a writer: a web request's engine begins SQLite transactions
    # with the write lock (prolo.db.make_writer_sessionmaker), which the request
    # itself already holds.
    options = {"isolation_level": "REPEATABLE READ"} if postgres else {"sqlite_begin": "DEFERRED"}
    with bind.connect() as conn:
        conn = conn.execution_options(**options)
        with Session(bind=conn) as session, session.begin():
            horizon = None
            if postgres:
                # The first statement takes the transaction's snapshot.
                horizon = int(
                    session.scalar(
                        text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
                    )
                    or 0
                )
            yield session, horizon
            session.rollback()  # read only


_KEPT: OrderedDict[tuple[str, int | None], KeptRegistry] = OrderedDict()
_KEPT_LOCK = threading.Lock()


def kept_registry(
    bind: Engine, clinic_id: int | None, rules: Mapping[str, InstrumentRule]
) -> KeptRegistry:
    """This process's kept registry for ``clinic_id`` on database ``bind`` (created
    empty; the first refresh loads it)."""
    key = (bind.url.render_as_string(hide_password=True), clinic_id)
    with _KEPT_LOCK:
        kept = _KEPT.get(key)
        if kept is None or kept.rules != dict(rules):
            if kept is not None:
                kept.close()
            kept = _KEPT[key] = KeptRegistry(clinic_id, rules)
        _KEPT.move_to_end(key)
        while len(_KEPT) > MAX_KEPT:
            _, old = _KEPT.popitem(last=False)
            with old.lock:
                old.close()
        return kept


def reset() -> None:
    """Drop every kept registry of this process (tests; a process about to exit)."""
    with _KEPT_LOCK:
        while _KEPT:
            _, kept = _KEPT.popitem()
            with kept.lock:
                kept.close()


def tables_of(kept: KeptRegistry) -> engine.LoadedRegistry:
    """The kept DuckDB registry (after a refresh)."""
    if kept.loaded is None:
        raise RuntimeError("refresh the kept registry first")
    return kept.loaded
