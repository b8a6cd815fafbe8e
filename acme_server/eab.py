"""External Account Binding (RFC 8555 §7.3.4) and the per-key policy it carries.

The binding is a JWS, MAC'ed with the key the operator handed out (``certyard acme eab
create``), whose payload is the new account's public key. A key binds exactly one account; that
account then inherits the key's policy: which names it may order (exact names, or
``*.example.com`` for every name below example.com), which profiles, and a validity cap.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from typing import Any

from josepy.jwk import JWK
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from acme_server.errors import AcmeError, Subproblem, malformed
from acme_server.identifiers import Identifier
from acme_server.jws import decode_b64url, jwk_from_json, jwk_thumbprint
from storage.models import EabKey

_MACS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def verify_binding(
    binding: dict[str, Any], *, account_key: JWK, url: str, key: EabKey | None, now: dt.datetime
) -> None:
    """Check the externalAccountBinding JWS against the stored key (already looked up by kid)."""
    if set(binding) != {"protected", "payload", "signature"}:
        raise malformed("externalAccountBinding must be a flattened JWS")
    protected_b64, payload_b64, signature_b64 = (
        binding["protected"],
        binding["payload"],
        binding["signature"],
    )
    try:
        header = json.loads(decode_b64url(protected_b64, "externalAccountBinding protected"))
        payload = json.loads(decode_b64url(payload_b64, "externalAccountBinding payload"))
    except (ValueError, UnicodeDecodeError):
        raise malformed("externalAccountBinding is not valid JSON") from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise malformed("externalAccountBinding header and payload must be JSON objects")
    signature = decode_b64url(signature_b64, "externalAccountBinding signature")
    alg = header.get("alg")
    # RFC 8555 §7.3.4: a MAC algorithm, the key id, the newAccount URL, and no nonce.
    if alg not in _MACS:
        raise AcmeError(
            "badSignatureAlgorithm",
            "externalAccountBinding must use HS256/384/512",
            extra={"algorithms": sorted(_MACS)},
        )
    if "nonce" in header:
        raise malformed("externalAccountBinding must not carry a nonce")
    if header.get("url") != url:
        raise malformed("externalAccountBinding url must be the newAccount URL")
    if key is None or key.kid != header.get("kid"):
        raise AcmeError("unauthorized", "externalAccountBinding names an unknown key id")
    if key.revoked_at is not None:
        raise AcmeError("unauthorized", "this external account key has been revoked")
    if key.expires_at is not None and key.expires_at <= now:
        raise AcmeError("unauthorized", "this external account key has expired")
    expected = hmac.new(key.hmac_key, f"{protected_b64}.{payload_b64}".encode(), _MACS[alg])
    if not hmac.compare_digest(expected.digest(), signature):
        raise AcmeError("unauthorized", "externalAccountBinding MAC does not verify")
    bound_key = jwk_from_json(payload)
    if jwk_thumbprint(bound_key) != jwk_thumbprint(account_key):
        raise malformed("externalAccountBinding payload must be the account's public key")


def kid_of(binding: dict[str, Any]) -> str | None:
    try:
        header = json.loads(decode_b64url(binding.get("protected"), "protected"))
    except (ValueError, UnicodeDecodeError, AcmeError):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) and len(kid) <= 64 else None


async def bind(session: AsyncSession, kid: str, account_id: str) -> bool:
    """One key, one account: True when this call bound it (a conditional UPDATE)."""
    result = await session.execute(
        update(EabKey)
        .where(EabKey.kid == kid, EabKey.account_id.is_(None))
        .values(account_id=account_id)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def name_allowed(name: str, patterns: list[str]) -> bool:
    base = name[2:] if name.startswith("*.") else name
    for pattern in patterns:
        pattern = pattern.lower().rstrip(".")
        if pattern.startswith("*."):
            if base.endswith(pattern[1:]) or (name == pattern):
                return True
        elif name == pattern:
            return True
    return False


def check_order(key: EabKey, identifiers: list[Identifier], profile: str) -> None:
    """Refuse an order outside the key's policy (at newOrder; finalize re-checks validity)."""
    if key.allowed_profiles and profile not in key.allowed_profiles:
        raise AcmeError("invalidProfile", f"this account may not use profile {profile!r}")
    if key.allowed_domains:
        refused = [i for i in identifiers if not name_allowed(i.value, list(key.allowed_domains))]
        if refused:
            raise AcmeError(
                "rejectedIdentifier",
                "this account may not order "
                + ", ".join(i.value for i in refused)
                + " (external account policy)",
                subproblems=[
                    Subproblem(
                        "rejectedIdentifier", "not allowed by the account's policy", i.to_json()
                    )
                    for i in refused
                ],
            )


def capped_not_after(
    key: EabKey | None,
    not_before: dt.datetime | None,
    not_after: dt.datetime | None,
    now: dt.datetime,
    backdate: dt.timedelta = dt.timedelta(0),
) -> dt.datetime | None:
    """The notAfter to ask the CA for, capped by the key's max validity.

    RFC 5280 §4.1.2.5 counts the validity from notBefore to notAfter inclusive, and the CA
    backdates notBefore by ``backdate`` when the order names none: the cap is measured from the
    real notBefore and ends one second before N whole days."""
    if key is None or key.max_validity_days is None:
        return not_after
    start = not_before if not_before is not None else now - backdate
    cap = start + dt.timedelta(days=key.max_validity_days) - dt.timedelta(seconds=1)
    return cap if not_after is None or not_after > cap else not_after
