"""Status rules for orders and authorizations (RFC 8555 §7.1.6), as pure functions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable


def authz_status(stored: str, expires_at: dt.datetime, now: dt.datetime) -> str:
    """An authorization past its expiry is "expired" whatever was stored (§7.1.6)."""
    if stored in ("pending", "valid") and expires_at <= now:
        return "expired"
    return stored


def order_status(
    stored: str, expires_at: dt.datetime, authz_statuses: Iterable[str], now: dt.datetime
) -> str:
    """The order's status from its own and its authorizations' (§7.1.6 state diagram).

    pending -> ready when every authorization is valid; pending -> invalid when one is invalid,
    deactivated, expired or revoked, or when the order expires before it is finalized.
    processing/valid/invalid are decided by finalize and never recomputed here.
    """
    if stored not in ("pending", "ready"):
        return stored
    if expires_at <= now:
        return "invalid"
    statuses = list(authz_statuses)
    if any(s in ("invalid", "deactivated", "expired", "revoked") for s in statuses):
        return "invalid"
    if statuses and all(s == "valid" for s in statuses):
        return "ready"
    return "pending"


CHALLENGE_TYPES_FOR_WILDCARD = ("dns-01",)
CHALLENGE_TYPES = ("http-01", "dns-01", "tls-alpn-01")


CHALLENGE_TYPES_FOR_IP = ("http-01", "tls-alpn-01")


def challenge_types(
    wildcard: bool, identifier_type: str = "dns", *, dns_account: bool = False
) -> tuple[str, ...]:
    # RFC 8738 §7: an IP address is proven by http-01 or tls-alpn-01, never dns-01.
    if identifier_type == "ip":
        return CHALLENGE_TYPES_FOR_IP
    # RFC 8555 §7.1.3 / §8.3 / RFC 8737 §3: only dns-01 proves control of a whole domain.
    types = CHALLENGE_TYPES_FOR_WILDCARD if wildcard else CHALLENGE_TYPES
    # draft-ietf-acme-dns-account-label: a DNS method too, so also for wildcards.
    return (*types, "dns-account-01") if dns_account else types
