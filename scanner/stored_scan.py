"""A finished (or interrupted) scan read back from the inventory, as the runner produced it.

Reports for an earlier scan (``certyard report --scan ID``) and diffs between two scans are built
from the database, not from a file the scan once wrote: the inventory is the record.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scanner import report_json
from scanner.findings import Finding
from scanner.jobs import ProbeJob, ProbeResult, Status
from scanner.runner import EndpointReport, ScanSummary
from scanner.spool import Spool
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

    def header(self) -> dict[str, Any]:
        """The report's "scan" object."""
        scan = report_json.header(
            self.summary,
            scan_id=self.scan_id,
            started=self.started,
            finished=self.finished or self.started,
            parameters=self.parameters,
        )
        scan["status"] = self.status
        return scan

    def document(self) -> dict[str, Any]:
        """The JSON report, the same shape ``certyard scan`` prints."""
        return {"scan": self.header(), "endpoints": list(self.summary.endpoints())}


_PAGE = 1000  # observations read per query: memory stays flat however large the scan


async def load_scan(sessions: async_sessionmaker[AsyncSession], scan_id: str) -> StoredScan:
    """The scan's record and its reports, read page by page into a spool (report order)."""
    spool = Spool()
    async with sessions() as session:
        run = await session.get(ScanRun, scan_id)
        if run is None:
            raise UnknownScan(scan_id)
        head = (run.id, run.status, run.started_at, run.finished_at, run.parameters)
        last_id = 0
        while True:
            rows = (
                await session.execute(
                    select(ScanObservation, ScanEndpoint)
                    .join(ScanEndpoint, ScanEndpoint.id == ScanObservation.endpoint_id)
                    .where(ScanObservation.scan_id == scan_id, ScanObservation.id > last_id)
                    .order_by(ScanObservation.id)
                    .limit(_PAGE)
                )
            ).all()
            if not rows:
                break
            last_id = rows[-1][0].id
            await _spool_page(session, scan_id, rows, spool)
            session.expunge_all()  # let the page's ORM objects go
    scan_id_, status, started, finished, parameters = head
    return StoredScan(
        scan_id=scan_id_,
        status=status,
        started=started,
        finished=finished,
        parameters=parameters,
        summary=ScanSummary(Counter(spool.by_status), Counter(spool.by_code), spool),
    )


async def _spool_page(
    session: AsyncSession,
    scan_id: str,
    rows: Sequence[Row[ScanObservation, ScanEndpoint]],
    spool: Spool,
) -> None:
    endpoint_ids = {endpoint.id for _, endpoint in rows}
    findings = (
        await session.scalars(
            select(ScanFinding)
            .where(ScanFinding.scan_id == scan_id, ScanFinding.endpoint_id.in_(endpoint_ids))
            .order_by(ScanFinding.id)
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
        # The spool sorts into the runner's order: by ip, port, then SNI (none first).
        spool.add(report_json.record(EndpointReport(job, result, endpoint_findings)))


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
