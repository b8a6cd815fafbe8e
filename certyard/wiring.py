"""Build the services of one certyard process from its settings (no globals)."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from acme_server.config import AcmeConfig
from acme_server.va import ValidationConfig
from ca.config import CAConfig
from ca.hierarchy import Hierarchy, load_or_create_hierarchy
from ca.issuance import IssuanceService
from ca.software_keys import SoftwareKeyBackend, load_or_create_passphrase
from certyard.settings import Settings
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

    async def close(self) -> None:
        await self.engine.dispose()


def ca_config(settings: Settings) -> CAConfig:
    ca = settings.ca
    return CAConfig(
        key_algorithm=ca.key_algorithm,
        organization=ca.organization,
        root_common_name=ca.root_common_name,
        intermediate_common_name=ca.intermediate_common_name,
        leaf_validity_days=ca.leaf_validity_days,
    )


def acme_config(settings: Settings) -> AcmeConfig:
    acme = settings.acme
    return AcmeConfig(
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


def ensure_private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


async def build_services(settings: Settings) -> Services:
    data_dir = settings.server.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
        sessions = session_factory(engine)
        passphrase_file = settings.ca.key_passphrase_file or data_dir / "ca" / "key-passphrase"
        ensure_private_dir(passphrase_file.parent)
        backend = SoftwareKeyBackend(load_or_create_passphrase(passphrase_file))
        config = ca_config(settings)
        hierarchy = await load_or_create_hierarchy(sessions, backend, config, utc_now)
        issuance = IssuanceService(sessions, hierarchy, backend, config, utc_now)
    except BaseException:
        await engine.dispose()
        raise
    write_root(data_dir, hierarchy.root_pem())
    return Services(settings, engine, sessions, hierarchy, issuance)


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
