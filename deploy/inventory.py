"""The verification probe goes into the scanner's inventory, as a scan of one endpoint.

The renewal queue judges exposure by the latest observation of each endpoint: without this
record the endpoint would still show the replaced certificate until the next discovery scan,
and the queue would take it for one still due. Findings are judged as a scan judges them
(scanner/findings.py), with certyard's root as an extra trust anchor.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scanner.findings import TrustStore, evaluate, load_pem_bundle
from scanner.inventory import Inventory
from scanner.jobs import ProbeResult, Status
from scanner.runner import EndpointReport


async def record_probe(
    sessions: async_sessionmaker[AsyncSession],
    result: ProbeResult,
    *,
    root_pem: str,
    parameters: dict[str, str],
    clock: Callable[[], dt.datetime],
) -> str | None:
    """Store the probe as a one-endpoint scan; its id, or None when it could not be written
    (the deployment's outcome does not depend on it)."""
    findings = []
    if result.status is Status.OK:
        store = TrustStore.load()
        store.add(load_pem_bundle(root_pem.encode()), roots_only=True)
        findings = evaluate(result.chain, result.job.sni, store, clock())
    inventory = Inventory(sessions, clock)
    try:
        scan_id = await inventory.start({"source": "deploy", **parameters})
        await inventory.record(EndpointReport(result.job, result, findings))
        await inventory.finish("done", {"by_status": {result.status.value: 1}})
    except SQLAlchemyError:
        return None
    return scan_id
