"""Renewal queue tables (migration 0013; renewal/ reads and writes them).

``renewal_policies``: the configured policies, synced from the settings on every
``certyard renew run`` (the database copy lets other instances and the admin API see them).
``renewal_items``: the last assessment of each inventory certificate, keyed by the hex SHA-256
of its DER ("tbs:<hex>" for a CT precertificate known only by its TBS), and its at-risk mark.
``renewal_runs`` / ``renewal_actions``: the history of ``certyard renew run``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base


class RenewalPolicyRow(Base):
    __tablename__ = "renewal_policies"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)  # evaluation order: first match wins
    match: Mapped[dict[str, Any]]
    renew_at_fraction: Mapped[float | None] = mapped_column(Float)
    renew_days_before: Mapped[float | None] = mapped_column(Float)
    method: Mapped[str] = mapped_column(String(16))
    target: Mapped[str | None] = mapped_column(String(128))
    owner: Mapped[str | None] = mapped_column(String(255))
    at_risk: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[dt.datetime]


class RenewalItem(Base):
    __tablename__ = "renewal_items"

    cert_key: Mapped[str] = mapped_column(String(80), primary_key=True)
    certificate_id: Mapped[str | None] = mapped_column(String(64))  # certyard-issued: its id
    names: Mapped[list[Any]]
    sources: Mapped[list[Any]]
    not_after: Mapped[dt.datetime]
    state: Mapped[str] = mapped_column(String(16), index=True)
    priority: Mapped[float] = mapped_column(Float)
    policy: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(16))
    # The at-risk mark: set when a scan finding, a CT finding, a policy or an operator says
    # so; reasons like "finding:weak_key", "policy:legacy", "operator:<text>".
    at_risk: Mapped[bool] = mapped_column(Boolean, default=False)
    at_risk_reasons: Mapped[list[Any]]
    at_risk_since: Mapped[dt.datetime | None]
    operator_mark: Mapped[str | None] = mapped_column(Text)  # certyard renew mark --reason
    ari_advanced_at: Mapped[dt.datetime | None]
    last_action: Mapped[str | None] = mapped_column(String(32))
    last_action_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime]


class RenewalRun(Base):
    __tablename__ = "renewal_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(index=True)
    finished_at: Mapped[dt.datetime | None]
    status: Mapped[str] = mapped_column(String(16))  # running | done | failed
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class RenewalAction(Base):
    """One thing ``renew run`` did (or decided not to do) for one certificate."""

    __tablename__ = "renewal_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64), ForeignKey("renewal_runs.id"), index=True)
    cert_key: Mapped[str] = mapped_column(String(80))
    names: Mapped[list[Any]]
    state: Mapped[str] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(16))
    # ari_advanced | deployed | reenroll_required | notified | skipped | failed
    action: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16))  # ok | skipped | failed
    detail: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime]
