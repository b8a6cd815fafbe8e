"""Expiry alerts at thresholds (default 30, 14, 7 and 1 days before notAfter), deduplicated.

For each certificate, the thresholds it has crossed and not yet recorded are new. Only the most
urgent of them alerts (a certificate found 5 days before expiry gets the 7-day alert, not three
alerts), and every one of them is recorded in ``notify_expiry_alerts`` so none alerts again,
across restarts and instances. A threshold of 0 alerts when the certificate has expired.

Order: notify, then record. A crash in between alerts again at the next check, and the
Notifier's delivery ledger (same idempotency key "expiry:<key>:<N>d") drops that repeat, so a
hook still sees one alert.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notify.events import Notification, NotificationSink, Severity
from storage.models_notify import NotifyExpiryAlert

DEFAULT_THRESHOLDS = (30, 14, 7, 1)
_CHUNK = 500  # keys per IN (...) query: well under SQLite's bound-parameter limit


@dataclass(frozen=True)
class ExpiringCertificate:
    key: str  # stable id, e.g. the SHA-256 of the DER (hex)
    names: tuple[str, ...]
    not_after: dt.datetime
    owner: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


def crossed(cert: ExpiringCertificate, thresholds: Iterable[int], now: dt.datetime) -> list[int]:
    """Thresholds (days) already reached at ``now``; 0 means it has expired."""
    left = cert.not_after - now
    return sorted((t for t in thresholds if left <= dt.timedelta(days=t)), reverse=True)


def severity_for(days: int) -> Severity:
    if days <= 1:
        return "critical"
    if days <= 7:
        return "high"
    if days <= 14:
        return "medium"
    return "low"


def alert_for(cert: ExpiringCertificate, threshold: int, now: dt.datetime) -> Notification:
    left = cert.not_after - now
    name = cert.names[0] if cert.names else cert.key[:16]
    more = f" (+{len(cert.names) - 1} more)" if len(cert.names) > 1 else ""
    when = cert.not_after.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    if left <= dt.timedelta(0):
        subject = f"Certificate for {name}{more} expired on {when}"
        severity: Severity = "critical"
    else:
        days = left.total_seconds() / 86400
        subject = f"Certificate for {name}{more} expires in {days:.1f} days ({when})"
        severity = severity_for(threshold)
    return Notification(
        kind="expiry",
        severity=severity,
        subject=subject,
        idempotency_key=f"expiry:{cert.key}:{threshold}d",
        details={
            "certificate": cert.key,
            "names": list(cert.names),
            "not_after": cert.not_after.astimezone(dt.UTC).isoformat(),
            "days_left": round(left.total_seconds() / 86400, 2),
            "threshold_days": threshold,
            "owner": cert.owner,
            "labels": dict(cert.labels),
        },
    )


async def _recorded(
    sessions: async_sessionmaker[AsyncSession], keys: Sequence[str]
) -> dict[str, set[int]]:
    found: dict[str, set[int]] = {}
    async with sessions() as session:
        for start in range(0, len(keys), _CHUNK):
            rows = await session.execute(
                select(NotifyExpiryAlert.cert_key, NotifyExpiryAlert.threshold_days).where(
                    NotifyExpiryAlert.cert_key.in_(keys[start : start + _CHUNK])
                )
            )
            for key, days in rows:
                found.setdefault(key, set()).add(days)
    return found


async def _record(
    sessions: async_sessionmaker[AsyncSession],
    cert: ExpiringCertificate,
    thresholds: Sequence[int],
    alerted: int | None,
    now: dt.datetime,
) -> None:
    try:
        async with sessions.begin() as session:
            for days in thresholds:
                session.add(
                    NotifyExpiryAlert(
                        cert_key=cert.key,
                        threshold_days=days,
                        not_after=cert.not_after,
                        alerted=days == alerted,
                        recorded_at=now,
                    )
                )
    except IntegrityError:
        pass  # another instance recorded the same crossing at the same time


async def check_expiry(
    sessions: async_sessionmaker[AsyncSession],
    sink: NotificationSink,
    certificates: Iterable[ExpiringCertificate],
    *,
    now: dt.datetime,
    thresholds: Sequence[int] = DEFAULT_THRESHOLDS,
) -> list[Notification]:
    """Alert every certificate that crossed a new threshold; returns the alerts raised."""
    certs = {c.key: c for c in certificates}
    due = {key: crossed(c, thresholds, now) for key, c in certs.items()}
    due = {key: days for key, days in due.items() if days}
    if not due:
        return []
    recorded = await _recorded(sessions, list(due))
    raised: list[Notification] = []
    for key, days in due.items():
        done = recorded.get(key, set())
        new = [d for d in days if d not in done]
        if not new:
            continue
        cert = certs[key]
        most_urgent = min(new)
        # A threshold added to the configuration later that is less urgent than one already
        # alerted is recorded quietly.
        alert = most_urgent if not done or most_urgent < min(done) else None
        if alert is not None:
            event = alert_for(cert, alert, now)
            await sink.notify(event)
            raised.append(event)
        await _record(sessions, cert, new, alert, now)
    return raised


class ExpiryAlerter:
    """check_expiry with its settings bound: what the renewal queue calls on each pass."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        sink: NotificationSink,
        thresholds: Sequence[int] = DEFAULT_THRESHOLDS,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.sessions = sessions
        self.sink = sink
        self.thresholds = tuple(thresholds)
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))

    async def check(self, certificates: Iterable[ExpiringCertificate]) -> list[Notification]:
        return await check_expiry(
            self.sessions, self.sink, certificates, now=self._clock(), thresholds=self.thresholds
        )
