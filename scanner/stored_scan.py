"""A finished (or interrupted) scan read back from the inventory, as the runner produced it.

Reports for an earlier scan (``certyard report --scan ID``) and diffs between two scans are built
from the database, not from a file the scan once wrote: the inventory is the record.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scanner import report_json
from scanner.findings import Finding
from scanner.jobs import ProbeJob, ProbeResult, Status
from scanner.runner import EndpointReport, ScanSummary
from storage.models import (
    ScanEndpoint,
    ScanFinding,
    ScannedCertificate,
    ScanObservation,
    ScanRun,
)


class UnknownScan(LookupError):
    pass


@dataclass
class StoredScan:
    scan_id: str
    status: str
    started: dt.datetime
    finished: dt.datetime | None
    parameters: dict[str, Any]
    summary: ScanSummary

    def document(self) -> dict[str, Any]:
        """The JSON report, the same shape ``certyard scan`` prints."""
        document = report_json.build(
            self.summary,
            scan_id=self.scan_id,
            started=self.started,
            finished=self.finished or self.started,
            parameters=self.parameters,
        )
        document["scan"]["status"] = self.status
        return document


async def load_scan(sessions: async_sessionmaker[AsyncSession], scan_id: str) -> StoredScan:
    async with sessions() as session:
        run = await session.get(ScanRun, scan_id)
        if run is None:
            raise UnknownScan(scan_id)
        rows = (
            await session.execute(
                select(ScanObservation, ScanEndpoint)
                .join(ScanEndpoint, ScanEndpoint.id == ScanObservation.endpoint_id)
                .where(ScanObservation.scan_id == scan_id)
                .order_by(ScanObservation.id)
            )
        ).all()
        findings = (
            await session.scalars(
                select(ScanFinding).where(ScanFinding.scan_id == scan_id).order_by(ScanFinding.id)
            )
        ).all()
        wanted = {digest for obs, _ in rows for digest in obs.chain}
        ders: dict[str, bytes] = {}
        if wanted:
            for cert in await session.scalars(
                select(ScannedCertificate).where(ScannedCertificate.sha256.in_(wanted))
            ):
                ders[cert.sha256] = cert.der
    by_endpoint: dict[int, list[Finding]] = {}
    for row in findings:
        by_endpoint.setdefault(row.endpoint_id, []).append(
            Finding(row.code, row.detail, row.cert_sha256)
        )
    reports: list[EndpointReport] = []
    by_status: Counter[str] = Counter()
    by_code: Counter[str] = Counter()
    for obs, endpoint in rows:
        job = ProbeJob(
            ip=endpoint.ip,
            port=endpoint.port,
            protocol=endpoint.protocol,
            sni=endpoint.sni or None,
            host=endpoint.host,
        )
        result = ProbeResult(
            job=job,
            status=Status(obs.status),
            chain=[ders[d] for d in obs.chain if d in ders],
            tls_version=obs.tls_version,
            cipher=obs.cipher,
            error=obs.error,
            host_keys=list(obs.host_keys or []),
            ocsp_stapling=obs.ocsp_stapling,
        )
        endpoint_findings = by_endpoint.get(endpoint.id, [])
        reports.append(EndpointReport(job, result, endpoint_findings))
        by_status[result.status.value] += 1
        by_code.update(f.code for f in endpoint_findings)
    # The runner's order: by ip, port, then SNI (none first).
    reports.sort(key=lambda r: (r.job.ip, r.job.port, r.job.sni or ""))
    return StoredScan(
        scan_id=run.id,
        status=run.status,
        started=run.started_at,
        finished=run.finished_at,
        parameters=run.parameters,
        summary=ScanSummary(reports, by_status, by_code),
    )


async def previous_scan_id(sessions: async_sessionmaker[AsyncSession], scan_id: str) -> str | None:
    """The scan that started last before ``scan_id``, or None (what its report diffs against)."""
    async with sessions() as session:
        run = await session.get(ScanRun, scan_id)
        if run is None:
            raise UnknownScan(scan_id)
        return await session.scalar(
            select(ScanRun.id)
            .where(ScanRun.started_at < run.started_at)
            .order_by(ScanRun.started_at.desc())
            .limit(1)
        )
