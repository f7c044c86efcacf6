"""Login throttling by client address: a sliding window of failed attempts.

Account lockout (in ``service.authenticate``) stops guessing at one account; this
stops one address from trying many accounts (password spraying). The window lives
in the process: behind several workers each counts separately, which still bounds
the rate; docs/deploy.md says to add a limit at the reverse proxy as well.
"""

from __future__ import annotations

import threading
import time
from collections import deque

MAX_FAILURES = 20
WINDOW_SECONDS = 15 * 60
MAX_TRACKED = 10_000


class LoginThrottle:
    """Counts failed logins per address within a sliding window."""

    def __init__(self, *, max_failures: int = MAX_FAILURES, window: float = WINDOW_SECONDS) -> None:
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        attempts = self._failures.setdefault(key, deque())
        while attempts and attempts[0] <= now - self.window:
            attempts.popleft()
        return attempts

    def blocked(self, key: str | None, *, now: float | None = None) -> bool:
        """True when ``key`` has failed too often within the window."""
        if key is None:
            return False
        now = time.monotonic() if now is None else now
        with self._lock:
            return len(self._recent(key, now)) >= self.max_failures

    def failed(self, key: str | None, *, now: float | None = None) -> None:
        """Record one failed attempt from ``key``."""
        if key is None:
            return
        now = time.monotonic() if now is None else now
        with self._lock:
            if len(self._failures) >= MAX_TRACKED and key not in self._failures:
                # Forget the address seen least recently rather than grow without bound.
                oldest = min(
                    self._failures,
                    key=lambda k: self._failures[k][-1] if self._failures[k] else 0.0,
                )
                del self._failures[oldest]
            self._recent(key, now).append(now)
