"""The CA hierarchy: one root and its issuing intermediates, one active per chain.

The rows live in ``issuers``; every CA certificate is also recorded in ``certificates`` like
everything else the CA signs. A chain ("ecdsa" or "rsa", from the intermediate's key type) has
at most one *active* intermediate, which issues; the ones it replaced are *retired*: they sign no
more certificates but keep signing CRLs and OCSP answers for those they issued. Issuance picks
the active intermediate of the subscriber key's chain (:meth:`Hierarchy.active_for`), falling
back to the default chain when that chain has none - a database of the single-intermediate
releases ("root-1" + "int-1") keeps issuing everything from int-1.

A hierarchy is created by a key ceremony (``ca.ceremony``). Several instances may start at once
against one PostgreSQL on an empty database: each builds a candidate hierarchy, and the first to
commit its rows wins. The others hit the primary key on ``issuers``, roll back, drop their unused
keys and load the winner's hierarchy. Rotations and added intermediates
(:func:`add_intermediates`) take effect in a running instance at its next start.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ca.ceremony import (
    FIRST_INTERMEDIATE_ID,
    INTERMEDIATE,
    ROOT,
    ROOT_ID,
    AlternateChainSpec,
    CASpec,
    Ceremony,
    Chain,
    ca_certificate,
    chain_of,
    default_ceremony,
    default_intermediate,
    lint_ca_certificate,
    successor,
)
from ca.config import CAConfig
from ca.der import sign_certificate
from ca.errors import CAError
from ca.keys import GeneratedKey, KeyBackend, algorithm_of, spki_der
from ca.lint import INTERMEDIATE_CA, ROOT_CA
from ca.serials import new_serial, serial_to_hex
from storage.models import Issuer
from storage.repositories.certificates import insert_certificate
from storage.repositories.issuers import ACTIVE, insert_issuer, list_issuers, retire_issuer

INTERMEDIATE_ID = FIRST_INTERMEDIATE_ID
ALTERNATE = "alternate"
RETIRED = "retired"

__all__ = ["INTERMEDIATE_ID", "ROOT_ID", "AlternateChain", "Hierarchy", "IssuerHandle"]


@dataclass(frozen=True)
class IssuerHandle:
    """A CA certificate plus the backend reference of its key (never the key itself)."""

    id: str
    certificate: x509.Certificate
    key_ref: str
    pem: str
    algorithm: str
    role: str = INTERMEDIATE
    chain: Chain | None = None
    status: str = ACTIVE
    parent_id: str | None = None

    @property
    def active(self) -> bool:
        return self.status == ACTIVE


@dataclass(frozen=True)
class AlternateChain:
    """Another chain for the leaves of ``intermediate_id`` (RFC 8555 §7.4.2): ``pem`` is what
    follows the leaf - first another certificate for the intermediate's key (a cross-sign)."""

    id: str
    intermediate_id: str
    pem: str


