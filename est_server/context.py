"""What the EST front end needs from the rest of certyard, declared here and nowhere else.

The CA object (``ca.authority.CertificateAuthority``) satisfies :class:`EstIssuer` and the
issuance service :class:`CertificateLookup`; tests may hand in fakes that satisfy only these.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from aiohttp import web
from cryptography import x509
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ca.issuance import IssuedCertificate, StoredCertificate
from est_server.ratelimit import RateLimiter

AuthMode = Literal["basic", "cert", "either", "both"]
KeyChange = Literal["allow", "require", "forbid"]


class EstIssuer(Protocol):
    async def issue(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        profile: str,
        dns_names: Sequence[str],
        ip_addresses: Sequence[str] = (),
        common_name: str | None = None,
        requester: str,
    ) -> IssuedCertificate: ...


class CertificateLookup(Protocol):
    async def find_by_der(self, der: bytes) -> StoredCertificate | None: ...


@dataclass(frozen=True)
class EstLabel:
    """One EST label (RFC 7030 §3.2.2): its CA certificates, profile and policies."""

    name: str
    # RFC 7030 §4.1.3: what /cacerts returns - issuing intermediate(s), then the root.
    ca_certificates: tuple[x509.Certificate, ...]
    profile: str
    auth: AuthMode = "either"
    reenroll_key_change: KeyChange = "allow"
    # "ecdsa" / "rsa" when the label issues from one chain only: the CSR's key must match.
    chain: str | None = None
    # Device and client profiles put the request's subject CN into the certificate.
    use_common_name: bool = True
    # RFC 7030 §4.2.3: enrollments wait for an operator (202 + Retry-After until decided).
    approval: bool = False
    # RFC 7030 §3.5: the CSR's challengePassword carries the TLS session's tls-unique value.
    channel_binding: bool = False
    # RFC 7030 §4.5.2 / RFC 9908: the DER CsrAttrs csrattrs answers; None: 204.
    csr_attributes: bytes | None = None
    # RFC 7030 §3.3.2: manufacturer CAs whose IDevID certificates may enroll (not re-enroll).
    manufacturer_cas: tuple[x509.Certificate, ...] = ()
    # RFC 7030 §4.4.1.2: pre-shared AES keys by DecryptKeyIdentifier (serverkeygen encryption).
    decrypt_keys: Mapping[bytes, bytes] = field(default_factory=dict, repr=False)  # secrets
    # Enrollments per window (0: unlimited); beyond it 429 with Retry-After.
    rate_limit: int = 0
    rate_limit_window_seconds: float = 60.0


@dataclass(frozen=True)
class EstContext:
    labels: Mapping[str, EstLabel]
    default_label: str
    issuer: EstIssuer
    lookup: CertificateLookup
    sessions: async_sessionmaker[AsyncSession]
    clock: Callable[[], dt.datetime]
    max_body_bytes: int = 16384
    realm: str = "certyard EST"
    # Per-process sliding windows of the labels' rate limits (est_server/ratelimit.py).
    limiter: RateLimiter = field(default_factory=RateLimiter)


EST_CONTEXT: web.AppKey[EstContext] = web.AppKey("est_context", EstContext)
