"""The Notifier: a NotificationSink that fans each event out to the configured hooks.

For every hook whose filter (min severity, kinds) takes the event: claim the delivery in the
ledger (so the same idempotency key never reaches the same hook twice), try it with exponential
backoff and full jitter (bounded attempts, Retry-After honoured), and record it delivered or
dead-lettered. ``notify`` returns when every hook is done; it never raises for a failed
delivery (the dead-letter list holds it), so the caller's own work is never interrupted.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fnmatch
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notify import ledger
from notify.config import HookSettings, NotifySettings
from notify.email import EmailHook, SmtpTransport
from notify.errors import DeliveryError
from notify.events import Notification
from notify.payloads import SEVERITY_ORDER, event_from_dict
from notify.script import ScriptHook
from notify.secrets import read_secret_file
from notify.webhook import WebhookHook

log = structlog.get_logger("certyard.notify")

Clock = Callable[[], dt.datetime]
Sleep = Callable[[float], Awaitable[None]]


class Hook(Protocol):
    name: str

    async def send(self, event: Notification) -> None:
        """Deliver once; raise DeliveryError on failure."""


@dataclass(frozen=True)
class HookFilter:
    min_severity: str = "info"
    kinds: tuple[str, ...] = ()

    def accepts(self, event: Notification) -> bool:
        # An unknown severity string from a caller counts as the highest: better loud than lost.
        rank = SEVERITY_ORDER.get(event.severity, max(SEVERITY_ORDER.values()))
        if rank < SEVERITY_ORDER[self.min_severity]:
            return False
        return not self.kinds or any(fnmatch.fnmatchcase(event.kind, k) for k in self.kinds)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_seconds: float = 1.0
    max_seconds: float = 60.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Delay before attempt ``attempt + 1``: base * 2^(attempt-1), capped, with
        "equal jitter" (a uniform draw from half of it up to it) so many instances do not
        retry in step and the wait never collapses to nothing."""
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** (attempt - 1))
        return rng.uniform(ceiling / 2, ceiling)


@dataclass
class ConfiguredHook:
    hook: Hook
    filter: HookFilter = field(default_factory=HookFilter)
    timeout: float = 10.0


class Notifier:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        hooks: Sequence[ConfiguredHook],
        retry: RetryPolicy | None = None,
        *,
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.sessions = sessions
        self.hooks = list(hooks)
        self.retry = retry or RetryPolicy()
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret

    def _hold(self, configured: ConfiguredHook) -> dt.timedelta:
        # A claim outlives the whole retry sequence, so no other instance takes it over early.
        per_attempt = configured.timeout + self.retry.max_seconds
        return dt.timedelta(seconds=per_attempt * 2 + 60)

    async def notify(self, event: Notification) -> None:
        chosen = [c for c in self.hooks if c.filter.accepts(event)]
        await asyncio.gather(*(self._deliver_new(c, event) for c in chosen))

    async def notify_all(self, events: Sequence[Notification]) -> None:
        """Several events at once (each hook's deliveries run concurrently)."""
        await asyncio.gather(*(self.notify(e) for e in events))

    async def _deliver_new(self, configured: ConfiguredHook, event: Notification) -> None:
        name = configured.hook.name
        try:
            delivery_id = await ledger.claim(
                self.sessions, name, event, self._clock(), self._hold(configured)
            )
        except Exception:
            log.exception("notify_ledger_failed", hook=name, key=event.idempotency_key)
            return
        if delivery_id is None:
            log.debug("notify_duplicate_dropped", hook=name, key=event.idempotency_key)
            return
        await self._attempts(configured, event, delivery_id)

    async def _attempts(
        self, configured: ConfiguredHook, event: Notification, delivery_id: str
    ) -> bool:
        name = configured.hook.name
        error = "no attempt made"
        attempt = 0
        try:
            for attempt in range(1, self.retry.attempts + 1):
                try:
                    try:
                        await configured.hook.send(event)
                    except DeliveryError:
                        raise
                    except Exception as exc:
                        # A payload the hook cannot send (e.g. a header value with a newline):
                        # retrying cannot help, so it goes to the dead-letter list at once.
                        raise DeliveryError(
                            f"{type(exc).__name__}: {exc}", retryable=False
                        ) from exc
                except DeliveryError as exc:
                    error = str(exc)
                    log.warning(
                        "notify_attempt_failed",
                        hook=name,
                        key=event.idempotency_key,
                        attempt=attempt,
                        error=error,
                    )
                    if not exc.retryable or attempt == self.retry.attempts:
                        break
                    delay = self.retry.backoff(attempt, self._rng)
                    if exc.retry_after is not None:
                        if exc.retry_after > self.retry.max_seconds:
                            # Honour the receiver: do not come back sooner than it asked.
                            error += (
                                f" (Retry-After {exc.retry_after:g} s exceeds "
                                f"retry.max_seconds; left for a re-drive)"
                            )
                            break
                        delay = max(delay, exc.retry_after)
                    await ledger.attempt_failed(
                        self.sessions,
                        delivery_id,
                        attempt,
                        error,
                        self._clock(),
                        self._hold(configured),
                    )
                    await self._sleep(delay)
                else:
                    await ledger.finish(
                        self.sessions,
                        delivery_id,
                        delivered=True,
                        attempts=attempt,
                        error=None,
                        now=self._clock(),
                    )
                    log.info("notify_delivered", hook=name, key=event.idempotency_key)
                    return True
            await ledger.finish(
                self.sessions,
                delivery_id,
                delivered=False,
                attempts=attempt,
                error=error,
                now=self._clock(),
            )
            log.error("notify_dead_letter", hook=name, key=event.idempotency_key, error=error)
        except Exception:
            # A failing database must not break the caller (the claim lapses and is retried).
            log.exception("notify_ledger_failed", hook=name, key=event.idempotency_key)
        return False

    async def redrive(self, delivery_id: str) -> bool:
        """Send one dead letter again (to the hook of the same name, as configured now).
        True when delivered; False when it is dead again or cannot be re-driven."""
        by_name = {c.hook.name: c for c in self.hooks}
        record = await ledger.claim_dead(
            self.sessions, delivery_id, self._clock(), dt.timedelta(minutes=10)
        )
        if record is None:
            return False
        configured = by_name.get(record.hook)
        if configured is None:
            await ledger.finish(
                self.sessions,
                delivery_id,
                delivered=False,
                attempts=record.attempts,
                error=f"hook {record.hook!r} is no longer configured",
                now=self._clock(),
            )
            return False
        return await self._attempts(configured, event_from_dict(record.event), delivery_id)

    async def redrive_all(self, *, hook: str | None = None) -> dict[str, bool]:
        """Re-drive every dead letter (of ``hook``); returns id -> delivered."""
        dead = await ledger.list_dead_letters(self.sessions, hook=hook, limit=10_000)
        return {record.id: await self.redrive(record.id) for record in dead}