@dataclass(frozen=True)
class Hierarchy:
    root: IssuerHandle
    intermediates: list[IssuerHandle]  # all of them, retired ones included, oldest first
    alternates: list[AlternateChain] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not any(handle.active for handle in self.intermediates):
            raise CAError("internal", "the CA hierarchy has no active intermediate")

    @property
    def default_chain(self) -> Chain:
        """The chain of the root's key type when it has an active intermediate, else the
        chain of the first active one."""
        preferred = chain_of(self.root.algorithm)
        if self.active(preferred) is not None:
            return preferred
        return chain_of(next(h for h in self.intermediates if h.active).algorithm)

    @property
    def intermediate(self) -> IssuerHandle:
        """The active intermediate of the default chain (what code written for one issuing CA
        means by "the intermediate")."""
        return self.active_for(self.default_chain)

    @property
    def issuers(self) -> list[IssuerHandle]:
        """Every CA that signs CRLs: the root and all intermediates."""
        return [self.root, *self.intermediates]

    def active(self, chain: str) -> IssuerHandle | None:
        return next((h for h in self.intermediates if h.active and h.chain == chain), None)

    def active_for(self, key_algorithm: str) -> IssuerHandle:
        """The intermediate that issues for a subscriber key of ``key_algorithm`` ("ec-p256",
        "rsa-2048", ... or a chain name): its chain's active intermediate, else the default
        chain's."""
        try:
            chain: str = chain_of(key_algorithm)
        except CAError:
            chain = self.default_chain
        handle = self.active(chain) or self.active(self.default_chain)
        if handle is None:  # pragma: no cover - __post_init__ guarantees one
            raise CAError("internal", "the CA hierarchy has no active intermediate")
        return handle

    def issuer(self, issuer_id: str) -> IssuerHandle | None:
        return next((h for h in self.issuers if h.id == issuer_id), None)

    def issuing_chain_pem(self, issuer_id: str | None = None) -> str:
        """What follows a leaf of ``issuer_id`` (default: :attr:`intermediate`) in a download
        (RFC 8555 §7.4.2): the intermediate only; the root is the trust anchor clients already
        hold (RFC 8446 §4.4.2 lets servers omit it)."""
        handle = self.intermediate if issuer_id is None else self.issuer(issuer_id)
        if handle is None:
            raise CAError("not_found", f"no issuer {issuer_id!r}")
        return handle.pem

    def alternates_of(self, intermediate_id: str) -> list[AlternateChain]:
        return [alt for alt in self.alternates if alt.intermediate_id == intermediate_id]

    def root_pem(self) -> str:
        return self.root.pem


@dataclass(frozen=True)
class Rotation:
    """An intermediate a ceremony or rotation created, and the one it retired (if any)."""

    created: IssuerHandle
    retired: IssuerHandle | None


class _LostRace(Exception):
    """Another instance stored its hierarchy first."""


async def load_or_create_hierarchy(
    sessions: async_sessionmaker[AsyncSession],
    backend: KeyBackend,
    config: CAConfig,
    clock: Callable[[], datetime],
    *,
    ceremony: Ceremony | None = None,
) -> Hierarchy:
    """Load the stored hierarchy (making its keys usable), or create it on first start.

    ``ceremony`` says what to create; None means the single-chain hierarchy of ``config``
    (root-1 + int-1 with ``config.key_algorithm``). certyard's wiring passes
    :func:`ca.ceremony.default_ceremony` (an ECDSA and an RSA chain). A stored hierarchy is
    used as it is.
    """
    if ceremony is None:
        ceremony = default_ceremony(config, (chain_of(config.key_algorithm),))
    try:
        existing = await load_hierarchy(sessions, backend)
        if existing is not None:
            return existing
        try:
            return await _create(sessions, backend, config, clock, ceremony)
        except _LostRace:
            winner = await load_hierarchy(sessions, backend)
            if winner is None:
                raise CAError(
                    "internal", "CA hierarchy insert conflicted but none is stored"
                ) from None
            return winner
    except SQLAlchemyError as exc:
        raise CAError("internal", "cannot read or store the CA hierarchy", exc) from exc


async def create_hierarchy(
    sessions: async_sessionmaker[AsyncSession],
    backend: KeyBackend,
    config: CAConfig,
    clock: Callable[[], datetime],
    ceremony: Ceremony,
) -> Hierarchy:
    """Carry out ``ceremony`` on an empty database; CAError "conflict" if a hierarchy exists
    (or another instance stores one first)."""
    exists = "a CA hierarchy already exists"
    try:
        async with sessions() as session:
            if await list_issuers(session, (ROOT,)):
                raise CAError("conflict", exists)
        return await _create(sessions, backend, config, clock, ceremony)
    except _LostRace:
        raise CAError("conflict", exists) from None
    except SQLAlchemyError as exc:
        raise CAError("internal", "cannot read or store the CA hierarchy", exc) from exc


