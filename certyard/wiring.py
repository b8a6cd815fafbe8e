"""Build the services of one certyard process from its settings (no globals)."""

from __future__ import annotations

import datetime as dt
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from acme_server.config import AcmeConfig
from acme_server.ratelimits import Limit, RateLimitConfig
from acme_server.va import ValidationConfig
from acme_server.va.remote import RemotePerspective
from audit.config_changes import record_config
from audit.errors import AuditError
from audit.keys import AuditSigner
from audit.recorder import AuditRecorder, NullRecorder
from audit.trail import AuditTrail
from ca.authority import CertificateAuthority
from ca.ceremony import Ceremony, default_ceremony
from ca.config import CAConfig, ProfileConfig, default_profiles
from ca.crl import CRLConfig, CRLService
from ca.errors import CAError
from ca.hierarchy import Hierarchy, create_hierarchy, load_hierarchy, load_or_create_hierarchy
from ca.issuance import IssuanceService
from ca.keys import KeyBackend
from ca.ocsp import OCSPConfig, OCSPResponder
from ca.ocsp_signer import OCSPSignerProvider
from ca.pkcs11_keys import Pkcs11Config, Pkcs11KeyBackend
from ca.softhsm import ensure_softhsm_token
from ca.software_keys import SoftwareKeyBackend, default_kek, load_or_create_passphrase
from certyard.settings import RateLimitSettings, Settings
from storage.engine import create_engine, migrate, session_factory


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    hierarchy: Hierarchy
    issuance: IssuanceService
    backend: KeyBackend
    crls: CRLService
    ocsp: OCSPResponder
    authority: CertificateAuthority
    # The hash-chained audit trail (audit.trail.AuditTrail) every front end records through.
    audit: AuditRecorder = field(default_factory=NullRecorder)

    async def close(self) -> None:
        close = getattr(self.backend, "close", None)
        if close is not None:
            await close()
        await self.engine.dispose()


def ca_config(settings: Settings) -> CAConfig:
    ca = settings.ca
    http_url = settings.http_public_url
    if ca.profiles:
        profiles = tuple(
            ProfileConfig(
                name=p.name,
                kind=p.kind,
                validity_days=p.validity_days,
                key_types=tuple(p.key_types),
                include_crl_dp=p.include_crl_dp,
                include_ocsp_aia=p.include_ocsp_aia,
                description=p.description,
            )
            for p in ca.profiles
        )
    else:
        profiles = default_profiles(ca.leaf_validity_days)
    return CAConfig(
        key_algorithm=ca.key_algorithm,
        organization=ca.organization,
        country=ca.country,
        root_common_name=ca.root_common_name,
        intermediate_common_name=ca.intermediate_common_name,
        leaf_validity_days=ca.leaf_validity_days,
        profiles=profiles,
        default_profile=ca.default_profile,
        # RFC 5019 §5 / BR §7.1.2.11.2: revocation URLs are plain HTTP, on the http listener.
        crl_base_url=http_url,
        ca_issuers_url=http_url,
        ocsp_url=f"{http_url}/ocsp" if http_url else None,
        lint=ca.lint,
        crl_shards=ca.crl_shards,
        allow_internal_names=ca.allow_internal_names,
    )


