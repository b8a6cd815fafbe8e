"""One entry point for "validate this challenge type": the local worker and the remote
perspective agents run exactly the same checks."""

from __future__ import annotations

from acme_server.errors import AcmeError
from acme_server.va.dns01 import validate_dns01
from acme_server.va.http01 import validate_http01
from acme_server.va.policy import ValidationConfig, ValidationFailure, ValidationRecord
from acme_server.va.tlsalpn01 import validate_tlsalpn01

CHALLENGE_TYPES = ("http-01", "dns-01", "dns-account-01", "tls-alpn-01")


async def validate_challenge(
    challenge_type: str,
    identifier: str,
    token: str,
    key_authorization: str,
    config: ValidationConfig,
    *,
    account_url: str | None = None,
) -> list[ValidationRecord]:
    """Run one challenge's check (RFC 8555 §8.3/§8.4, RFC 8737, dns-account-01)."""
    if challenge_type == "http-01":
        return await validate_http01(identifier, token, key_authorization, config)
    if challenge_type == "dns-01":
        return await validate_dns01(identifier, key_authorization, config)
    if challenge_type == "dns-account-01":
        return await validate_dns01(identifier, key_authorization, config, account_url=account_url)
    if challenge_type == "tls-alpn-01":
        return await validate_tlsalpn01(identifier, key_authorization, config)
    raise ValidationFailure(AcmeError("malformed", f"unknown challenge type {challenge_type}"), [])
