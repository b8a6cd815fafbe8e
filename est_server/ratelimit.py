"""Per-label enrollment rate limits: a sliding window per label, in this server process.

The window is kept in memory on purpose: it guards the CA (and the HSM behind it) of this
process against a flood from one label's devices, so a restart forgetting it is harmless, and a
database round trip per enrollment would cost more than the check is worth. N instances behind a
load balancer therefore allow N times the limit (docs/est.md says so).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._events: dict[str, deque[float]] = {}

    def acquire(self, key: str, limit: int, window: float) -> int | None:
        """Count one event under ``key``: None when within ``limit`` per ``window`` seconds,
        else the whole seconds until a slot frees up (RFC 6585 §4 / RFC 9110 §10.2.3
        Retry-After). ``limit`` 0 means unlimited."""
        if limit <= 0:
            return None
        now = self._clock()
        events = self._events.setdefault(key, deque())
        while events and events[0] <= now - window:
            events.popleft()
        if len(events) >= limit:
            return max(1, math.ceil(events[0] + window - now))
        events.append(now)
        return None
