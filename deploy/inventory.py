"""The verification probe goes into the scanner's inventory, as a scan of one endpoint.

The renewal queue judges exposure by the latest observation of each endpoint: without this
record the endpoint would still show the replaced certificate until the next discovery scan,
and the queue would take it for one still due. Findings are judged as a scan judges them
(scanner/findings.py), with certyard's root as an extra trust anchor.

A discovery scan records one endpoint per SNI it sent (scanner/inventory.py keys endpoints by
ip, port and SNI: one without SNI, one per known name). The deployer probes each variant the
inventory knows at the verify address and records them all, or the variant the verification
did not use would keep showing the replaced certificate and the queue would renew it again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scanner.findings import TrustStore, evaluate, load_pem_bundle
from scanner.inventory import Inventory
from scanner.jobs import ProbeJob, ProbeResult, Status
from scanner.runner import EndpointReport
from storage.models import ScanEndpoint


async def other_snis(
    sessions: async_sessionmaker[AsyncSession], job: ProbeJob
) -> list[tuple[str | None, str | None]]:
    """The other TLS variants of ``job``'s ip:port the inventory holds, as (SNI, host) pairs
    (SNI None: probed without SNI; host: the name the operator knows the endpoint by, which
    the record keeps, since policies match endpoints by it)."""
    try:
        async with sessions() as session:
            rows = await session.execute(
                select(ScanEndpoint.sni, ScanEndpoint.host)
                .where(
                    ScanEndpoint.ip == job.ip,
                    ScanEndpoint.port == job.port,
                    ScanEndpoint.protocol == "tls",
                )
                .order_by(ScanEndpoint.sni)
            )
            return [(sni or None, host) for sni, host in rows.all() if sni != (job.sni or "")]
    except SQLAlchemyError:
        return []


async def record_probe(
    sessions: async_sessionmaker[AsyncSession],
    results: Sequence[ProbeResult],
    *,
    root_pem: str,
    parameters: dict[str, str],
    clock: Callable[[], dt.datetime],
) -> str | None:
    """Store the probes (of one address) as one scan; its id, or None when it could not be
    written (the deployment's outcome does not depend on it)."""
    store = TrustStore.load()
    store.add(load_pem_bundle(root_pem.encode()), roots_only=True)
    inventory = Inventory(sessions, clock)
    by_status: dict[str, int] = {}
    try:
        scan_id = await inventory.start({"source": "deploy", **parameters})
        for result in results:
            findings = []
            if result.status is Status.OK:
                findings = evaluate(result.chain, result.job.sni, store, clock())
            await inventory.record(EndpointReport(result.job, result, findings))
            by_status[result.status.value] = by_status.get(result.status.value, 0) + 1
        await inventory.finish("done", {"by_status": by_status})
    except SQLAlchemyError:
        return None
    return scan_id
