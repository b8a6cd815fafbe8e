"""Renewal policies: which certificates a policy covers, when they are due, and how they renew.

Policies come from the settings (``[[renewal.policies]]``) in order; the first that matches a
certificate wins, and the default policy (``default_method``, at ``default_fraction`` of the
lifetime: two thirds, as the default ARI window of acme_server/ari.py) covers the rest.
``sync_policies`` copies them into ``renewal_policies`` so the database shows what was applied.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from renewal.config import Method, PolicyConfig, PolicyMatch, RenewalSettings
from renewal.inventory import InventoryItem, glob_any
from storage.models_renewal import RenewalPolicyRow

DEFAULT_POLICY_NAME = "default"


@dataclass(frozen=True)
class Policy:
    name: str
    method: Method
    match: PolicyMatch = field(default_factory=PolicyMatch)
    renew_at_fraction: float | None = None
    renew_days_before: float | None = None
    target: str | None = None
    owner: str | None = None
    at_risk: bool = False

    @classmethod
    def from_config(cls, config: PolicyConfig, default_fraction: float) -> Policy:
        fraction = config.renew_at_fraction
        if fraction is None and config.renew_days_before is None:
            fraction = default_fraction
        return cls(
            name=config.name,
            method=config.method,
            match=config.match,
            renew_at_fraction=fraction,
            renew_days_before=config.renew_days_before,
            target=config.target,
            owner=config.owner,
            at_risk=config.at_risk,
        )

    def due_at(self, item: InventoryItem) -> dt.datetime:
        """When the certificate should be renewed under this policy."""
        if self.renew_days_before is not None:
            return item.not_after - dt.timedelta(days=self.renew_days_before)
        fraction = self.renew_at_fraction if self.renew_at_fraction is not None else 2 / 3
        return item.not_before + item.lifetime * fraction

    def trigger(self) -> str:
        if self.renew_days_before is not None:
            return f"{self.renew_days_before:g} days before expiry"
        return f"at {self.renew_at_fraction or 2 / 3:.0%} of the lifetime"


def policies_from_settings(settings: RenewalSettings) -> list[Policy]:
    """The configured policies in order, then the default one (always last)."""
    policies = [Policy.from_config(p, settings.default_fraction) for p in settings.policies]
    policies.append(
        Policy(
            name=DEFAULT_POLICY_NAME,
            method=settings.default_method,
            renew_at_fraction=settings.default_fraction,
            owner=settings.default_owner,
        )
    )
    return policies


def matches(match: PolicyMatch, item: InventoryItem) -> bool:
    """Every criterion given must hold; within one criterion any pattern may match."""
    if match.names and not glob_any(item.names, match.names):
        return False
    if match.tags and not set(match.tags) & item.tags:
        return False
    if match.sources and not set(match.sources) & item.sources:
        return False
    if match.issuers and not glob_any([item.issuer], match.issuers):
        return False
    return not (
        match.endpoints and not glob_any(item.endpoints | item.endpoint_aliases, match.endpoints)
    )


def select_policy(policies: Sequence[Policy], item: InventoryItem) -> Policy:
    """The first policy that matches; the list ends with the default policy, which always does."""
    for policy in policies:
        if matches(policy.match, item):
            return policy
    raise ValueError("the policy list has no catch-all default policy")


async def sync_policies(
    session: AsyncSession, policies: Sequence[Policy], now: dt.datetime
) -> None:
    """Make ``renewal_policies`` hold exactly these policies (in the caller's transaction)."""
    await session.execute(delete(RenewalPolicyRow))
    for position, policy in enumerate(policies):
        session.add(
            RenewalPolicyRow(
                name=policy.name,
                position=position,
                match=policy.match.model_dump(),
                renew_at_fraction=policy.renew_at_fraction,
                renew_days_before=policy.renew_days_before,
                method=policy.method,
                target=policy.target,
                owner=policy.owner,
                at_risk=policy.at_risk,
                updated_at=now,
            )
        )
