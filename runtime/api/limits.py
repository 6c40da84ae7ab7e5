"""A small in-process rate limiter for local mode, where the API is the last line.

Fixed one-minute windows per key (``user:<sub>`` after sign-in, ``ip:<address>`` before). On
Lambda it is not installed: API Gateway's stage throttling applies there, and an in-process
counter would only see one container's share anyway.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

WINDOW_SECONDS = 60.0
MAX_TRACKED_KEYS = 10_000


class RateLimiter:
    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.per_minute = per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}

    def hit(self, key: str) -> int | None:
        """Count one request for ``key``: None if allowed, else seconds until it would be."""
        now = self._clock()
        with self._lock:
            start, count = self._windows.get(key, (now, 0))
            if now - start >= WINDOW_SECONDS:
                start, count = now, 0
            if count >= self.per_minute:
                return max(1, math.ceil(WINDOW_SECONDS - (now - start)))
            self._windows[key] = (start, count + 1)
            if len(self._windows) > MAX_TRACKED_KEYS:
                self._forget_expired(now)
            return None

    def _forget_expired(self, now: float) -> None:
        expired = [k for k, (start, _) in self._windows.items() if now - start >= WINDOW_SECONDS]
        for key in expired:
            del self._windows[key]
        if len(self._windows) > MAX_TRACKED_KEYS:  # still full: drop the oldest windows
            for key, _ in sorted(self._windows.items(), key=lambda kv: kv[1][0])[
                : len(self._windows) - MAX_TRACKED_KEYS
            ]:
                del self._windows[key]