def acme_config(settings: Settings) -> AcmeConfig:
    acme = settings.acme
    ca = ca_config(settings)
    # ACME issues TLS server certificates: only those profiles are offered to ACME clients.
    profiles = {p.name: p.description or p.name for p in ca.profiles if p.is_server}
    default = ca.default_profile if ca.default_profile in profiles else next(iter(profiles))
    return AcmeConfig(
        profiles=profiles,
        default_profile=default,
        require_eab=acme.require_eab,
        allow_preauthorization=acme.allow_preauthorization,
        finalize_stale_after=dt.timedelta(seconds=acme.finalize_stale_seconds),
        validation_lease=dt.timedelta(seconds=acme.validation_lease_seconds),
        dns_account_01=acme.dns_account_01,
        caa_recheck_after=dt.timedelta(seconds=acme.caa_recheck_seconds),
        ca_backdate=dt.timedelta(seconds=ca.backdate_seconds),
        ari_retry_after=dt.timedelta(seconds=acme.ari_retry_after_seconds),
        remote_perspectives=tuple(
            RemotePerspective(name=agent.name, url=agent.url) for agent in acme.va_agents
        ),
        remote_quorum=acme.va_quorum or max(len(acme.va_agents) - 1, 1),
        remote_client_cert=acme.va_client_cert,
        remote_client_key=acme.va_client_key,
        remote_ca_file=acme.va_ca_file,
        remote_timeout=acme.va_timeout_seconds,
        base_url=settings.public_url,
        terms_of_service=acme.terms_of_service,
        website=acme.website,
        caa_identities=tuple(acme.caa_identities),
        max_body_bytes=settings.server.max_body_bytes,
        nonce_lifetime=dt.timedelta(seconds=acme.nonce_lifetime_seconds),
        order_lifetime=dt.timedelta(seconds=acme.order_lifetime_seconds),
        authz_lifetime=dt.timedelta(seconds=acme.authz_lifetime_seconds),
        authz_reuse=dt.timedelta(seconds=acme.authz_reuse_seconds),
        orders_page_size=acme.orders_page_size,
        validation_workers=acme.validation_workers,
        validation=ValidationConfig(
            http01_port=acme.http01_port,
            tlsalpn01_port=acme.tlsalpn01_port,
            dns_resolvers=tuple(acme.dns_resolvers),
            deny_networks=tuple(acme.validation_deny),
            timeout=acme.validation_timeout_seconds,
        ),
    )


def rate_limit_config(settings: Settings) -> RateLimitConfig:
    limits = settings.acme.rate_limits

    def limit(item: RateLimitSettings) -> Limit:
        return Limit(item.capacity, dt.timedelta(seconds=item.period_seconds))

    return RateLimitConfig(
        enabled=limits.enabled,
        new_orders_per_account=limit(limits.new_orders_per_account),
        new_orders_per_domain=limit(limits.new_orders_per_domain),
        new_accounts_per_ip=limit(limits.new_accounts_per_ip),
        failed_validations_per_account=limit(limits.failed_validations_per_account),
        overrides=dict(limits.overrides),
    )


def ensure_private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def read_owner_only(path: Path, what: str) -> str:
    """Read a secret from a file nobody but its owner may read (like ssh's key checks)."""
    try:
        info = path.stat()
    except OSError as exc:
        raise CAError("malformed", f"{what} file {path} cannot be read ({exc.strerror})") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CAError("malformed", f"{what} file {path} must not be readable by group or others")
    return path.read_text().strip()


def key_backend(settings: Settings) -> KeyBackend:
    """The CA's key backend: a PKCS#11 token (SoftHSM2 under the data dir by default)."""
    data_dir = settings.server.data_dir
    ca = settings.ca
    if ca.backend == "software":
        # Envelope encryption: a data key per CA key, wrapped by the KEK (CERTYARD_KEK or the
        # owner-only file <data_dir>/ca/kek). Blobs written before it (v1, one passphrase) still
        # load when the old passphrase file is there.
        ensure_private_dir(data_dir / "ca")
        passphrase_file = ca.key_passphrase_file or data_dir / "ca" / "key-passphrase"
        legacy = load_or_create_passphrase(passphrase_file) if passphrase_file.exists() else None
        return SoftwareKeyBackend(default_kek(data_dir), legacy_passphrase=legacy)
    p11 = ca.pkcs11
    if not p11.module:
        token_dir = ensure_private_dir(data_dir / "softhsm")
        token = ensure_softhsm_token(token_dir.resolve(), label=p11.token_label)
        return Pkcs11KeyBackend(token.backend_config(sessions=p11.sessions))
    if p11.pin_file is None:
        raise CAError("malformed", "ca.pkcs11.pin_file is required with ca.pkcs11.module")
    config = Pkcs11Config(
        module=p11.module,
        token_label=p11.token_label,
        pin=read_owner_only(p11.pin_file, "ca.pkcs11.pin_file"),
        sessions=p11.sessions,
    )
    return Pkcs11KeyBackend(config)


