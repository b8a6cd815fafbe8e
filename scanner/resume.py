"""Resuming an interrupted scan (``certyard scan --resume ID``, issue 5 §6).

The inventory is written one probe at a time, so after a crash it holds, for each endpoint
(ip:port), either nothing, everything, or a part. An endpoint is finished when its first
handshake (without SNI) is recorded and, if that reached TLS, one handshake per known name too;
those are skipped. A partly recorded endpoint has its rows of this scan deleted and is probed
again, so the resumed scan ends with exactly the rows an uninterrupted one would have written.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scanner.jobs import Status
from scanner.targets import Endpoint
from storage.models import ScanEndpoint, ScanFinding, ScanObservation

_TRANSPORT_FAILURES = {Status.REFUSED.value, Status.TIMEOUT.value, Status.NO_TLS.value}


async def remaining_endpoints(
    sessions: async_sessionmaker[AsyncSession], scan_id: str, endpoints: Sequence[Endpoint]
) -> list[Endpoint]:
    """The endpoints still to probe; partial ones are cleared (in one transaction)."""
    async with sessions.begin() as session:
        rows = (
            await session.execute(
                select(ScanEndpoint.id, ScanEndpoint.ip, ScanEndpoint.port, ScanEndpoint.sni,
                       ScanObservation.status)
                .join(ScanObservation, ScanObservation.endpoint_id == ScanEndpoint.id)
                .where(ScanObservation.scan_id == scan_id)
            )
        ).all()  # fmt: skip
        seen: dict[tuple[str, int], dict[str, str]] = {}
        endpoint_ids: dict[tuple[str, int], list[int]] = {}
        for endpoint_id, ip, port, sni, status in rows:
            key = (str(ipaddress.ip_address(ip)), int(port))
            seen.setdefault(key, {})[sni] = status
            endpoint_ids.setdefault(key, []).append(endpoint_id)
        remaining: list[Endpoint] = []
        partial_ids: list[int] = []
        for endpoint in endpoints:
            recorded = seen.get(endpoint.key)
            if recorded is None:
                remaining.append(endpoint)
                continue
            base = recorded.get("")
            finished = base is not None and (
                base in _TRANSPORT_FAILURES or all(name in recorded for name in endpoint.names)
            )
            if not finished:
                remaining.append(endpoint)
                partial_ids += endpoint_ids[endpoint.key]
        if partial_ids:
            await session.execute(
                delete(ScanFinding).where(
                    ScanFinding.scan_id == scan_id, ScanFinding.endpoint_id.in_(partial_ids)
                )
            )
            await session.execute(
                delete(ScanObservation).where(
                    ScanObservation.scan_id == scan_id,
                    ScanObservation.endpoint_id.in_(partial_ids),
                )
            )
    return remaining
