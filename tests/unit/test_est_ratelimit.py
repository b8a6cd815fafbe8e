"""The per-label sliding window behind EST's 429 (est_server/ratelimit.py)."""

from __future__ import annotations

from est_server.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_allows_the_limit_then_says_how_long_to_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    assert [limiter.acquire("a", 2, 60) for _ in range(2)] == [None, None]
    clock.now += 15
    assert limiter.acquire("a", 2, 60) == 45
    # Labels are counted apart.
    assert limiter.acquire("b", 2, 60) is None


def test_window_slides() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    assert limiter.acquire("a", 1, 10) is None
    clock.now += 10
    assert limiter.acquire("a", 1, 10) is None
    clock.now += 9.5
    assert limiter.acquire("a", 1, 10) == 1


def test_zero_is_unlimited() -> None:
    limiter = RateLimiter(Clock())
    assert all(limiter.acquire("a", 0, 1) is None for _ in range(1000))
