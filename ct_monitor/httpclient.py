"""HTTP for one log: User-Agent, per-log requests-per-second budget, 429/503 + Retry-After.

One ``LogHTTP`` per log. All requests to that log share a token bucket (``requests_per_second``)
and a "blocked until" instant: when the log answers 429 or 503, every request to it waits out the
Retry-After (RFC 9110 §10.2.3), not only the one that got it. Waits longer than
``max_retry_wait`` — or more than ``max_attempts`` refusals in a row — raise ``RateLimited`` so
the monitor can move on to other logs and come back.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Mapping

import aiohttp

from ct_monitor.types import LogError, RateLimited

USER_AGENT_PRODUCT = "certyard-ct/0.1"
DEFAULT_MAX_BODY = 64 << 20


def user_agent(contact: str) -> str:
    """``certyard-ct/0.1 (+contact)``: lets a log operator reach whoever runs the monitor."""
    return f"{USER_AGENT_PRODUCT} (+{contact})" if contact else USER_AGENT_PRODUCT


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """RFC 9110 §10.2.3 Retry-After: delay-seconds or an HTTP-date; None when absent/garbage."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class BodyTooLarge(ValueError):
    pass


async def read_body(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, refusing more than ``limit`` bytes (declared or actually sent)."""
    if resp.content_length is not None and resp.content_length > limit:
        raise BodyTooLarge(f"body over {limit} bytes")
    body = bytearray()
    async for chunk in resp.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(f"body over {limit} bytes")
    return bytes(body)


class TokenBucket:
    """Requests-per-second budget; ``rate <= 0`` means unlimited."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate)
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        if self.rate <= 0:
            return
        async with self._lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


class LogHTTP:
    """GETs against one log's URL prefix (``base_url`` ends with '/')."""

    def __init__(
        self,
        base_url: str,
        *,
        user_agent: str = USER_AGENT_PRODUCT,
        requests_per_second: float = 0.0,
        timeout: float = 30.0,
        max_retry_wait: float = 60.0,
        max_attempts: int = 6,
        connections: int = 8,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.log_url = base_url  # as the caller names the log, for errors
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.bucket = TokenBucket(requests_per_second)
        self.max_retry_wait = max_retry_wait
        self.max_attempts = max_attempts
        self.max_body = max_body
        self.blocked_until = 0.0  # monotonic instant before which no request is sent
        self.requests = 0
        self.rate_limited = 0  # 429/503 answers seen, for metrics
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._headers = {"User-Agent": user_agent, "Accept-Encoding": "gzip, identity"}
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._connections),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(
        self, path: str, params: Mapping[str, str | int] | None = None, *, allow_404: bool = False
    ) -> bytes | None:
        """GET ``base_url + path``; the body, or None for a 404 when ``allow_404``."""
        url = self.base_url + path
        backoff = 1.0
        for attempt in range(1, self.max_attempts + 1):
            wait = self.blocked_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self.bucket.acquire()
            self.requests += 1
            try:
                async with self._get_session().get(url, params=params) as resp:
                    if resp.status in (429, 503):
                        self.rate_limited += 1
                        delay = parse_retry_after(resp.headers.get("Retry-After"))
                        if delay is None:
                            delay = backoff  # no Retry-After: exponential backoff
                            backoff = min(backoff * 2, 60.0)
                        self.blocked_until = max(self.blocked_until, time.monotonic() + delay)
                        if delay > self.max_retry_wait or attempt == self.max_attempts:
                            raise RateLimited(self.log_url, delay, f"HTTP {resp.status} on {path}")
                        continue
                    if resp.status == 404 and allow_404:
                        return None
                    if resp.status != 200:
                        text = (await resp.content.read(300)).decode("utf-8", "replace")
                        raise LogError(self.log_url, f"HTTP {resp.status} on {path}: {text!r}")
                    try:
                        return await read_body(resp, self.max_body)
                    except BodyTooLarge as exc:
                        raise LogError(self.log_url, f"{path}: {exc}") from None
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise LogError(self.log_url, f"{path}: {type(exc).__name__}: {exc}") from None
        raise RateLimited(self.log_url, backoff)  # not reached: the loop raises or returns