async def load_hierarchy(
    sessions: async_sessionmaker[AsyncSession], backend: KeyBackend
) -> Hierarchy | None:
    """The stored hierarchy with its keys made usable, or None when there is none."""
    async with sessions() as session:
        rows = await list_issuers(session, (ROOT, INTERMEDIATE, ALTERNATE))
    roots = [row for row in rows if row.role == ROOT]
    intermediates = [row for row in rows if row.role == INTERMEDIATE]
    if not roots and not intermediates:
        return None
    if len(roots) != 1 or not intermediates:
        raise CAError("internal", "the stored CA hierarchy is incomplete")
    root = await _open(roots[0], backend)
    handles = [await _open(row, backend) for row in intermediates]
    try:
        root.certificate.verify_directly_issued_by(root.certificate)
        for handle in handles:
            handle.certificate.verify_directly_issued_by(root.certificate)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise CAError("internal", "the stored CA certificates do not chain", exc) from exc
    alternates = [
        AlternateChain(row.id, row.alternate_of or "", row.cert_pem)
        for row in rows
        if row.role == ALTERNATE
    ]
    return Hierarchy(root=root, intermediates=handles, alternates=alternates)


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
    algorithm = algorithm_of(certificate.public_key())
    return IssuerHandle(
        id=row.id,
        certificate=certificate,
        key_ref=row.key_ref,
        pem=row.cert_pem,
        algorithm=algorithm,
        role=row.role,
        chain=chain_of(algorithm) if row.role == INTERMEDIATE else None,
        status=row.status,
        parent_id=row.parent_id,
    )


async def _create(
    sessions: async_sessionmaker[AsyncSession],
    backend: KeyBackend,
    config: CAConfig,
    clock: Callable[[], datetime],
    ceremony: Ceremony,
) -> Hierarchy:
    spec = ceremony.root
    if spec is None or not ceremony.intermediates:
        raise CAError("malformed", "a new hierarchy needs a root and at least one intermediate")
    if ceremony.alternate_chains:
        raise CAError(
            "malformed",
            "alternate chains certify keys that already exist: add them to the hierarchy "
            "after it is created (certyard ca init --add-intermediate)",
        )
    now = clock()
    root_id = spec.id or ROOT_ID
    ids = _allocate_ids(ceremony.intermediates, {root_id})
    keys: list[GeneratedKey] = []
    try:
        root_key = await _generate(backend, spec, root_id, keys)
        root_cert = await _sign_ca(spec, root_key, config, now, backend, signer=None)
        root = _handle(root_id, root_cert, root_key, ROOT, None)
        created = []
        for intermediate, issuer_id in zip(ceremony.intermediates, ids, strict=True):
            key = await _generate(backend, intermediate, issuer_id, keys)
            cert = await _sign_ca(intermediate, key, config, now, backend, signer=root)
            created.append(_handle(issuer_id, cert, key, INTERMEDIATE, root_id))
        # One transaction: every CA of the ceremony (and its certificate rows) or none.
        async with sessions() as session, session.begin():
            await _store(session, root, root_key, backend.name, now)
            for handle, key in zip(created, keys[1:], strict=True):
                await _store(session, handle, key, backend.name, now)
    except IntegrityError:
        await _destroy(backend, keys)  # another instance committed its hierarchy first
        raise _LostRace from None
    except BaseException:
        await _destroy(backend, keys)  # never leave unused CA keys behind (e.g. on a token)
        raise
    return Hierarchy(root=root, intermediates=created)


async def add_intermediates(
    sessions: async_sessionmaker[AsyncSession],
    backend: KeyBackend,
    config: CAConfig,
    clock: Callable[[], datetime],
    hierarchy: Hierarchy,
    specs: Sequence[CASpec],
) -> list[Rotation]:
    """Create intermediates under the stored root, each becoming its chain's active one; the
    intermediate each replaces is retired in the same transaction. CAError "conflict" when
    another rotation of the same chain committed first (nothing is kept then)."""
    chains = [spec.chain for spec in specs]
    if not specs or len(set(chains)) != len(chains):
        raise CAError("malformed", "give one new intermediate per chain")
    now = clock()
    async with sessions() as session:
        rows = await list_issuers(session)
    taken = {row.id for row in rows}
    key_refs = {row.key_ref for row in rows}
    for spec in specs:
        if spec.id is not None and spec.id in taken:
            raise CAError("conflict", f"an issuer {spec.id!r} already exists")
    ids = _allocate_ids(specs, taken)
    keys: list[GeneratedKey] = []
    rotations = []
    try:
        for spec, issuer_id in zip(specs, ids, strict=True):
            key = await _generate(backend, spec, issuer_id, keys)
            if key.key_ref in key_refs:
                raise CAError("conflict", f"a CA key {key.key_ref!r} is already in use")
            cert = await _sign_ca(spec, key, config, now, backend, signer=hierarchy.root)
            created = _handle(issuer_id, cert, key, INTERMEDIATE, hierarchy.root.id)
            rotations.append(Rotation(created, hierarchy.active(spec.chain)))
        async with sessions() as session, session.begin():
            for rotation, key in zip(rotations, keys, strict=True):
                await _store(session, rotation.created, key, backend.name, now)
                old = rotation.retired
                if old is not None and not await retire_issuer(session, old.id, now):
                    raise CAError("conflict", f"{old.id} was retired by another rotation")
    except IntegrityError:
        await _destroy(backend, keys)
        raise CAError("conflict", "another ceremony stored an issuer with the same id") from None
    except SQLAlchemyError as exc:
        await _destroy(backend, keys)
        raise CAError("internal", "cannot store the new intermediates", exc) from exc
    except BaseException:
        await _destroy(backend, keys)
        raise
    return [
        Rotation(r.created, None if r.retired is None else _retired(r.retired)) for r in rotations
    ]


