"""SQLAlchemy models: everything two certyard instances must share lives here.

Identifiers are random URL-safe strings chosen by the caller (they appear in ACME URLs, so they
must not be guessable or sequential). JSON-shaped columns hold wire objects that are only ever read
back whole (contacts, identifiers, problem documents, validation records).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from storage.types import UTCDateTime


class Base(DeclarativeBase):
    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class Issuer(Base):
    """A CA certificate of the hierarchy and the reference to its key in a key backend.

    ``role``: "root"; "intermediate" (an issuing CA of chain "ecdsa" or "rsa"; at most one
    "active" per chain, the ones it replaced "retired": they sign no more certificates but keep
    signing CRLs and OCSP for those they issued); "ocsp" (a delegated OCSP responder of
    ``parent_id``); "alternate" (another certificate for the key of intermediate
    ``alternate_of``, e.g. a cross-signature, with the certificates that follow it in an
    alternate chain: ``cert_pem`` holds the whole bundle, and the row has no key of its own).
    """

    __tablename__ = "issuers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))  # root | intermediate | ocsp | alternate
    parent_id: Mapped[str | None] = mapped_column(String(64), ForeignKey("issuers.id"))
    cert_pem: Mapped[str] = mapped_column(Text)
    key_backend: Mapped[str] = mapped_column(String(32))
    key_ref: Mapped[str] = mapped_column(String(255))
    # Software backend only: the private key as encrypted PKCS#8 (never plaintext at rest).
    key_blob: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime]
    # Migration 0003: rotation and alternate chains.
    status: Mapped[str] = mapped_column(String(16), server_default="active")  # active | retired
    chain: Mapped[str | None] = mapped_column(String(16))  # ecdsa | rsa (intermediates)
    alternate_of: Mapped[str | None] = mapped_column(String(64))  # an intermediate's id
    retired_at: Mapped[dt.datetime | None]


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # RFC 8555 §7.3: one account per key; the thumbprint (RFC 7638) finds it for newAccount.
    key_thumbprint: Mapped[str] = mapped_column(String(64), unique=True)
    jwk: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))  # valid | deactivated | revoked
    contact: Mapped[list[Any]]
    tos_agreed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime]
    # RFC 8555 §7.3.4: the EAB key this account was created with, whose policy it inherits.
    eab_kid: Mapped[str | None] = mapped_column(String(64), default=None)


class Nonce(Base):
    """An unused anti-replay nonce (RFC 8555 §6.5); consuming it deletes the row."""

    __tablename__ = "nonces"

    value: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_account_created", "account_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64), ForeignKey("accounts.id"))
    status: Mapped[str] = mapped_column(String(16))
    identifiers: Mapped[list[Any]]
    not_before: Mapped[dt.datetime | None]
    not_after: Mapped[dt.datetime | None]
    expires_at: Mapped[dt.datetime]
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    certificate_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    # draft-ietf-acme-profiles: the profile asked for (None: the CA's default).
    profile: Mapped[str | None] = mapped_column(String(64), default=None)
    # RFC 9773 §5: the certID (canonical form) of the certificate this order replaces.
    replaces: Mapped[str | None] = mapped_column(String(128), default=None, index=True)


class Authorization(Base):
    __tablename__ = "authorizations"
    __table_args__ = (
        Index("ix_authz_reuse", "account_id", "identifier_type", "identifier_value", "status"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64), ForeignKey("accounts.id"))
    identifier_type: Mapped[str] = mapped_column(String(8))
    identifier_value: Mapped[str] = mapped_column(String(255))
    wildcard: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[dt.datetime]
    created_at: Mapped[dt.datetime]


class OrderAuthorization(Base):
    __tablename__ = "order_authorizations"

    order_id: Mapped[str] = mapped_column(String(64), ForeignKey("orders.id"), primary_key=True)
    authorization_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("authorizations.id"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer)


class Challenge(Base):
    __tablename__ = "challenges"
    __table_args__ = (UniqueConstraint("authorization_id", "type"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    authorization_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("authorizations.id"), index=True
    )
    type: Mapped[str] = mapped_column(String(32))
    token: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    validated_at: Mapped[dt.datetime | None]
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    validation_records: Mapped[list[Any] | None] = mapped_column(JSON)


class ValidationJob(Base):
    """A challenge waiting for the validation authority; any instance's worker may claim it.

    A claim is a lease (``lease_owner`` until ``lease_until``) taken by a conditional UPDATE, so
    two workers never validate the same challenge at once, and a crashed worker's job is taken
    over when its lease runs out.
    """

    __tablename__ = "validation_jobs"

    challenge_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("challenges.id"), primary_key=True
    )
    state: Mapped[str] = mapped_column(String(16), index=True)  # queued | running | done
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[dt.datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime]


class Certificate(Base):
    """Every certificate the CA signs, recorded before it is signed and completed after.

    ``state`` "signing": the record of an issuance whose TBS (``tbs_sha256``) is being or was
    handed to the CA key; ``der`` and ``chain_pem`` are NULL and nothing was released, but the
    serial may exist, so the row is revocable and revocation services treat it as issued.
    ``state`` "issued": signed, verified and recorded with its DER. ``status`` (valid/revoked)
    is independent of ``state``.
    """

    __tablename__ = "certificates"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Hex of the positive serial; the UNIQUE constraint is the last word on serial uniqueness.
    serial: Mapped[str] = mapped_column(String(64), unique=True)
    issuer_id: Mapped[str] = mapped_column(String(64), ForeignKey("issuers.id"))
    der: Mapped[bytes | None] = mapped_column(LargeBinary)
    chain_pem: Mapped[str | None] = mapped_column(Text)
    names: Mapped[list[Any]]
    profile: Mapped[str] = mapped_column(String(64))
    not_before: Mapped[dt.datetime]
    not_after: Mapped[dt.datetime] = mapped_column(index=True)
    spki_sha256: Mapped[str] = mapped_column(String(64), index=True)
    account_id: Mapped[str | None] = mapped_column(String(64))
    order_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="valid")  # valid | revoked
    revoked_at: Mapped[dt.datetime | None]
    revocation_reason: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime]
    state: Mapped[str] = mapped_column(String(16), index=True)  # signing | issued
    # Hex SHA-256 of the DER TBSCertificate handed to the key (lint before sign, ca/lint.py).
    tbs_sha256: Mapped[str] = mapped_column(String(64))
    # Who asked: "acme:<account id>", "est:<label>", "server-tls", "cli", "hierarchy".
    requester: Mapped[str] = mapped_column(String(128))
    # pkilint warnings recorded at issuance ("code: message"), None when there were none.
    lint_warnings: Mapped[list[Any] | None] = mapped_column(JSON)
    # RFC 9773: an operator-advanced renewal window (certyard acme ari advance); None = default.
    ari_window_start: Mapped[dt.datetime | None] = mapped_column(default=None)
    ari_window_end: Mapped[dt.datetime | None] = mapped_column(default=None)


class EabKey(Base):
    """An External Account Binding key (RFC 8555 §7.3.4) and the policy it carries.

    The HMAC key is a shared secret the CA must be able to use, so it is stored as is (like
    Boulder and step-ca do); it is shown once at creation and never logged.
    """

    __tablename__ = "eab_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    hmac_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    # The account this key was bound to by its first use (one key, one account).
    account_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    # Policy: names (exact or "*.example.com" for subdomains) the account may order, profiles
    # it may use, and a validity cap; empty lists and None mean "no restriction".
    allowed_domains: Mapped[list[Any]]
    allowed_profiles: Mapped[list[Any]]
    max_validity_days: Mapped[int | None] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(255), default="")


class EstUser(Base):
    """An EST client allowed to enroll with HTTP Basic authentication (RFC 7030 §3.2.3).

    ``password_hash`` is "scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>" (est_server/auth.py), never
    the password. ``label`` limits the user to one EST label; None allows every label.
    """

    __tablename__ = "est_users"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    label: Mapped[str | None] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime]


class EstEnrollment(Base):
    """One certificate issued over EST: who asked (``identity`` "basic:<user>" or
    "cert:<serial hex>"), from where, under which label."""

    __tablename__ = "est_enrollments"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(String(64))
    identity: Mapped[str] = mapped_column(String(255))
    source_address: Mapped[str | None] = mapped_column(String(64))
    certificate_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("certificates.id"), index=True
    )
    created_at: Mapped[dt.datetime]


# --- Discovery scanner (migration 0007; scanner/inventory.py writes these) -------------------


class ScanRun(Base):
    """One ``certyard scan``: ``status`` running | done | interrupted; ``parameters`` are the
    targets, ports and options as given; ``summary`` counts by status and finding code."""

    __tablename__ = "scan_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None]
    status: Mapped[str] = mapped_column(String(16))
    parameters: Mapped[dict[str, Any]]
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ScanEndpoint(Base):
    """An (ip, port, sni) ever scanned; ``sni`` "" is the handshake without SNI."""

    __tablename__ = "scan_endpoints"
    __table_args__ = (UniqueConstraint("ip", "port", "sni", name="uq_scan_endpoints_ip_port_sni"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ip: Mapped[str] = mapped_column(String(64))
    port: Mapped[int] = mapped_column(Integer)
    sni: Mapped[str] = mapped_column(String(255))
    host: Mapped[str | None] = mapped_column(String(255))
    protocol: Mapped[str] = mapped_column(String(16))
    first_seen: Mapped[dt.datetime]
    last_seen: Mapped[dt.datetime]


class ScannedCertificate(Base):
    """A certificate seen on the network, by the SHA-256 of its DER."""

    __tablename__ = "scanned_certificates"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    subject: Mapped[str] = mapped_column(Text)
    issuer: Mapped[str] = mapped_column(Text)
    not_before: Mapped[dt.datetime]
    not_after: Mapped[dt.datetime] = mapped_column(index=True)
    key_type: Mapped[str] = mapped_column(String(32))
    first_seen: Mapped[dt.datetime]
    # The issuance record when certyard issued it (migration 0017), else None.
    issued_certificate_id: Mapped[str | None] = mapped_column(String(64), default=None)


class ScanObservation(Base):
    """What one scan saw at one endpoint: the status, and for "ok" the leaf and chain.

    ``first_seen`` is when this endpoint first showed this leaf (carried over from earlier
    scans), ``last_seen`` this scan's time.
    """

    __tablename__ = "scan_observations"
    __table_args__ = (Index("ix_scan_observations_scan", "scan_id", "endpoint_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scan_id: Mapped[str] = mapped_column(String(64), ForeignKey("scan_runs.id"))
    endpoint_id: Mapped[int] = mapped_column(Integer, ForeignKey("scan_endpoints.id"))
    cert_sha256: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("scanned_certificates.sha256")
    )
    status: Mapped[str] = mapped_column(String(16))
    chain: Mapped[list[Any]]  # SHA-256 hex of each certificate sent, leaf first
    # SSH endpoints: scanner/ssh_probe.py's description of each host key (migration 0017).
    host_keys: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    # RFC 6066 §8 stapled OCSP response summary (scanner/ocsp_staple.py); None = not checked.
    ocsp_stapling: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    tls_version: Mapped[str | None] = mapped_column(String(16))
    cipher: Mapped[str | None] = mapped_column(String(128))
    error: Mapped[str | None] = mapped_column(Text)
    first_seen: Mapped[dt.datetime]
    last_seen: Mapped[dt.datetime]


class ScanFinding(Base):
    """One finding (scanner/findings.py codes) of one scan at one endpoint."""

    __tablename__ = "scan_findings"
    __table_args__ = (Index("ix_scan_findings_scan", "scan_id", "code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scan_id: Mapped[str] = mapped_column(String(64), ForeignKey("scan_runs.id"))
    endpoint_id: Mapped[int] = mapped_column(Integer, ForeignKey("scan_endpoints.id"))
    cert_sha256: Mapped[str | None] = mapped_column(String(64))
    code: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text)


class RateLimitBucket(Base):
    """One token bucket (ACME rate limits), shared by every instance through the database."""

    __tablename__ = "rate_limit_buckets"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    tokens: Mapped[float]
    updated_at: Mapped[dt.datetime]


class Lease(Base):
    """A named lease: the instance holding it runs that background schedule (one at a time)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[dt.datetime]


class EstPending(Base):
    """An EST enrollment held for an operator's decision (RFC 7030 §4.2.3: 202 + Retry-After).

    The device re-posts the same CSR, found again by ``csr_sha256`` under ``label``. ``state``
    "pending" → "approved" (``certyard est approve``) or "rejected" (``reject``);
    ``certificate_id`` is set once an approved request was issued on a re-post.
    """

    __tablename__ = "est_pending"
    __table_args__ = (Index("ix_est_pending_label_csr", "label", "csr_sha256"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(String(64))
    identity: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(Text)
    csr_der: Mapped[bytes] = mapped_column(LargeBinary)
    csr_sha256: Mapped[str] = mapped_column(String(64))
    source_address: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), index=True)  # pending | approved | rejected
    certificate_id: Mapped[str | None] = mapped_column(String(64), ForeignKey("certificates.id"))
    created_at: Mapped[dt.datetime]
    decided_at: Mapped[dt.datetime | None]
