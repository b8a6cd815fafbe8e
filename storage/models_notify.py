"""Notification tables (migration 0012): the delivery ledger (with its dead letters) and the
expiry alerts already sent.

``notify_deliveries`` holds one row per (hook, idempotency key): it is what keeps one event from
reaching one hook twice, even across restarts and several instances. ``status`` is "sending"
(claimed by an instance until ``claimed_until``), "delivered" or "dead" (the dead-letter list:
every attempt failed; ``certyard``'s re-drive sends it again).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base


class NotifyDelivery(Base):
    __tablename__ = "notify_deliveries"
    __table_args__ = (
        UniqueConstraint("hook", "idempotency_key", name="uq_notify_deliveries_hook_key"),
        Index("ix_notify_deliveries_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hook: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(Text)
    # The whole event (kind, severity, subject, idempotency_key, details): a re-drive rebuilds
    # the payload from it.
    event: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # sending | delivered | dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    claimed_until: Mapped[dt.datetime | None]
    delivered_at: Mapped[dt.datetime | None]


class NotifyExpiryAlert(Base):
    """One expiry threshold crossed by one certificate: recorded so it never alerts twice.

    ``alerted`` is False for a threshold passed over because a more urgent one was crossed at
    the same time (only that one alerts)."""

    __tablename__ = "notify_expiry_alerts"

    cert_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    threshold_days: Mapped[int] = mapped_column(Integer, primary_key=True)
    not_after: Mapped[dt.datetime]
    alerted: Mapped[bool] = mapped_column(Boolean)
    recorded_at: Mapped[dt.datetime]
