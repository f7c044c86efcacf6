"""A short-lived cache of bearer-token principals that empties itself on any change.

Resolving a bearer token costs a database round trip and, in FastAPI, a trip to the
thread pool; machine clients (FHIR, the API) send the same token many times a second.
This cache serves those repeats, without weakening revocation:

- It runs only on PostgreSQL, while this process's :class:`SecurityListener` holds a
  ``LISTEN prolo_security`` connection. A trigger on ``app_user`` and ``api_token``
  (migration ``f1c0a7e5b9d2``) notifies that channel on every UPDATE or DELETE, from
  any code path or by hand, and the listener empties the cache: a revoked token or a
  deactivated user stops working as soon as the change commits and the notification
  arrives (milliseconds).
- When the listener has no connection the cache is off and empty, so a missed
  notification can never keep a revoked token alive; it costs only the lookups.
- An entry lives at most ``ttl`` seconds and never past its token's expiry.
- A lookup that began before an invalidation is not stored after it (generations).

SQLite deployments have no such channel (and the CLI may revoke from another
process), so they do not cache.
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


class PrincipalCache:
    """Principals by token digest; see the module docstring for when it serves."""

    def __init__(self, *, ttl: float = 30.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, dt.datetime, Principal]] = OrderedDict()
        self._lock = threading.Lock()
        self._enabled = False
        self._generation = 0

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def generation(self) -> int:
        """Take this before a database lookup and hand it to :meth:`put`."""
        return self._generation

    def get(self, digest: str, *, now: dt.datetime, source_ip: str | None) -> Principal | None:
        """The cached principal for ``digest`` (with this request's address), or None."""
        if not self._enabled:
            return None
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            stored_at, token_expires, principal = entry
            if time.monotonic() - stored_at > self.ttl or token_expires <= now:
                del self._entries[digest]
                return None
        return dataclasses.replace(principal, source_ip=source_ip)

    def put(
        self, digest: str, principal: Principal, *, token_expires: dt.datetime, generation: int
    ) -> None:
        """Keep a looked-up principal unless the cache was emptied since ``generation``."""
        with self._lock:
            if not self._enabled or generation != self._generation:
                return
            self._entries[digest] = (time.monotonic(), token_expires, principal)
            self._entries.move_to_end(digest)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()

    def enable(self) -> None:
        self.clear()
        self._enabled = True

    def disable(self) -> None:
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