# How build_services finds the CA hierarchy: load it, creating it on an empty database (serve);
# only load it (CAError "not_found" when there is none); only create it ("conflict" if one exists).
HierarchyMode = Literal["load_or_create", "load", "create"]


async def _hierarchy(
    sessions: async_sessionmaker[AsyncSession],
    backend: KeyBackend,
    config: CAConfig,
    mode: HierarchyMode,
    ceremony: Ceremony | None,
) -> Hierarchy:
    # A new hierarchy is the ceremony's, by default a root with an ECDSA and an RSA chain.
    plan = ceremony or default_ceremony(config)
    if mode == "create":
        return await create_hierarchy(sessions, backend, config, utc_now, plan)
    if mode == "load_or_create":
        return await load_or_create_hierarchy(sessions, backend, config, utc_now, ceremony=plan)
    found = await load_hierarchy(sessions, backend)
    if found is None:
        raise CAError("not_found", "the database has no CA hierarchy yet: run certyard ca init")
    return found


async def build_services(
    settings: Settings,
    *,
    hierarchy_mode: HierarchyMode = "load_or_create",
    ceremony: Ceremony | None = None,
) -> Services:
    """Open the database and the key backend, then the CA hierarchy (``hierarchy_mode``; a new
    one is made by ``ceremony``, default :func:`ca.ceremony.default_ceremony`), and the CA's
    services on top of them."""
    data_dir = settings.server.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.database_url)
    backend: KeyBackend | None = None
    try:
        await migrate(engine)
        sessions = session_factory(engine)
        backend = key_backend(settings)
        config = ca_config(settings)
        hierarchy = await _hierarchy(sessions, backend, config, hierarchy_mode, ceremony)
        trail = audit_trail(settings, sessions, backend)
        issuance = IssuanceService(sessions, hierarchy, backend, config, utc_now, audit=trail)
        crls = CRLService(
            sessions,
            hierarchy,
            backend,
            utc_now,
            CRLConfig(
                validity=dt.timedelta(hours=settings.ca.crl_validity_hours),
                regenerate_every=dt.timedelta(minutes=settings.ca.crl_regenerate_minutes),
                base_url=settings.http_public_url,
                shards=settings.ca.crl_shards,
            ),
        )
        try:
            # A start with settings that differ from the last recorded ones is a change.
            await record_config(trail, sessions, settings.model_dump(mode="json"))
        except AuditError as exc:
            raise CAError("internal", f"audit trail: {exc.detail}", exc) from exc
        signers = OCSPSignerProvider(sessions, hierarchy, backend, utc_now)
        ocsp = OCSPResponder(
            sessions,
            hierarchy,
            backend,
            utc_now,
            signers,
            OCSPConfig(validity=dt.timedelta(hours=settings.ca.ocsp_validity_hours)),
        )
    except BaseException:
        close = getattr(backend, "close", None)
        if close is not None:
            await close()
        await engine.dispose()
        raise
    write_root(data_dir, hierarchy.root_pem())
    authority = CertificateAuthority(sessions, issuance, crls, ocsp)
    return Services(
        settings, engine, sessions, hierarchy, issuance, backend, crls, ocsp, authority, trail
    )


def audit_trail(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], backend: KeyBackend
) -> AuditTrail:
    """The audit trail, its checkpoints signed by an audit key on the CA's key backend."""
    signer = AuditSigner(sessions, backend, settings.audit.key_label, utc_now)
    return AuditTrail(sessions, settings.audit, signer=signer, clock=utc_now)


def write_root(data_dir: Path, pem: str) -> Path:
    """<data_dir>/ca/root.pem is what clients trust; written atomically."""
    ca_dir = data_dir / "ca"
    ca_dir.mkdir(parents=True, exist_ok=True)
    path = ca_dir / "root.pem"
    tmp = ca_dir / f".root.pem.{os.getpid()}"
    tmp.write_text(pem)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path
