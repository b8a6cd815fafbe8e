"""What the ACME front end needs to know, as plain values (built from settings by certyard/)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from acme_server.va import ValidationConfig
from acme_server.va.remote import RemotePerspective


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
    # draft-ietf-acme-profiles: profile name -> description, offered in directory meta.
    profiles: dict[str, str] = field(default_factory=lambda: {"tls-server": "TLS server"})
    default_profile: str = "tls-server"
    # RFC 8555 §7.3.4: when True, newAccount must carry an externalAccountBinding.
    require_eab: bool = False
    # RFC 8555 §7.4.1: offer newAuthz (pre-authorization) in the directory.
    allow_preauthorization: bool = False
    # A claimed validation job whose instance died is claimed again after this long (a job that
    # is merely slow may then run twice, which is harmless: only the first result is recorded).
    validation_lease: dt.timedelta = dt.timedelta(seconds=60)
    # A finalize still "processing" after this long belongs to a dead instance: take it over.
    finalize_stale_after: dt.timedelta = dt.timedelta(seconds=60)
    # draft-ietf-acme-dns-account-label: offer dns-account-01 next to dns-01.
    dns_account_01: bool = False
    # BR §3.2.2.8: CAA is rechecked at finalize when the validation is older than this.
    caa_recheck_after: dt.timedelta = dt.timedelta(hours=8)
    # How far the CA backdates notBefore (CAConfig.backdate_seconds), for validity caps.
    ca_backdate: dt.timedelta = dt.timedelta(seconds=60)
    # RFC 9773 §4.3: how long clients should wait before asking for renewal info again.
    ari_retry_after: dt.timedelta = dt.timedelta(hours=6)
    # Multi-perspective validation (docs/validation.md): remote agents asked after the local
    # validation succeeded; ``remote_quorum`` of them must agree. () = local validation only.
    remote_perspectives: tuple[RemotePerspective, ...] = ()
    remote_quorum: int = 0
    remote_client_cert: Path | None = None
    remote_client_key: Path | None = None
    remote_ca_file: Path | None = None
    remote_timeout: float = 30.0