async def rotate(
    sessions: async_sessionmaker[AsyncSession],
    backend: KeyBackend,
    config: CAConfig,
    clock: Callable[[], datetime],
    hierarchy: Hierarchy,
    chain: Chain,
) -> Rotation:
    """A new intermediate for ``chain`` like its active one (``ca.ceremony.successor``: same
    key type, validity, path length and name constraints); the old one is retired. A chain
    without an intermediate (the RSA chain of an upgraded database) gets its default one."""
    current = hierarchy.active(chain)
    if current is None:
        spec = dataclasses.replace(default_intermediate(config, chain), id=None)
    else:
        spec = successor(current.certificate, current.algorithm)
    return (await add_intermediates(sessions, backend, config, clock, hierarchy, [spec]))[0]


async def add_alternate_chain(
    sessions: async_sessionmaker[AsyncSession],
    hierarchy: Hierarchy,
    spec: AlternateChainSpec,
    clock: Callable[[], datetime],
) -> AlternateChain:
    """Store a PEM bundle as an alternate chain of the intermediate whose key (and subject)
    its first certificate names; each certificate must be signed by the next one."""
    try:
        certs = x509.load_pem_x509_certificates(spec.pem)
    except ValueError:
        raise CAError("malformed", f"{spec.source}: not a PEM certificate bundle") from None
    first = certs[0]
    matches = [
        handle
        for handle in hierarchy.intermediates
        if spki_der(handle.certificate.public_key()) == spki_der(first.public_key())
        and handle.certificate.subject == first.subject
        and spec.intermediate in (None, handle.id)
    ]
    if not matches:
        wanted = spec.intermediate or "any intermediate"
        raise CAError(
            "malformed", f"{spec.source}: its first certificate does not certify {wanted}"
        )
    target = matches[0]
    if first == target.certificate:
        raise CAError("malformed", f"{spec.source}: that is {target.id}'s own certificate")
    try:
        for cert, issuer in itertools.pairwise(certs):
            cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        raise CAError(
            "malformed", f"{spec.source}: each certificate must be signed by the next"
        ) from None
    now = clock()
    if not first.not_valid_before_utc <= now < first.not_valid_after_utc:
        raise CAError("malformed", f"{spec.source}: the alternate certificate is not valid now")
    pem = "".join(cert.public_bytes(Encoding.PEM).decode("ascii") for cert in certs)
    alternate_id = f"alt-{target.id}-{len(hierarchy.alternates_of(target.id)) + 1}"
    try:
        async with sessions() as session, session.begin():
            await insert_issuer(
                session,
                id=alternate_id,
                role=ALTERNATE,
                parent_id=None,
                cert_pem=pem,
                key_backend=(await _row_backend(session, target.id)),
                key_ref=target.key_ref,
                key_blob=None,
                created_at=now,
                chain=target.chain,
                alternate_of=target.id,
            )
    except IntegrityError:
        raise CAError("conflict", f"an issuer {alternate_id!r} already exists") from None
    return AlternateChain(alternate_id, target.id, pem)


