"""The audit signing key: an ECDSA P-256 key pair made by the CA's key backend.

With the PKCS#11 backend (the default) the key is generated on the token, sensitive and
non-extractable (ca/pkcs11_keys.py), and every checkpoint is signed there; with
``ca.backend = "software"`` it is an envelope-encrypted blob like the CA keys. The database keeps
the key reference and the public half (table ``audit_keys``, keyed by the SPKI SHA-256).

The key is created on first use (the first checkpoint), not at start-up: processes that only
append entries (CLI commands) never open the token for it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import load_der_public_key
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audit.errors import AuditError
from ca.errors import CAError
from ca.keys import EC_P256, KeyBackend, spki_der
from storage.models_audit import AuditKeyRow

CURRENT = "current"


@dataclass(frozen=True)
class AuditKey:
    id: str  # hex SHA-256 of the DER SubjectPublicKeyInfo
    key_ref: str
    public_key: PublicKeyTypes


def key_id(public_key: PublicKeyTypes) -> str:
    return hashlib.sha256(spki_der(public_key)).hexdigest()


async def stored_public_keys(session: AsyncSession) -> dict[str, PublicKeyTypes]:
    """Every audit public key the database knows, by id; a row whose id is not its key's
    SPKI hash is left out (its checkpoints then fail as signed by an unknown key)."""
    keys: dict[str, PublicKeyTypes] = {}
    for row in (await session.execute(select(AuditKeyRow))).scalars():
        try:
            public_key = load_der_public_key(row.public_key_der)
        except ValueError:
            continue
        if key_id(public_key) == row.id:
            keys[row.id] = public_key
    return keys


class AuditSigner:
    """Signs checkpoints with the current audit key, creating it on the backend when the
    database has none yet."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        backend: KeyBackend,
        label: str,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self._sessions = sessions
        self._backend = backend
        self._label = label
        self._clock = clock
        self._key: AuditKey | None = None
        self._lock = asyncio.Lock()

    async def key(self) -> AuditKey:
        async with self._lock:
            if self._key is None:
                self._key = await self._load_or_create()
            return self._key

    async def sign(self, data: bytes) -> tuple[AuditKey, bytes]:
        key = await self.key()
        try:
            # ECDSA with SHA-256 over ``data``, DER ECDSA-Sig-Value (ca/keys.py KeyBackend.sign).
            return key, await self._backend.sign(key.key_ref, data)
        except CAError as exc:
            raise AuditError(f"the audit key could not sign: {exc.detail}", exc) from exc

    async def _load_or_create(self) -> AuditKey:
        try:
            row = await self._current()
            if row is None:
                row = await self._create()
            if row.key_backend != self._backend.name:
                raise AuditError(
                    f"the audit key is in backend {row.key_backend!r}, not {self._backend.name!r}"
                )
            await self._backend.load(row.key_ref, row.key_blob)
        except CAError as exc:
            raise AuditError(f"the audit key is not usable: {exc.detail}", exc) from exc
        except SQLAlchemyError as exc:
            raise AuditError("the audit key could not be read", exc) from exc
        public_key = self._backend.public_key(row.key_ref)
        if spki_der(public_key) != row.public_key_der:
            raise AuditError(f"audit key {row.id}: the backend's key differs from the stored one")
        return AuditKey(row.id, row.key_ref, public_key)

    async def _current(self) -> AuditKeyRow | None:
        async with self._sessions() as session:
            return (
                await session.execute(select(AuditKeyRow).where(AuditKeyRow.role == CURRENT))
            ).scalar_one_or_none()

    async def _create(self) -> AuditKeyRow:
        # Unique label, as for CA keys (ca/hierarchy.py): a racing instance must not reuse ours.
        label = f"{self._label}-{secrets.token_hex(4)}"
        generated = await self._backend.generate(label, EC_P256)
        row = AuditKeyRow(
            id=key_id(generated.public_key),
            role=CURRENT,
            key_backend=self._backend.name,
            key_ref=generated.key_ref,
            key_blob=generated.key_blob,
            label=label,
            public_key_der=spki_der(generated.public_key),
            created_at=self._clock(),
        )
        try:
            async with self._sessions() as session, session.begin():
                session.add(row)
        except IntegrityError:
            # Another instance stored its key first (UNIQUE role): use that one.
            await self._backend.destroy(generated.key_ref)
            found = await self._current()
            if found is None:
                raise AuditError("the audit key could not be stored") from None
            return found
        except BaseException:
            await self._backend.destroy(generated.key_ref)
            raise
        return row
