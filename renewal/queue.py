"""The risk-ranked renewal queue: a state and a priority for every inventory certificate.

``assess`` and ``build_queue`` are pure (inventory items, policies and a time in; entries out);
``load_queue`` reads the inventory and the operators' at-risk marks from the database.

Priority is a sum of three parts, each bounded, so one part cannot hide another entirely:

* expiry: 100 once expired, else 60 × the fraction of the lifetime used up;
* findings: the weights below (scanner/findings.py codes and the CT monitor's), at most 90;
* exposure: 10 × log2(1 + endpoints serving it), at most 30;

plus 40 for an at-risk mark by a policy or an operator, and, for a revoked certificate that
an endpoint still serves, 80.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from renewal.config import RenewalSettings
from renewal.inventory import InventoryItem, load_inventory
from renewal.policy import Policy, policies_from_settings, select_policy
from storage.models_renewal import RenewalItem

State = Literal["healthy", "renew-due", "at-risk", "expired", "revoked"]

# Weight of each finding code. Expiry codes weigh nothing: the expiry part already counts them.
FINDING_WEIGHTS: dict[str, float] = {
    "ct_unknown_issuance": 45,  # a certificate for our names we did not ask for
    "weak_key": 40,  # RSA/DSA < 2048, EC < 256: factorable or soon
    "bad_certificate": 35,
    "sha1_signature": 30,  # chosen-prefix collisions (SHAttered, 2017)
    "untrusted_chain": 25,
    "hostname_mismatch": 25,
    "self_signed": 10,
    "incomplete_chain": 10,
    "not_yet_valid": 10,
    "deprecated_tls_version": 5,
    "expired": 0,
    "expiring_soon": 0,
}
UNKNOWN_FINDING_WEIGHT = 5.0
# Findings that make a certificate at risk: it must be replaced now, whatever its age.
AT_RISK_FINDINGS = frozenset(
    {
        "ct_unknown_issuance",
        "weak_key",
        "bad_certificate",
        "sha1_signature",
        "untrusted_chain",
        "hostname_mismatch",
    }
)
MAX_FINDINGS = 90.0
MAX_EXPOSURE = 30.0
MARK_BONUS = 40.0
SERVED_REVOKED = 80.0

ACTION_STATES = frozenset({"renew-due", "at-risk", "expired"})


@dataclass(frozen=True)
class QueueEntry:
    item: InventoryItem
    policy: Policy
    state: State
    priority: float
    due_at: dt.datetime
    at_risk_reasons: tuple[str, ...]
    now: dt.datetime

    @property
    def days_left(self) -> float:
        return (self.item.not_after - self.now).total_seconds() / 86400

    @property
    def needs_action(self) -> bool:
        # A revoked certificate still served must be replaced where it is served.
        return self.state in ACTION_STATES or (self.state == "revoked" and self.item.exposure > 0)


def finding_score(codes: Iterable[str]) -> float:
    total = sum(FINDING_WEIGHTS.get(code, UNKNOWN_FINDING_WEIGHT) for code in set(codes))
    return min(total, MAX_FINDINGS)


def exposure_score(endpoints: int) -> float:
    return min(10 * math.log2(1 + endpoints), MAX_EXPOSURE)


def expiry_score(item: InventoryItem, now: dt.datetime) -> float:
    if now >= item.not_after:
        return 100.0
    left = (item.not_after - now) / item.lifetime
    return 60 * (1 - min(max(left, 0.0), 1.0))


def at_risk_reasons(
    item: InventoryItem, policy: Policy, operator_mark: str | None
) -> tuple[str, ...]:
    reasons = [f"finding:{code}" for code in sorted(item.findings & AT_RISK_FINDINGS)]
    if policy.at_risk:
        reasons.append(f"policy:{policy.name}")
    if operator_mark:
        reasons.append(f"operator:{operator_mark}")
    return tuple(reasons)


def assess(
    item: InventoryItem, policy: Policy, now: dt.datetime, *, operator_mark: str | None = None
) -> QueueEntry:
    reasons = at_risk_reasons(item, policy, operator_mark)
    due_at = policy.due_at(item)
    state: State
    if item.revoked:
        state = "revoked"
    elif now >= item.not_after:
        state = "expired"
    elif reasons:
        state = "at-risk"
    elif now >= due_at:
        state = "renew-due"
    else:
        state = "healthy"
    priority = (
        expiry_score(item, now) + finding_score(item.findings) + exposure_score(item.exposure)
    )
    if policy.at_risk or operator_mark:
        priority += MARK_BONUS
    if item.revoked and item.exposure > 0:
        priority += SERVED_REVOKED
    return QueueEntry(item, policy, state, round(priority, 1), due_at, reasons, now)


def build_queue(
    items: Iterable[InventoryItem],
    policies: Sequence[Policy],
    now: dt.datetime,
    marks: Mapping[str, str] | None = None,
) -> list[QueueEntry]:
    """Every item assessed under its first matching policy, most urgent first (ties: the one
    that expires first)."""
    marks = marks or {}
    entries = [
        assess(item, select_policy(policies, item), now, operator_mark=marks.get(item.key))
        for item in items
    ]
    entries.sort(key=lambda e: (-e.priority, e.item.not_after, e.item.key))
    return entries


async def operator_marks(session: AsyncSession) -> dict[str, str]:
    rows = await session.execute(
        select(RenewalItem.cert_key, RenewalItem.operator_mark).where(
            RenewalItem.operator_mark.is_not(None)
        )
    )
    return {key: str(mark) for key, mark in rows.all()}


async def load_queue(
    sessions: async_sessionmaker[AsyncSession], settings: RenewalSettings, now: dt.datetime
) -> list[QueueEntry]:
    items = await load_inventory(
        sessions,
        now,
        tag_rules=settings.tags,
        forget_expired=dt.timedelta(days=settings.forget_expired_days),
    )
    async with sessions() as session:
        marks = await operator_marks(session)
    return build_queue(items, policies_from_settings(settings), now, marks)