def build_hook(
    settings: HookSettings, smtp: SmtpTransport | None, clock: Clock | None = None
) -> Hook:
    if settings.type in ("webhook", "slack", "teams"):
        assert settings.url is not None  # HookSettings checked it
        secret = (
            None
            if settings.secret_file is None
            else read_secret_file(settings.secret_file, f"hook {settings.name} secret")
        )
        return WebhookHook(
            settings.name,
            settings.url,
            fmt="json" if settings.type == "webhook" else settings.type,
            secret=secret,
            timeout=settings.timeout,
            teams_card=settings.teams_card,
            clock=clock,
        )
    if settings.type == "email":
        assert smtp is not None
        return EmailHook(settings.name, smtp, settings.to, clock=clock)
    return ScriptHook(settings.name, settings.command, timeout=settings.timeout)


def smtp_transport(settings: NotifySettings) -> SmtpTransport:
    smtp = settings.smtp
    password = (
        None
        if smtp.password_file is None
        else read_secret_file(smtp.password_file, "smtp password")
    )
    return SmtpTransport(
        smtp.host,
        smtp.port,
        sender=smtp.from_,
        starttls=smtp.starttls,
        tls=smtp.tls,
        ca_file=smtp.ca_file,
        username=smtp.username,
        password=password,
        timeout=smtp.timeout,
    )


def build_notifier(
    settings: NotifySettings,
    sessions: async_sessionmaker[AsyncSession],
    *,
    clock: Clock | None = None,
    sleep: Sleep = asyncio.sleep,
) -> Notifier:
    """The Notifier for [notify]; raises NotifyConfigError (one line) for an unreadable secret."""
    needs_smtp = any(h.type == "email" for h in settings.hooks)
    smtp = smtp_transport(settings) if needs_smtp else None
    hooks = [
        ConfiguredHook(
            build_hook(h, smtp, clock),
            HookFilter(h.min_severity, tuple(h.kinds)),
            timeout=settings.smtp.timeout if h.type == "email" else h.timeout,
        )
        for h in settings.hooks
    ]
    retry = RetryPolicy(
        settings.retry.attempts, settings.retry.base_seconds, settings.retry.max_seconds
    )
    return Notifier(sessions, hooks, retry, clock=clock, sleep=sleep)
