"""Certificate revocation lists (RFC 5280 §5), one per CA of the hierarchy (or N shards of it):
the root's and every intermediate's, retired ones included (they keep publishing the status of
the certificates they issued until those expire).

Each CRL is built with cryptography's ``CertificateRevocationListBuilder`` and signed by the
issuing CA's key through the key backend (``ca.der.sign_crl``). CRLs are cached in memory per
issuer and shard and rebuilt when they are older than ``regenerate_every``, past half their
validity, or after :meth:`CRLService.invalidate` (called on every revocation).

Several instances may serve CRLs from one database. Each builds its own; they differ only in
thisUpdate and CRL Number, and a revocation made on another instance shows up here at the next
regeneration (at most ``regenerate_every`` later).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ca.der import sign_crl
from ca.errors import CAError
from ca.hierarchy import Hierarchy, IssuerHandle
from ca.keys import KeyBackend
from ca.profiles import crl_url as profile_crl_url
from storage.repositories.revocation import RevokedEntry, revoked_unexpired

# BR §4.9.7: for subscriber certificates nextUpdate is at most ten days after thisUpdate.
MAX_CRL_VALIDITY = timedelta(days=10)
# An upper bound on shards keeps a typo from asking for a million CRLs per issuer.
MAX_SHARDS = 1024
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNSPECIFIED = 0

# RFC 5280 §5.3.1 CRLReason codes (7 is unused).
REASON_FLAGS: dict[int, x509.ReasonFlags] = {
    0: x509.ReasonFlags.unspecified,
    1: x509.ReasonFlags.key_compromise,
    2: x509.ReasonFlags.ca_compromise,
    3: x509.ReasonFlags.affiliation_changed,
    4: x509.ReasonFlags.superseded,
    5: x509.ReasonFlags.cessation_of_operation,
    6: x509.ReasonFlags.certificate_hold,
    8: x509.ReasonFlags.remove_from_crl,
    9: x509.ReasonFlags.privilege_withdrawn,
    10: x509.ReasonFlags.aa_compromise,
}


def reason_flag(code: int | None) -> x509.ReasonFlags | None:
    """The reason to publish for a stored code: None for unspecified (0) or no code, because
    RFC 5280 §5.3.1 and BR §7.2.2 say to omit reasonCode rather than state unspecified."""
    if code is None or code == _UNSPECIFIED:
        return None
    flag = REASON_FLAGS.get(code)
    if flag is None:
        raise CAError("internal", f"stored revocation reason {code} is not an RFC 5280 code")
    return flag


@dataclass(frozen=True)
class CRLConfig:
    """CRL publication settings.

    ``validity`` is nextUpdate - thisUpdate (RFC 5280 §5.1.2.5); ``base_url`` (e.g.
    ``http://crl.example``) is where the revocation front end is reachable - when set, each CRL
    names its own URL in an IssuingDistributionPoint. ``shards`` > 1 splits each issuer's CRL
    into that many partitions by serial number.
    """

    validity: timedelta = timedelta(days=7)
    regenerate_every: timedelta = timedelta(hours=1)
    base_url: str | None = None
    shards: int = 1

    def __post_init__(self) -> None:
        if not timedelta(0) < self.validity <= MAX_CRL_VALIDITY:
            raise CAError("malformed", "CRL validity must be positive and at most 10 days")
        if self.regenerate_every <= timedelta(0):
            raise CAError("malformed", "CRL regeneration interval must be positive")
        if not 1 <= self.shards <= MAX_SHARDS:
            raise CAError("malformed", f"CRL shards must be between 1 and {MAX_SHARDS}")
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise CAError("malformed", "the CRL base URL must be an http(s) URL")
        if self.shards > 1 and self.base_url is None:
            # RFC 5280 §5.2.5: a partition must say which partition it is (its IDP); without a
            # URL a relying party could take one shard for the complete CRL.
            raise CAError("malformed", "sharded CRLs need a base URL for their distribution point")


def shard_of(serial_hex: str, shards: int) -> int:
    """The shard a certificate's entry goes to: its serial modulo the shard count."""
    return int(serial_hex, 16) % shards


def shard_url(base_url: str, issuer_id: str, shard: int, shards: int) -> str:
    """The URL of one CRL: ``{base}/crl/{issuer}.crl`` unsharded, else
    ``{base}/crl/{issuer}/{shard}.crl``."""
    return profile_crl_url(base_url, issuer_id, None if shards == 1 else shard)


def crl_url(base_url: str, issuer_id: str, serial_hex: str, shards: int) -> str:
    """The CRL that will list the certificate ``serial_hex`` of ``issuer_id`` if it is revoked:
    what the profile puts in the certificate's CRL Distribution Points (RFC 5280 §4.2.1.13)."""
    if shards < 1:
        raise CAError("malformed", "the CRL shard count must be at least 1")
    return shard_url(base_url, issuer_id, shard_of(serial_hex, shards), shards)


@dataclass(frozen=True)
class PublishedCRL:
    """A signed CRL and the times a cache (ours, or an HTTP cache) needs."""

    issuer_id: str
    shard: int
    der: bytes
    number: int
    this_update: datetime
    next_update: datetime
    # Until when this CRL is served without a rebuild (unless invalidated first).
    fresh_until: datetime


@dataclass(frozen=True)
class _Entry:
    crl: PublishedCRL
    epoch: int


class CRLService:
    """Builds, caches and serves the CRLs of the hierarchy's CAs (root and intermediates)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        hierarchy: Hierarchy,
        backend: KeyBackend,
        clock: Callable[[], datetime],
        config: CRLConfig,
    ) -> None:
        self._sessions = sessions
        self._backend = backend
        self._clock = clock
        self._config = config
        self._issuers: dict[str, IssuerHandle] = {handle.id: handle for handle in hierarchy.issuers}
        self._root_id = hierarchy.root.id
        self._cache: dict[tuple[str, int], _Entry] = {}
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}
        # Bumped by invalidate(): a CRL whose data was read before the bump is never cached.
        self._epochs: dict[str, int] = dict.fromkeys(self._issuers, 0)
        self._last_numbers: dict[tuple[str, int], int] = {}

    @property
    def shards(self) -> int:
        return self._config.shards

    @property
    def issuer_ids(self) -> tuple[str, ...]:
        return tuple(self._issuers)

    async def current_crl(self, issuer_id: str, shard: int = 0) -> bytes:
        """The DER CRL of ``issuer_id`` (and ``shard``); CAError ``not_found`` if there is none."""
        return (await self.current(issuer_id, shard)).der

    async def current(self, issuer_id: str, shard: int = 0) -> PublishedCRL:
        """As :meth:`current_crl`, with the CRL's metadata."""
        return await self._get(self._key(issuer_id, shard), force=False)

    def invalidate(self, issuer_id: str) -> None:
        """Drop the cached CRLs of ``issuer_id`` (all shards): call after every revocation."""
        if issuer_id in self._epochs:
            self._epochs[issuer_id] += 1

    async def regenerate_all(self) -> None:
        """Rebuild every CRL of every issuer now (for a scheduler). Tries them all; raises one
        CAError afterwards if any failed."""
        failures: list[CAError] = []
        for issuer_id in self._issuers:
            for shard in range(self._config.shards):
                try:
                    await self._get((issuer_id, shard), force=True)
                except CAError as exc:
                    failures.append(exc)
        if failures:
            raise CAError("internal", f"{len(failures)} CRL(s) failed to build", failures[0])

    def _key(self, issuer_id: str, shard: int) -> tuple[str, int]:
        if issuer_id not in self._issuers:
            raise CAError("not_found", f"no CRL issuer {issuer_id!r}")
        if not 0 <= shard < self._config.shards:
            raise CAError("not_found", f"issuer {issuer_id!r} has no CRL shard {shard}")
        return issuer_id, shard

    def _fresh(self, entry: _Entry, issuer_id: str) -> bool:
        return entry.epoch == self._epochs[issuer_id] and self._clock() < entry.crl.fresh_until

    async def _get(self, key: tuple[str, int], *, force: bool) -> PublishedCRL:
        issuer_id = key[0]
        entry = self._cache.get(key)
        if not force and entry is not None and self._fresh(entry, issuer_id):
            return entry.crl
        # One build per CRL at a time: concurrent requests wait for it instead of each signing.
        async with self._locks.setdefault(key, asyncio.Lock()):
            entry = self._cache.get(key)
            if not force and entry is not None and self._fresh(entry, issuer_id):
                return entry.crl
            epoch = self._epochs[issuer_id]
            crl = await self._build(self._issuers[issuer_id], key[1])
            self._cache[key] = _Entry(crl, epoch)
            return crl

    def _number(self, key: tuple[str, int], now: datetime) -> int:
        # RFC 5280 §5.2.3: CRL numbers increase monotonically per CRL issuer (per scope, for a
        # partitioned CRL). Several instances share no counter, so - like Let's Encrypt's
        # Boulder - the number is derived from the time the CRL is built: microseconds since the
        # epoch (about 2^51 now, far below the 20-octet limit). Across instances it increases as
        # long as their clocks agree better than the time between two builds; within this
        # process it strictly increases even if the clock steps back.
        number = max(
            (now - _EPOCH) // timedelta(microseconds=1), self._last_numbers.get(key, 0) + 1
        )
        self._last_numbers[key] = number
        return number

    async def _build(self, issuer: IssuerHandle, shard: int) -> PublishedCRL:
        now = self._clock()
        try:
            async with self._sessions() as session:
                entries = await revoked_unexpired(session, issuer.id, now)
        except SQLAlchemyError as exc:
            raise CAError("internal", f"cannot read revocations of {issuer.id}", exc) from exc
        shards = self._config.shards
        if shards > 1:
            entries = [e for e in entries if shard_of(e.serial_hex, shards) == shard]
        # RFC 5280 §5.1.2.4/§5.1.2.5: UTCTime/GeneralizedTime carry whole seconds.
        this_update = now.astimezone(UTC).replace(microsecond=0)
        next_update = this_update + self._config.validity
        number = self._number((issuer.id, shard), now)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer.certificate.subject)
            .last_update(this_update)
            .next_update(next_update)
            # RFC 5280 §5.2.1: the AKI carries the issuer's subjectKeyIdentifier.
            .add_extension(_aki(issuer.certificate), critical=False)
            # RFC 5280 §5.2.3: CRL Number, non-critical.
            .add_extension(x509.CRLNumber(number), critical=False)
        )
        idp = self._distribution_point(issuer.id, shard)
        if idp is not None:
            # RFC 5280 §5.2.5: the issuing distribution point is a critical extension.
            builder = builder.add_extension(idp, critical=True)
        for entry in entries:
            builder = builder.add_revoked_certificate(_revoked(entry))
        crl = await sign_crl(
            builder,
            backend=self._backend,
            key_ref=issuer.key_ref,
            algorithm=issuer.algorithm,
            issuer=issuer.certificate,
        )
        half = self._config.validity / 2
        return PublishedCRL(
            issuer_id=issuer.id,
            shard=shard,
            der=crl.public_bytes(Encoding.DER),
            number=number,
            this_update=this_update,
            next_update=next_update,
            fresh_until=this_update + min(self._config.regenerate_every, half),
        )

    def _distribution_point(
        self, issuer_id: str, shard: int
    ) -> x509.IssuingDistributionPoint | None:
        base_url = self._config.base_url
        if base_url is None:
            return None
        url = shard_url(base_url, issuer_id, shard, self._config.shards)
        # RFC 5280 §5.2.5 / BR §7.2.2: the root's CRL covers only CA certificates (the
        # intermediates), the intermediate's only end-entity certificates.
        is_root = issuer_id == self._root_id
        return x509.IssuingDistributionPoint(
            full_name=[x509.UniformResourceIdentifier(url)],
            relative_name=None,
            only_contains_user_certs=not is_root,
            only_contains_ca_certs=is_root,
            only_some_reasons=None,
            indirect_crl=False,
            only_contains_attribute_certs=False,
        )


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        raise CAError("internal", "CRL issuer certificate has no subjectKeyIdentifier") from None
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _revoked(entry: RevokedEntry) -> x509.RevokedCertificate:
    builder = (
        x509.RevokedCertificateBuilder()
        .serial_number(int(entry.serial_hex, 16))
        .revocation_date(entry.revoked_at.astimezone(UTC).replace(microsecond=0))
    )
    reason = reason_flag(entry.reason)
    if reason is not None:
        # RFC 5280 §5.3.1: reasonCode is a non-critical CRL entry extension.
        builder = builder.add_extension(x509.CRLReason(reason), critical=False)
    return builder.build()
