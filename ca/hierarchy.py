"""The CA hierarchy: one self-signed root and one issuing intermediate, created on first start.

Both certificates and their key references live in ``issuers`` (ids ``root-1`` and ``int-1``);
both are also recorded in ``certificates`` like everything else the CA signs. Several instances
may start at once against one PostgreSQL: each builds a candidate hierarchy, and the first to
commit its rows wins. The others hit the primary-key constraint, roll back, drop their unused
keys and load the winner's hierarchy.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ca.config import CAConfig
from ca.der import sign_certificate
from ca.errors import CAError
from ca.keys import GeneratedKey, KeyBackend, algorithm_of, spki_der
from ca.profiles import IntermediateCAProfile, RootCAProfile
from ca.serials import new_serial, serial_to_hex
from storage.models import Issuer
from storage.repositories.certificates import insert_certificate
from storage.repositories.issuers import get_issuer, insert_issuer

ROOT_ID = "root-1"
INTERMEDIATE_ID = "int-1"


@dataclass(frozen=True)
class IssuerHandle:
    """A CA certificate plus the backend reference of its key (never the key itself)."""

    id: str
    certificate: x509.Certificate
    key_ref: str
    pem: str
    algorithm: str


@dataclass(frozen=True)
class Hierarchy:
    root: IssuerHandle
    intermediate: IssuerHandle

    def issuing_chain_pem(self) -> str:
        """What follows a leaf in a download (RFC 8555 §7.4.2): the intermediate only; the root
        is the trust anchor clients already hold (RFC 8446 §4.4.2 lets servers omit it)."""
        return self.intermediate.pem

    def root_pem(self) -> str:
        return self.root.pem


async def load_or_create_hierarchy(
    sessions: async_sessionmaker[AsyncSession],
    backend: KeyBackend,
    config: CAConfig,
    clock: Callable[[], datetime],
) -> Hierarchy:
    """Load the stored hierarchy (making its keys usable), or create it on first start.

    ``config.key_algorithm`` and the names only matter at creation; a stored hierarchy is used
    as it is.
    """
    try:
        existing = await _load(sessions, backend)
        if existing is not None:
            return existing
        return await _create(sessions, backend, config, clock)
    except SQLAlchemyError as exc:
        raise CAError("internal", "cannot read or store the CA hierarchy", exc) from exc


async def _load(
    sessions: async_sessionmaker[AsyncSession], backend: KeyBackend
) -> Hierarchy | None:
    async with sessions() as session:
        root_row = await get_issuer(session, ROOT_ID)
        intermediate_row = await get_issuer(session, INTERMEDIATE_ID)
    if root_row is None and intermediate_row is None:
        return None
    if root_row is None or intermediate_row is None:
        raise CAError("internal", "the stored CA hierarchy is incomplete")
    root = await _open(root_row, backend)
    intermediate = await _open(intermediate_row, backend)
    try:
        root.certificate.verify_directly_issued_by(root.certificate)
        intermediate.certificate.verify_directly_issued_by(root.certificate)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise CAError("internal", "the stored CA certificates do not chain", exc) from exc
    return Hierarchy(root=root, intermediate=intermediate)


async def _open(row: Issuer, backend: KeyBackend) -> IssuerHandle:
    if row.key_backend != backend.name:
        raise CAError(
            "internal",
            f"issuer {row.id}'s key is in backend {row.key_backend!r}, not {backend.name!r}",
        )
    await backend.load(row.key_ref, row.key_blob)
    certificate = x509.load_pem_x509_certificate(row.cert_pem.encode("ascii"))
    if spki_der(backend.public_key(row.key_ref)) != spki_der(certificate.public_key()):
        raise CAError("internal", f"issuer {row.id}'s key does not match its certificate")
    return IssuerHandle(
        id=row.id,
        certificate=certificate,
        key_ref=row.key_ref,
        pem=row.cert_pem,
        algorithm=algorithm_of(certificate.public_key()),
    )


async def _create(
    sessions: async_sessionmaker[AsyncSession],
    backend: KeyBackend,
    config: CAConfig,
    clock: Callable[[], datetime],
) -> Hierarchy:
    # Unique labels: a racing instance generating at the same time must not reuse ours (on a
    # PKCS#11 token two objects with one label would be ambiguous).
    suffix = secrets.token_hex(4)
    keys: list[GeneratedKey] = []
    try:
        keys.append(await backend.generate(f"{ROOT_ID}-{suffix}", config.key_algorithm))
        keys.append(await backend.generate(f"{INTERMEDIATE_ID}-{suffix}", config.key_algorithm))
        return await _sign_and_store(sessions, backend, config, clock(), keys[0], keys[1])
    except IntegrityError:
        # Another instance committed its hierarchy first: drop our keys and use that one.
        await _destroy(backend, keys)
        winner = await _load(sessions, backend)
        if winner is None:
            raise CAError("internal", "CA hierarchy insert conflicted but none is stored") from None
        return winner
    except BaseException:
        await _destroy(backend, keys)  # never leave unused CA keys behind (e.g. on a token)
        raise


async def _destroy(backend: KeyBackend, keys: list[GeneratedKey]) -> None:
    for key in keys:
        await backend.destroy(key.key_ref)


async def _sign_and_store(
    sessions: async_sessionmaker[AsyncSession],
    backend: KeyBackend,
    config: CAConfig,
    now: datetime,
    root_key: GeneratedKey,
    intermediate_key: GeneratedKey,
) -> Hierarchy:
    algorithm = config.key_algorithm
    root_cert = await sign_certificate(
        RootCAProfile(config).build(public_key=root_key.public_key, serial=new_serial(), now=now),
        backend=backend,
        key_ref=root_key.key_ref,
        algorithm=algorithm,
        issuer=None,
    )
    intermediate_cert = await sign_certificate(
        IntermediateCAProfile(config).build(
            public_key=intermediate_key.public_key, serial=new_serial(), issuer=root_cert, now=now
        ),
        backend=backend,
        key_ref=root_key.key_ref,
        algorithm=algorithm,
        issuer=root_cert,
    )
    root = _handle(ROOT_ID, root_cert, root_key, algorithm)
    intermediate = _handle(INTERMEDIATE_ID, intermediate_cert, intermediate_key, algorithm)
    # One transaction: both issuers (and their certificate rows) or neither.
    async with sessions() as session, session.begin():
        await _store(session, root, root_key, None, backend.name, now)
        await _store(session, intermediate, intermediate_key, ROOT_ID, backend.name, now)
    return Hierarchy(root=root, intermediate=intermediate)


def _handle(
    issuer_id: str, certificate: x509.Certificate, key: GeneratedKey, algorithm: str
) -> IssuerHandle:
    pem = certificate.public_bytes(Encoding.PEM).decode("ascii")
    return IssuerHandle(
        id=issuer_id, certificate=certificate, key_ref=key.key_ref, pem=pem, algorithm=algorithm
    )


async def _store(
    session: AsyncSession,
    handle: IssuerHandle,
    key: GeneratedKey,
    parent_id: str | None,
    backend_name: str,
    now: datetime,
) -> None:
    await insert_issuer(
        session,
        id=handle.id,
        role="root" if parent_id is None else "intermediate",
        parent_id=parent_id,
        cert_pem=handle.pem,
        key_backend=backend_name,
        key_ref=key.key_ref,
        key_blob=key.key_blob,
        created_at=now,
    )
    cert = handle.certificate
    # Every certificate the CA signs is recorded, CA certificates included.
    await insert_certificate(
        session,
        id=secrets.token_urlsafe(16),
        serial_hex=serial_to_hex(cert.serial_number),
        issuer_id=parent_id or handle.id,
        der=cert.public_bytes(Encoding.DER),
        chain_pem=handle.pem,
        names=[],
        profile=RootCAProfile.name if parent_id is None else IntermediateCAProfile.name,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        spki_sha256=hashlib.sha256(spki_der(cert.public_key())).hexdigest(),
        account_id=None,
        order_id=None,
        created_at=now,
    )
