"""A cache of bearer-token principals that never outlives a revocation.

Resolving a bearer token costs a database round trip and, in FastAPI, a trip to the
thread pool; machine clients (FHIR, the API) send the same token many times a second.
This cache serves those repeats without weakening revocation, in one of two ways:

- **Announced** (PostgreSQL). It serves while this process's :class:`SecurityListener`
  holds a ``LISTEN prolo_security`` connection. A trigger on ``app_user`` and
  ``api_token`` (migration ``f1c0a7e5b9d2``) notifies that channel on every UPDATE or
  DELETE, from any code path or by hand, and the listener empties the cache: a revoked
  token or a deactivated user stops working as soon as the change commits and the
  notification arrives (milliseconds). When the listener has no connection the cache
  is off and empty, so a missed notification can never keep a revoked token alive. A
  lookup that began before an invalidation is not stored after it (generations).
- **Checked** (SQLite, where no notification reaches other processes). Every entry
  carries the value the ``security_generation`` counter had when it was looked up;
  SQLite triggers raise that counter on every change to a user or token (migration
  ``b2d7e4a9c1f3``). A cached principal is only *pending* until the request's own
  transaction has begun and read the counter (:func:`check_pending`, run by the
  session's ``after_begin`` event): the same value means nothing changed since the
  lookup, so the request sees exactly what a fresh lookup would; another value means a
  fresh lookup in that transaction, and the request is refused if the token no longer
  gives the same principal. The check rides on the request's first statement, so a
  cache hit costs no thread-pool trip of its own; a request whose check failed cannot
  commit (:func:`refuse_commit`).

Either way an entry lives at most ``ttl`` seconds and never past its token's expiry.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from collections import OrderedDict

import psycopg

from prolo.security.principal import Principal

CHANNEL = "prolo_security"
log = logging.getLogger("prolo.security")


@dataclasses.dataclass(frozen=True)
class Cached:
    """A cache hit: the principal, and in checked mode the counter it was read under."""

    principal: Principal
    stamp: int


class PrincipalCache:
    """Principals by token digest; see the module docstring for when it serves.

    ``checked=True`` is the SQLite mode: on from the start, every hit to be confirmed
    against ``security_generation`` by the request's transaction.
    """

    def __init__(
        self, *, ttl: float = 30.0, max_entries: int = 10_000, checked: bool = False
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.checked = checked
        self._entries: OrderedDict[str, tuple[float, dt.datetime, Principal, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._enabled = checked
        self._generation = 0

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def generation(self) -> int:
        """Take this before a database lookup and hand it to :meth:`put`."""
        return self._generation

    def get(self, digest: str, *, now: dt.datetime, source_ip: str | None) -> Cached | None:
        """The cached principal for ``digest`` (with this request's address), or None.

        In checked mode the caller must have the hit confirmed (:class:`Pending`).
        """
        if not self._enabled:
            return None
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            stored_at, token_expires, principal, stamp = entry
            if time.monotonic() - stored_at > self.ttl or token_expires <= now:
                del self._entries[digest]
                return None
        return Cached(dataclasses.replace(principal, source_ip=source_ip), stamp)

    def put(
        self,
        digest: str,
        principal: Principal,
        *,
        token_expires: dt.datetime,
        generation: int,
        stamp: int = 0,
    ) -> None:
        """Keep a looked-up principal unless the cache was emptied since ``generation``.

        ``stamp`` is the ``security_generation`` value read in the lookup's transaction
        (checked mode).
        """
        with self._lock:
            if not self._enabled or generation != self._generation:
                return
            self._entries[digest] = (time.monotonic(), token_expires, principal, stamp)
            self._entries.move_to_end(digest)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def drop(self, digest: str) -> None:
        with self._lock:
            self._entries.pop(digest, None)

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()

    def enable(self) -> None:
        self.clear()
        self._enabled = True

    def disable(self) -> None:
        if self.checked:  # checked mode needs no listener: it stays on
            return
        self._enabled = False
        self.clear()


class SecurityListener(threading.Thread):
    """Listens for user and token changes and empties ``cache`` on each.

    The cache is on only while the LISTEN connection is up; on any error it is turned
    off, and the listener reconnects after ``retry`` seconds.
    """

    def __init__(self, cache: PrincipalCache, dsn: str, *, retry: float = 1.0) -> None:
        super().__init__(name="prolo-security-listener", daemon=True)
        self.cache = cache
        self.dsn = dsn
        self.retry = retry
        self.listening = threading.Event()
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.cache.enable()
                    self.listening.set()
                    while not self._stopping.is_set():
                        for _ in conn.notifies(timeout=0.5):
                            self.cache.clear()
            except Exception as error:  # the database went away: stop caching, retry
                log.warning("security listener lost its connection: %s", type(error).__name__)
            finally:
                self.cache.disable()
                self.listening.clear()
            self._stopping.wait(self.retry)

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=5)
