"""What the ACME front end needs to know, as plain values (built from settings by certyard/)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from acme_server.va import ValidationConfig


@dataclass(frozen=True)
class AcmeConfig:
    base_url: str  # e.g. https://localhost:8443 (no trailing slash)
    terms_of_service: str = ""
    website: str = ""
    caa_identities: tuple[str, ...] = ()
    max_body_bytes: int = 65536
    nonce_lifetime: dt.timedelta = dt.timedelta(hours=1)
    order_lifetime: dt.timedelta = dt.timedelta(days=7)
    authz_lifetime: dt.timedelta = dt.timedelta(days=30)
    authz_reuse: dt.timedelta = dt.timedelta(days=30)
    orders_page_size: int = 50
    max_identifiers: int = 100
    validation_workers: int = 8
    validation: ValidationConfig = field(default_factory=ValidationConfig)
