"""What every part of certyard hands to the notifier: one event, and the sink it goes to.

The CT monitor, the renewal queue and the deployer raise events; notify/ delivers them
(webhooks, Slack/Teams, e-mail, script hooks). ``idempotency_key`` is the same for the same fact
(e.g. "ct:<tbs_sha256>" or "expiry:<cert sha256>:14d") so a receiver, and the notifier's own
deduplication, can drop repeats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Severity = Literal["info", "low", "medium", "high", "critical"]


@dataclass(frozen=True)
class Notification:
    kind: str  # e.g. "ct_unknown_issuance", "ct_log_misbehaviour", "expiry", "deploy_failed"
    severity: Severity
    subject: str  # one line a person reads first
    idempotency_key: str
    details: dict[str, Any] = field(default_factory=dict)


class NotificationSink(Protocol):
    async def notify(self, event: Notification) -> None: ...


class NullSink:
    """Delivers nothing: the default where no notifier is configured."""

    async def notify(self, event: Notification) -> None:
        return None