async def _row_backend(session: AsyncSession, issuer_id: str) -> str:
    row = await session.get(Issuer, issuer_id)
    if row is None:
        raise CAError("not_found", f"no issuer {issuer_id!r}")
    return row.key_backend


def _allocate_ids(specs: Sequence[CASpec], taken: set[str]) -> list[str]:
    """The ceremony's ids, and "int-N" (the next free N) for specs without one."""
    used = set(taken) | {spec.id for spec in specs if spec.id}
    numbers = [int(i[4:]) for i in used if i.startswith("int-") and i[4:].isdigit()]
    following = max(numbers, default=0) + 1
    ids = []
    for spec in specs:
        if spec.id is not None:
            ids.append(spec.id)
            continue
        ids.append(f"int-{following}")
        following += 1
    return ids


async def _generate(
    backend: KeyBackend, spec: CASpec, issuer_id: str, keys: list[GeneratedKey]
) -> GeneratedKey:
    # Unique labels: a racing instance generating at the same time must not reuse ours (on a
    # PKCS#11 token two objects with one label would be ambiguous).
    label = spec.label or f"{issuer_id}-{secrets.token_hex(4)}"
    key = await backend.generate(label, spec.algorithm)
    keys.append(key)
    return key


async def _sign_ca(
    spec: CASpec,
    key: GeneratedKey,
    config: CAConfig,
    now: datetime,
    backend: KeyBackend,
    *,
    signer: IssuerHandle | None,
) -> x509.Certificate:
    """Build, lint (pkilint, before any signature) and sign one CA certificate."""
    builder = ca_certificate(
        spec,
        public_key=key.public_key,
        serial=new_serial(),
        now=now,
        config=config,
        issuer=None if signer is None else signer.certificate,
        issuer_id=None if signer is None else signer.id,
    )
    algorithm = spec.algorithm if signer is None else signer.algorithm
    await asyncio.to_thread(lint_ca_certificate, config, builder, algorithm, spec.role)
    return await sign_certificate(
        builder,
        backend=backend,
        key_ref=key.key_ref if signer is None else signer.key_ref,
        algorithm=algorithm,
        issuer=None if signer is None else signer.certificate,
    )


async def _destroy(backend: KeyBackend, keys: list[GeneratedKey]) -> None:
    for key in keys:
        await backend.destroy(key.key_ref)


def _handle(
    issuer_id: str,
    certificate: x509.Certificate,
    key: GeneratedKey,
    role: str,
    parent_id: str | None,
) -> IssuerHandle:
    algorithm = algorithm_of(certificate.public_key())
    return IssuerHandle(
        id=issuer_id,
        certificate=certificate,
        key_ref=key.key_ref,
        pem=certificate.public_bytes(Encoding.PEM).decode("ascii"),
        algorithm=algorithm,
        role=role,
        chain=chain_of(algorithm) if role == INTERMEDIATE else None,
        parent_id=parent_id,
    )


def _retired(handle: IssuerHandle) -> IssuerHandle:
    return dataclasses.replace(handle, status=RETIRED)


async def _store(
    session: AsyncSession,
    handle: IssuerHandle,
    key: GeneratedKey,
    backend_name: str,
    now: datetime,
) -> None:
    await insert_issuer(
        session,
        id=handle.id,
        role=handle.role,
        parent_id=handle.parent_id,
        cert_pem=handle.pem,
        key_backend=backend_name,
        key_ref=key.key_ref,
        key_blob=key.key_blob,
        created_at=now,
        chain=handle.chain,
    )
    cert = handle.certificate
    # Every certificate the CA signs is recorded, CA certificates included.
    await insert_certificate(
        session,
        id=secrets.token_urlsafe(16),
        serial_hex=serial_to_hex(cert.serial_number),
        issuer_id=handle.parent_id or handle.id,
        der=cert.public_bytes(Encoding.DER),
        chain_pem=handle.pem,
        names=[],
        profile=ROOT_CA if handle.role == ROOT else INTERMEDIATE_CA,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        spki_sha256=hashlib.sha256(spki_der(cert.public_key())).hexdigest(),
        account_id=None,
        order_id=None,
        created_at=now,
    )
