"""The small interface the ACME front end needs from the issuance service (ca/).

As step-ca's acme package does, the front end names only what it calls; the CA object satisfies
it, and tests may hand in anything else that does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol

from cryptography import x509
from sqlalchemy.ext.asyncio import AsyncSession


class IssuedCertificateView(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def chain_pem(self) -> str: ...


class AcmeIssuer(Protocol):
    async def issue(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        profile: str,
        dns_names: Sequence[str],
        requester: str,
        ip_addresses: Sequence[str] = (),
        account_id: str | None = None,
        order_id: str | None = None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        session: AsyncSession | None = None,
    ) -> IssuedCertificateView: ...

    async def revoke(self, cert_id: str, reason: int) -> object: ...
