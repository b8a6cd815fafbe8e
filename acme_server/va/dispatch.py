"""One entry point for "validate this challenge type": the local worker and the remote
perspective agents run exactly the same checks."""

from __future__ import annotations

import time

from acme_server.errors import AcmeError
from acme_server.va.dns01 import validate_dns01
from acme_server.va.http01 import validate_http01
from acme_server.va.policy import ValidationConfig, ValidationFailure, ValidationRecord
from acme_server.va.tlsalpn01 import validate_tlsalpn01
from certyard.metrics import observe_validation

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
    # certyard_validations_total / _duration_seconds (docs/metrics.md): every check, local or
    # on a remote perspective agent, counts once in the process that ran it.
    started = time.perf_counter()
    try:
        records = await _dispatch(
            challenge_type, identifier, token, key_authorization, config, account_url
        )
    except ValidationFailure as exc:
        seconds = time.perf_counter() - started
        observe_validation(_label(challenge_type), "invalid", exc.problem.type, seconds)
        raise
    except Exception:
        seconds = time.perf_counter() - started
        observe_validation(_label(challenge_type), "error", "internal", seconds)
        raise
    seconds = time.perf_counter() - started
    observe_validation(_label(challenge_type), "valid", "none", seconds)
    return records


def _label(challenge_type: str) -> str:
    # A client-chosen string must not become a label value: unknown types share one.
    return challenge_type if challenge_type in CHALLENGE_TYPES else "unknown"


async def _dispatch(
    challenge_type: str,
    identifier: str,
    token: str,
    key_authorization: str,
    config: ValidationConfig,
    account_url: str | None,
) -> list[ValidationRecord]:
    if challenge_type == "http-01":
        return await validate_http01(identifier, token, key_authorization, config)
    if challenge_type == "dns-01":
        return await validate_dns01(identifier, key_authorization, config)
    if challenge_type == "dns-account-01":
        return await validate_dns01(identifier, key_authorization, config, account_url=account_url)
    if challenge_type == "tls-alpn-01":
        return await validate_tlsalpn01(identifier, key_authorization, config)
    raise ValidationFailure(AcmeError("malformed", f"unknown challenge type {challenge_type}"), [])
