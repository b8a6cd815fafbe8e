"""The inventory: scans, endpoints, certificates, observations and findings in the database.

Written as results arrive (one transaction per probe), so an interrupted scan keeps what it saw.
Writes are serialised by a lock: one scan is one writer, and SQLite allows one writer anyway.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from typing import Any

from cryptography import x509
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scanner.findings import key_description, sha256_hex
from scanner.issued import IssuedLookup
from scanner.runner import Clock, EndpointReport, utc_now
from storage.models import (
    ScanEndpoint,
    ScanFinding,
    ScannedCertificate,
    ScanObservation,
    ScanRun,
)


class Inventory:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock = utc_now,
        issued: IssuedLookup | None = None,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.issued = issued
        self.scan_id: str | None = None
        self._lock = asyncio.Lock()

    async def start(self, parameters: dict[str, Any]) -> str:
        self.scan_id = "scan-" + secrets.token_urlsafe(12)
        async with self.sessions.begin() as session:
            session.add(
                ScanRun(
                    id=self.scan_id,
                    started_at=self.clock(),
                    status="running",
                    parameters=parameters,
                )
            )
        return self.scan_id

    async def resume(self, scan_id: str) -> str:
        """Continue the recorded scan ``scan_id`` (scanner/resume.py decides what remains)."""
        async with self.sessions.begin() as session:
            run = await session.get(ScanRun, scan_id)
            if run is None:
                raise LookupError(scan_id)
            run.status, run.finished_at = "running", None
        self.scan_id = scan_id
        return scan_id

    async def finish(self, status: str, summary: dict[str, Any]) -> None:
        assert self.scan_id is not None
        async with self.sessions.begin() as session:
            run = await session.get(ScanRun, self.scan_id)
            assert run is not None
            run.status, run.summary, run.finished_at = status, summary, self.clock()

    async def record(self, report: EndpointReport) -> None:
        assert self.scan_id is not None, "start() first"
        async with self._lock, self.sessions.begin() as session:
            now = self.clock()
            endpoint = await self._endpoint(session, report, now)
            hashes = [sha256_hex(der) for der in report.result.chain]
            stored = [
                await self._certificate(session, der, digest, now)
                for der, digest in zip(report.result.chain, hashes, strict=True)
            ]
            leaf = hashes[0] if hashes and stored[0] else None
            first_seen = now
            if leaf is not None:
                earlier = await session.scalar(
                    select(func.min(ScanObservation.first_seen)).where(
                        ScanObservation.endpoint_id == endpoint.id,
                        ScanObservation.cert_sha256 == leaf,
                    )
                )
                first_seen = earlier or now
            session.add(
                ScanObservation(
                    scan_id=self.scan_id,
                    endpoint_id=endpoint.id,
                    cert_sha256=leaf,
                    status=report.result.status.value,
                    chain=hashes,
                    host_keys=report.result.host_keys or None,
                    ocsp_stapling=report.result.ocsp_stapling,
                    tls_version=report.result.tls_version,
                    cipher=report.result.cipher,
                    error=report.result.error,
                    first_seen=first_seen,
                    last_seen=now,
                )
            )
            for finding in report.findings:
                session.add(
                    ScanFinding(
                        scan_id=self.scan_id,
                        endpoint_id=endpoint.id,
                        cert_sha256=finding.cert_sha256,
                        code=finding.code,
                        severity=finding.severity.value,
                        detail=finding.detail,
                    )
                )

    async def _endpoint(
        self, session: AsyncSession, report: EndpointReport, now: dt.datetime
    ) -> ScanEndpoint:
        job = report.job
        endpoint = await session.scalar(
            select(ScanEndpoint).where(
                ScanEndpoint.ip == job.ip,
                ScanEndpoint.port == job.port,
                ScanEndpoint.sni == (job.sni or ""),
            )
        )
        if endpoint is None:
            endpoint = ScanEndpoint(
                ip=job.ip,
                port=job.port,
                sni=job.sni or "",
                host=job.host,
                protocol=job.protocol,
                first_seen=now,
                last_seen=now,
            )
            session.add(endpoint)
            await session.flush()
        else:
            endpoint.last_seen, endpoint.host, endpoint.protocol = now, job.host, job.protocol
        return endpoint

    async def _certificate(
        self, session: AsyncSession, der: bytes, digest: str, now: dt.datetime
    ) -> bool:
        """Index the certificate (once); False when it does not parse."""
        if await session.get(ScannedCertificate, digest) is not None:
            return True
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            return False  # a "bad_certificate" finding says so; nothing to index
        kind, bits = key_description(cert)
        # Issue 5 §6: a certificate certyard issued is linked to its issuance record.
        record = await self.issued.find(der) if self.issued is not None else None
        session.add(
            ScannedCertificate(
                issued_certificate_id=record.certificate_id if record else None,
                sha256=digest,
                der=der,
                subject=cert.subject.rfc4514_string(),
                issuer=cert.issuer.rfc4514_string(),
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
                key_type=f"{kind}-{bits}",
                first_seen=now,
            )
        )
        await session.flush()
        return True
