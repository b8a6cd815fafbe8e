"""dns-01 validation (RFC 8555 §8.4).

The VA asks the configured resolvers for the TXT records of ``_acme-challenge.{domain}`` and
accepts the challenge when one of them equals base64url(SHA-256(key authorization)).

CNAMEs are followed (RFC 8555 §8.4 does not forbid them and clients delegate validation with
them): see :func:`~acme_server.va.policy.query_following_cnames`.

The validation record of a dns-01 validation names the identifier as ``hostname`` and the
resolver that answered as ``addressUsed``/``port``; ``addressesResolved`` is empty.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging

import dns.asyncresolver
import dns.exception
import dns.resolver

from acme_server.errors import AcmeError
from acme_server.va.policy import (
    CnameLoop,
    ValidationConfig,
    ValidationFailure,
    ValidationRecord,
    dns01_txt_value,
    dns_error_detail,
    fail,
    make_resolver,
    normalize_domain,
    query_following_cnames,
)

log = logging.getLogger(__name__)

_SHOWN = 64  # characters of a wrong TXT value shown in a problem detail


async def validate_dns01(
    domain: str, key_authorization: str, config: ValidationConfig, *, account_url: str | None = None
) -> list[ValidationRecord]:
    """Validate a dns-01 challenge: one record, or :class:`ValidationFailure`.

    With ``account_url`` it validates dns-account-01 (draft-ietf-acme-dns-account-label): the
    same TXT value at ``_<account label>._acme-challenge.<domain>``."""
    try:
        return await _validate(domain, key_authorization, config, account_url)
    except ValidationFailure:
        raise
    except Exception:  # a bug here must not turn into a 500 or leak a traceback
        log.exception("dns-01 validation of %s failed unexpectedly", domain)
        raise ValidationFailure(
            AcmeError("serverInternal", "the dns-01 validation could not be completed")
        ) from None


def account_label(account_url: str) -> str:
    """draft-ietf-acme-dns-account-label §3.1: "_" || base32(SHA-256(account URL)[0:10]),
    lower case (10 octets are exactly 16 base32 characters, no padding)."""
    digest = hashlib.sha256(account_url.encode()).digest()[:10]
    return "_" + base64.b32encode(digest).decode("ascii").lower()


async def _validate(
    domain: str, key_authorization: str, config: ValidationConfig, account_url: str | None
) -> list[ValidationRecord]:
    name = normalize_domain(domain)
    # RFC 8555 §8.4: the record is provisioned at "_acme-challenge." + the domain name.
    challenge_name = f"_acme-challenge.{name}"
    if account_url is not None:
        challenge_name = f"{account_label(account_url)}.{challenge_name}"
    expected = dns01_txt_value(key_authorization).encode("ascii")
    resolver = make_resolver(config)
    values, server, port = await _lookup_txt(resolver, challenge_name, config)
    record = ValidationRecord(hostname=name, port=port, addresses_resolved=(), address_used=server)
    if not values:
        raise ValidationFailure(
            AcmeError("dns", f"No TXT record found at {challenge_name}"), [record]
        )
    # RFC 8555 §8.4: the challenge is valid if *any* TXT value matches (several may coexist).
    if any(hmac.compare_digest(value, expected) for value in values):
        return [record]
    shown = values[0][:_SHOWN].decode("utf-8", "replace")
    more = f" (and {len(values) - 1} more)" if len(values) > 1 else ""
    raise ValidationFailure(
        AcmeError(
            "unauthorized", f"Incorrect TXT record {shown!r}{more} found at {challenge_name}"
        ),
        [record],
    )


async def _lookup_txt(
    resolver: dns.asyncresolver.Resolver, name: str, config: ValidationConfig
) -> tuple[list[bytes], str, int]:
    """TXT values at ``name`` (following CNAMEs), and the resolver address and port used."""
    try:
        answer = await query_following_cnames(resolver, name, "TXT", config.timeout)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return [], "", 0
    except (dns.exception.DNSException, CnameLoop, OSError, ValueError) as exc:
        raise fail("dns", dns_error_detail(exc, "TXT", name)) from None
    server, port = answer.nameserver or "", answer.port or 0
    if answer.rrset is None:
        return [], server, port  # NODATA: the name exists without a TXT record
    # RFC 7208 §3.3 convention, used by ACME clients: a TXT value longer than 255 bytes is
    # split into several character-strings, which are joined.
    return [b"".join(rdata.strings) for rdata in answer.rrset], server, port
