"""Names the inventory already knows for an address: every SNI name an earlier scan used
there (issue 5 §3: a handshake per name known for that IP, from the target list, DNS, the
inventory and CT matches). Names from CT matches (the ``ct_names_seen`` table the CT monitor
fills) are added for the addresses they resolve to.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import inspect, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scanner.targets import Endpoint, TargetError, resolve
from storage.models import ScanEndpoint

CHUNK = 500  # bound parameters per IN list (SQLite's limit is far above)
MAX_CT_NAMES = 10_000  # names resolved per scan, at most
RESOLVE_CONCURRENCY = 32


async def _inventory_names(
    sessions: async_sessionmaker[AsyncSession], ips: list[str]
) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    async with sessions() as session:
        for start in range(0, len(ips), CHUNK):
            chunk = ips[start : start + CHUNK]
            rows = await session.execute(
                select(ScanEndpoint.ip, ScanEndpoint.sni)
                .where(ScanEndpoint.ip.in_(chunk), ScanEndpoint.sni != "")
                .distinct()
            )
            for ip, sni in rows:
                found[ip].add(sni)
    return found


async def _ct_names(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as session:
        connection = await session.connection()
        has_table = await connection.run_sync(lambda sync: inspect(sync).has_table("ct_names_seen"))
        if not has_table:
            return []
        rows = await session.execute(
            text("SELECT name FROM ct_names_seen ORDER BY last_seen DESC LIMIT :n"),
            {"n": MAX_CT_NAMES},
        )
        return [str(name) for (name,) in rows if not str(name).startswith("*")]


async def _ct_names_by_ip(
    sessions: async_sessionmaker[AsyncSession], wanted: set[str]
) -> dict[str, set[str]]:
    names = await _ct_names(sessions)
    found: dict[str, set[str]] = defaultdict(set)
    semaphore = asyncio.Semaphore(RESOLVE_CONCURRENCY)

    async def one(name: str) -> None:
        async with semaphore:
            try:
                addresses = await asyncio.wait_for(resolve(name), 5)
            except (TargetError, TimeoutError):
                return
        for address in addresses:
            if str(address) in wanted:
                found[str(address)].add(name)

    await asyncio.gather(*(one(name) for name in names))
    return found


async def add_known_names(
    sessions: async_sessionmaker[AsyncSession], endpoints: Iterable[Endpoint]
) -> None:
    """Add inventory and CT names to TLS endpoints' names, in place (SSH has no SNI)."""
    tls = [e for e in endpoints if e.protocol != "ssh"]
    ips = sorted({str(e.ip) for e in tls})
    if not ips:
        return
    known = await _inventory_names(sessions, ips)
    for ip, names in (await _ct_names_by_ip(sessions, set(ips))).items():
        known[ip] |= names
    for endpoint in tls:
        for name in sorted(known.get(str(endpoint.ip), ())):
            if name not in endpoint.names:
                endpoint.names.append(name)
