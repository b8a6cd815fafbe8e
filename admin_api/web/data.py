"""What the dashboard and a certificate's page show beyond what an API route returns: counts,
where a certificate is deployed, its history. Every query is limited to what the visitor's
namespace may see (admin_api/namespaces.py), as the API's lists are."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import Select, func, or_, select
from sqlalchemy.exc import SQLAlchemyError

from admin_api import namespaces
from admin_api.auth import Principal
from admin_api.context import AdminServices
from storage.models import (
    Certificate,
    ScanEndpoint,
    ScanFinding,
    ScannedCertificate,
    ScanObservation,
)
from storage.models_audit import AuditEntryRow
from storage.models_ct import CTMatch
from storage.models_deploy import DeployTarget

SEVERITIES = ("high", "medium", "low")
CT_FINDING = "ct_unknown_issuance"
EXPIRING_DAYS = 30


async def certificate_counts(
    services: AdminServices, principal: Principal, now: dt.datetime
) -> dict[str, int]:
    """Issued certificates by state as a person reads it: valid, expired, revoked, signing."""
    expired = (Certificate.status == "valid") & (Certificate.not_after <= now)
    grouped = select(Certificate.state, Certificate.status, expired, func.count()).group_by(
        Certificate.state, Certificate.status, expired
    )
    # restrict() takes any SELECT; the cast only widens the typed column tuple for mypy.
    stmt = namespaces.restrict(cast("Select[Any]", grouped), principal, Certificate.requester)
    counts = {"valid": 0, "expiring": 0, "expired": 0, "revoked": 0, "signing": 0}
    async with services.sessions() as session:
        for state, status, is_expired, count in (await session.execute(stmt)).all():
            if state == "signing":
                counts["signing"] += count
            elif status == "revoked":
                counts["revoked"] += count
            elif is_expired:
                counts["expired"] += count
            else:
                counts["valid"] += count
    # "Expiring": valid, unexpired, notAfter within EXPIRING_DAYS (also counted as valid).
    soon = select(func.count()).where(
        Certificate.status == "valid",
        Certificate.state == "issued",
        Certificate.not_after > now,
        Certificate.not_after <= now + dt.timedelta(days=EXPIRING_DAYS),
    )
    soon = namespaces.restrict(cast("Select[Any]", soon), principal, Certificate.requester)
    async with services.sessions() as session:
        counts["expiring"] = int((await session.execute(soon)).scalar_one())
    return counts


async def finding_counts(services: AdminServices, scan_id: str) -> dict[str, int]:
    stmt = (
        select(ScanFinding.severity, func.count())
        .where(ScanFinding.scan_id == scan_id)
        .group_by(ScanFinding.severity)
    )
    async with services.sessions() as session:
        found = {sev: count for sev, count in (await session.execute(stmt)).all()}
    return {s: int(found.get(s, 0)) for s in SEVERITIES}


@dataclass(frozen=True)
class CtAlert:
    names: list[str]
    issuer: str
    not_after: dt.datetime | None
    created_at: dt.datetime
    log_url: str


async def ct_alerts(services: AdminServices, limit: int = 10) -> tuple[int, list[CtAlert]]:
    """Certificates for watched names seen in CT logs that certyard did not issue."""
    where = CTMatch.finding == CT_FINDING
    async with services.sessions() as session:
        total = (await session.execute(select(func.count()).where(where))).scalar_one()
        rows = (
            await session.execute(
                select(CTMatch).where(where).order_by(CTMatch.created_at.desc()).limit(limit)
            )
        ).scalars()
        alerts = [
            CtAlert([str(n) for n in r.names], r.issuer, r.not_after, r.created_at, r.log_url)
            for r in rows
        ]
    return int(total), alerts


@dataclass(frozen=True)
class ChainEntry:
    subject: str
    issuer: str
    serial: str
    not_after: dt.datetime
    sha256: str


def parse_chain(chain_pem: str | None) -> list[ChainEntry]:
    if not chain_pem:
        return []
    try:
        certs = x509.load_pem_x509_certificates(chain_pem.encode())
    except ValueError:
        return []
    return [
        ChainEntry(
            subject=c.subject.rfc4514_string(),
            issuer=c.issuer.rfc4514_string(),
            serial=format(c.serial_number, "X"),
            not_after=c.not_valid_after_utc,
            sha256=hashlib.sha256(c.public_bytes(Encoding.DER)).hexdigest(),
        )
        for c in certs
    ]


@dataclass(frozen=True)
class Served:
    """A scanned endpoint that served the certificate."""

    host: str | None
    ip: str
    port: int
    sni: str
    last_seen: dt.datetime


@dataclass(frozen=True)
class Deployed:
    name: str
    host: str
    port: int
    cert_path: str
    last_status: str | None
    last_run_at: dt.datetime | None


async def deployments(
    services: AdminServices, row: Certificate
) -> tuple[list[Served], list[Deployed]]:
    """Where the certificate is: endpoints a scan saw serving it, and SSH deploy targets whose
    last deployment put it in place."""
    digest = hashlib.sha256(row.der).hexdigest() if row.der else None
    seen = or_(
        ScannedCertificate.issued_certificate_id == row.id,
        ScannedCertificate.sha256 == (digest or ""),
    )
    served_stmt = (
        select(ScanEndpoint, func.max(ScanObservation.last_seen))
        .join(ScanObservation, ScanObservation.endpoint_id == ScanEndpoint.id)
        .join(ScannedCertificate, ScannedCertificate.sha256 == ScanObservation.cert_sha256)
        .where(seen)
        .group_by(ScanEndpoint.id)
        .order_by(ScanEndpoint.ip, ScanEndpoint.port)
    )
    deployed_stmt = (
        select(DeployTarget)
        .where(
            or_(
                DeployTarget.certificate_id == row.id,
                DeployTarget.certificate_sha256 == (digest or ""),
            )
        )
        .order_by(DeployTarget.name)
    )
    async with services.sessions() as session:
        served = [
            Served(e.host, e.ip, e.port, e.sni, last)
            for e, last in (await session.execute(served_stmt)).all()
        ]
        deployed = [
            Deployed(t.name, t.host, t.port, t.cert_path, t.last_status, t.last_run_at)
            for t in (await session.execute(deployed_stmt)).scalars()
        ]
    return served, deployed


@dataclass(frozen=True)
class Event:
    time: dt.datetime
    what: str
    who: str
    outcome: str


REASON_NAMES = {
    0: "unspecified",
    1: "keyCompromise",
    2: "cACompromise",
    3: "affiliationChanged",
    4: "superseded",
    5: "cessationOfOperation",
    6: "certificateHold",
    8: "removeFromCRL",
    9: "privilegeWithdrawn",
    10: "aACompromise",
}


async def history(services: AdminServices, row: Certificate, with_audit: bool) -> list[Event]:
    """Issuance and revocation from the certificate's row, and (for a role that may read the
    audit trail) the audit entries naming the certificate, oldest first."""
    events = [Event(row.created_at, f"issued ({row.profile})", row.requester, row.state)]
    if row.revoked_at is not None:
        reason = REASON_NAMES.get(row.revocation_reason or 0, str(row.revocation_reason))
        events.append(Event(row.revoked_at, f"revoked ({reason})", "", "revoked"))
    if with_audit:
        stmt = (
            select(AuditEntryRow)
            .where(
                or_(
                    AuditEntryRow.target.contains(row.id, autoescape=True),
                    AuditEntryRow.target.contains(row.serial, autoescape=True),
                )
            )
            .order_by(AuditEntryRow.seq)
            .limit(200)
        )
        try:
            async with services.sessions() as session:
                for entry in (await session.execute(stmt)).scalars():
                    events.append(Event(entry.time, entry.action, entry.actor, entry.outcome))
        except SQLAlchemyError:
            pass  # a database without the audit trail's tables: the row's own history only
    return sorted(events, key=lambda e: e.time)
