"""One view of every inventory certificate: certyard-issued, scanned, and found in CT logs.

Items are keyed by the hex SHA-256 of the certificate's DER, so a certyard-issued certificate
that the scanner finds on an endpoint is one item with both sources. A CT precertificate entry
(RFC 6962 §3.1) has no final DER: it is merged into the item with the same names and validity,
else it stands alone under "tbs:<TBS SHA-256>".

The ``ct_matches`` table belongs to the CT monitor (ct_monitor/, migration of its own); it is
read through a Table declared here, after checking that it exists, so this module works (and
imports) without the CT monitor installed.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from sqlalchemy import (
    JSON,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    and_,
    func,
    inspect,
    select,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from renewal.config import TagRule
from storage.models import (
    Certificate,
    ScanEndpoint,
    ScanFinding,
    ScannedCertificate,
    ScanObservation,
)
from storage.types import UTCDateTime

# Certificates of certyard's own hierarchy and listener are renewed by certyard itself.
_SKIPPED_REQUESTERS = ("hierarchy", "server-tls")

_ct_metadata = MetaData()
# The contract columns of the CT monitor's table (storage/models_ct.py), those read here.
CT_MATCHES = Table(
    "ct_matches",
    _ct_metadata,
    Column("id", Integer, primary_key=True),
    Column("log_url", Text),
    Column("names", JSON),
    Column("issuer", Text),
    Column("not_before", UTCDateTime()),
    Column("not_after", UTCDateTime()),
    Column("tbs_sha256", String(64)),
    Column("cert_sha256", String(64)),
    Column("der", LargeBinary),
    Column("finding", String(64)),
)


@dataclass
class InventoryItem:
    key: str  # hex SHA-256 of the DER, or "tbs:<hex>" for a precertificate only
    names: list[str]
    not_before: dt.datetime
    not_after: dt.datetime
    issuer: str = ""
    sources: set[str] = field(default_factory=set)  # "certyard" | "scan" | "ct"
    tags: set[str] = field(default_factory=set)
    # certyard-issued
    certificate_id: str | None = None
    serial: str | None = None
    requester: str | None = None
    revoked: bool = False
    ari_window_start: dt.datetime | None = None
    ari_window_end: dt.datetime | None = None
    # scanned: endpoints whose latest answer is this certificate ("ip:port"), and the names
    # they were reached by ("host:port", "sni:port") for policy matching
    endpoints: set[str] = field(default_factory=set)
    endpoint_aliases: set[str] = field(default_factory=set)
    key_type: str | None = None
    findings: set[str] = field(default_factory=set)  # scanner/findings.py codes, CT findings
    ct_logs: set[str] = field(default_factory=set)

    @property
    def exposure(self) -> int:
        return len(self.endpoints)

    @property
    def lifetime(self) -> dt.timedelta:
        # A zero or negative lifetime (malformed certificate) counts as one second.
        return max(self.not_after - self.not_before, dt.timedelta(seconds=1))

    @property
    def requester_kind(self) -> str | None:
        return self.requester.split(":", 1)[0] if self.requester else None


def sha256_hex(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def certificate_names(cert: x509.Certificate) -> list[str]:
    """dNSName and iPAddress SANs; the subject CN when there is no SAN (legacy certificates)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        return [str(cns[0].value)] if cns else []
    names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    return names + [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


def _issuer_of(der: bytes | None) -> str:
    if der is None:
        return ""
    try:
        return x509.load_der_x509_certificate(der).issuer.rfc4514_string()
    except ValueError:
        return ""


def _endpoint_text(host: str, port: int) -> str:
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


def glob_any(values: Iterable[str], patterns: Sequence[str]) -> bool:
    """Case-insensitive shell globs (DNS names are case-insensitive, RFC 4343)."""
    lowered = [v.lower() for v in values]
    return any(fnmatch.fnmatchcase(v, p.lower()) for v in lowered for p in patterns)


def apply_tags(items: Iterable[InventoryItem], rules: Sequence[TagRule]) -> None:
    """Derived tags (requester kind, profile, key type) are set by the loaders; these are the
    operator's ``[[renewal.tags]]`` rules."""
    for item in items:
        for rule in rules:
            if (rule.names and glob_any(item.names, rule.names)) or (
                rule.endpoints and glob_any(item.endpoints | item.endpoint_aliases, rule.endpoints)
            ):
                item.tags.add(rule.tag)


class _Collector:
    def __init__(self) -> None:
        self.items: dict[str, InventoryItem] = {}

    def get(
        self, key: str, names: list[str], not_before: dt.datetime, not_after: dt.datetime
    ) -> InventoryItem:
        item = self.items.get(key)
        if item is None:
            item = self.items[key] = InventoryItem(key, names, not_before, not_after)
        return item


async def _load_certyard(
    session: AsyncSession, inv: _Collector, now: dt.datetime, forget: dt.timedelta
) -> dict[str, dt.datetime]:
    """Issued certificates still relevant; returns each item's creation time (supersession)."""
    rows = await session.scalars(
        select(Certificate).where(
            Certificate.state == "issued",
            Certificate.der.is_not(None),
            Certificate.not_after > now - forget,
            Certificate.requester.not_in(_SKIPPED_REQUESTERS),
        )
    )
    created: dict[str, dt.datetime] = {}
    for cert in rows:
        assert cert.der is not None
        key = sha256_hex(cert.der)
        item = inv.get(key, [str(n) for n in cert.names], cert.not_before, cert.not_after)
        item.sources.add("certyard")
        item.certificate_id, item.serial, item.requester = cert.id, cert.serial, cert.requester
        item.revoked = cert.status == "revoked"
        item.ari_window_start, item.ari_window_end = cert.ari_window_start, cert.ari_window_end
        item.issuer = _issuer_of(cert.der)
        item.tags.add(cert.requester.split(":", 1)[0])
        item.tags.add(f"profile:{cert.profile}")
        if cert.requester.startswith("est:"):
            item.tags.add(cert.requester)
        created[key] = cert.created_at
    return created


async def _load_scanned(session: AsyncSession, inv: _Collector) -> None:
    # Joins on subqueries rather than IN (...) lists: an inventory may hold more certificates
    # than a statement may carry bound parameters (32767 with asyncpg).
    # Exposure: the endpoints whose latest answer with a certificate is this leaf.
    latest = (
        select(func.max(ScanObservation.id).label("id"))
        .where(ScanObservation.cert_sha256.is_not(None))
        .group_by(ScanObservation.endpoint_id)
        .subquery()
    )
    current = await session.execute(
        select(ScanObservation.cert_sha256, ScanEndpoint)
        .join(latest, latest.c.id == ScanObservation.id)
        .join(ScanEndpoint, ScanEndpoint.id == ScanObservation.endpoint_id)
    )
    served: dict[str, list[ScanEndpoint]] = {}
    for sha, endpoint in current.all():
        if sha is not None:
            served.setdefault(sha, []).append(endpoint)
    if not served:
        return
    served_leaves = (
        select(ScanObservation.cert_sha256)
        .join(latest, latest.c.id == ScanObservation.id)
        .scalar_subquery()
    )
    for cert in await session.scalars(
        select(ScannedCertificate).where(ScannedCertificate.sha256.in_(served_leaves))
    ):
        try:
            parsed = x509.load_der_x509_certificate(cert.der)
            names = certificate_names(parsed)
        except ValueError:
            names = []
        item = inv.get(cert.sha256, names, cert.not_before, cert.not_after)
        item.sources.add("scan")
        item.issuer = item.issuer or cert.issuer
        item.key_type = cert.key_type
        item.tags.add(f"key:{cert.key_type}")
        for endpoint in served[cert.sha256]:
            item.endpoints.add(_endpoint_text(endpoint.ip, endpoint.port))
            for alias in (endpoint.host, endpoint.sni):
                if alias:
                    item.endpoint_aliases.add(_endpoint_text(alias, endpoint.port))
    # Findings: those of the latest scan that saw each (endpoint, leaf) pair.
    pairs = (
        select(func.max(ScanObservation.id).label("id"))
        .where(ScanObservation.cert_sha256.is_not(None))
        .group_by(ScanObservation.endpoint_id, ScanObservation.cert_sha256)
        .subquery()
    )
    findings = await session.execute(
        select(ScanFinding.cert_sha256, ScanFinding.code)
        .join(
            ScanObservation,
            and_(
                ScanObservation.scan_id == ScanFinding.scan_id,
                ScanObservation.endpoint_id == ScanFinding.endpoint_id,
                ScanObservation.cert_sha256 == ScanFinding.cert_sha256,
            ),
        )
        .join(pairs, pairs.c.id == ScanObservation.id)
    )
    for sha, code in findings.all():
        if sha is not None and sha in served and sha in inv.items:
            inv.items[sha].findings.add(code)


def _has_table(connection: Connection, name: str) -> bool:
    return bool(inspect(connection).has_table(name))


async def _load_ct(session: AsyncSession, inv: _Collector) -> None:
    connection = await session.connection()
    if not await connection.run_sync(_has_table, "ct_matches"):
        return  # the CT monitor is not installed (or not migrated) here
    by_validity: dict[tuple[frozenset[str], dt.datetime, dt.datetime], InventoryItem] = {
        (frozenset(n.lower() for n in i.names), i.not_before, i.not_after): i
        for i in inv.items.values()
    }
    rows = await session.execute(select(CT_MATCHES))
    for row in rows.mappings():
        names = [str(n) for n in (row["names"] or [])]
        nb, na = row["not_before"], row["not_after"]
        if nb is None or na is None:
            continue  # the monitor could not read the validity: nothing to schedule
        if row["cert_sha256"]:
            item = inv.get(str(row["cert_sha256"]), names, nb, na)
        else:
            twin = by_validity.get((frozenset(n.lower() for n in names), nb, na))
            item = twin or inv.get(f"tbs:{row['tbs_sha256']}", names, nb, na)
        item.sources.add("ct")
        item.issuer = item.issuer or str(row["issuer"] or "")
        item.ct_logs.add(str(row["log_url"] or ""))
        if row["finding"]:
            item.findings.add(str(row["finding"]))


def _supersede(inv: _Collector, created: dict[str, dt.datetime]) -> None:
    """Drop certyard certificates replaced by a later one for the same names, unless an
    endpoint still serves them (then the replacement was not deployed there)."""
    newest: dict[frozenset[str], tuple[dt.datetime, str]] = {}
    for key, when in created.items():
        item = inv.items[key]
        if item.revoked:
            continue
        names = frozenset(n.lower() for n in item.names)
        if names not in newest or newest[names][0] < when:
            newest[names] = (when, key)
    for key in list(created):
        item = inv.items[key]
        names = frozenset(n.lower() for n in item.names)
        holder = newest.get(names)
        if (
            holder is not None
            and holder[1] != key
            and item.exposure == 0
            and holder[0] > created[key]
        ):
            del inv.items[key]


async def load_inventory(
    sessions: async_sessionmaker[AsyncSession],
    now: dt.datetime,
    *,
    tag_rules: Sequence[TagRule] = (),
    forget_expired: dt.timedelta = dt.timedelta(days=30),
) -> list[InventoryItem]:
    inv = _Collector()
    async with sessions() as session:
        created = await _load_certyard(session, inv, now, forget_expired)
        await _load_scanned(session, inv)
        await _load_ct(session, inv)
    _supersede(inv, created)
    items = [
        i
        for i in inv.items.values()
        # Long-expired certificates nobody serves any more are history, not work.
        if i.exposure > 0 or i.not_after > now - forget_expired
    ]
    apply_tags(items, tag_rules)
    return items


def item_summary(item: InventoryItem) -> dict[str, Any]:
    return {
        "key": item.key,
        "names": item.names,
        "sources": sorted(item.sources),
        "not_after": item.not_after.isoformat(),
        "exposure": item.exposure,
        "endpoints": sorted(item.endpoints),
        "findings": sorted(item.findings),
        "tags": sorted(item.tags),
    }
