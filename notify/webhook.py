"""Webhook hooks: POST a JSON body (generic, Slack or Teams shape) to a URL.

Headers (generic and chat formats alike):
  X-Certyard-Signature: sha256=<hex HMAC-SHA256 (RFC 2104) of the raw body with the hook's secret>
  X-Certyard-Timestamp: Unix seconds when this attempt was made
  Idempotency-Key:      the event's idempotency key (same on every retry and re-drive; see
                        draft-ietf-httpapi-idempotency-key-header)

Status handling: 2xx delivered; 408, 429 and 5xx retryable (Retry-After honoured, RFC 9110
§10.2.3); any other status is permanent. Redirects are not followed, so a signed body never goes
to a place the operator did not configure.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import hmac
from collections.abc import Callable
from typing import Any, Literal

import aiohttp

from notify.errors import DeliveryError
from notify.events import Notification
from notify.payloads import (
    json_payload,
    slack_payload,
    teams_adaptive,
    teams_messagecard,
    to_json_bytes,
)

WebhookFormat = Literal["json", "slack", "teams"]
USER_AGENT = "certyard-notify/0.1"


def sign(secret: bytes, body: bytes) -> str:
    """The X-Certyard-Signature value for ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def parse_retry_after(value: str | None, now: dt.datetime) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())


class WebhookHook:
    def __init__(
        self,
        name: str,
        url: str,
        *,
        fmt: WebhookFormat = "json",
        secret: str | None = None,
        timeout: float = 10.0,
        teams_card: Literal["adaptive", "messagecard"] = "adaptive",
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.fmt = fmt
        self._secret = None if secret is None else secret.encode()
        self.timeout = timeout
        self.teams_card = teams_card
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))

    def __repr__(self) -> str:  # never shows the secret
        return f"WebhookHook(name={self.name!r}, url={self.url!r}, fmt={self.fmt!r})"

    def body(self, event: Notification, now: dt.datetime) -> bytes:
        payload: dict[str, Any]
        if self.fmt == "slack":
            payload = slack_payload(event)
        elif self.fmt == "teams":
            payload = (
                teams_adaptive(event) if self.teams_card == "adaptive" else teams_messagecard(event)
            )
        else:
            payload = json_payload(event, now)
        return to_json_bytes(payload)

    def headers(self, event: Notification, body: bytes, now: dt.datetime) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Certyard-Timestamp": str(int(now.timestamp())),
            "Idempotency-Key": event.idempotency_key,
        }
        if self._secret is not None:
            headers["X-Certyard-Signature"] = sign(self._secret, body)
        return headers

    async def send(self, event: Notification) -> None:
        now = self._clock()
        body = self.body(event, now)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(
                    self.url,
                    data=body,
                    headers=self.headers(event, body, now),
                    allow_redirects=False,
                ) as response,
            ):
                status = response.status
                retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
                await response.content.read(4096)  # drain a little; the body is not used
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            raise DeliveryError(f"POST {self.url}: {reason}", retryable=True) from None
        if 200 <= status < 300:
            return
        retryable = status in (408, 429) or status >= 500
        raise DeliveryError(
            f"POST {self.url}: HTTP {status}",
            retryable=retryable,
            retry_after=retry_after if retryable else None,
        )
