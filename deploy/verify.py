"""Verification: scan the endpoint until it serves the expected certificate, or a deadline.

Uses the scanner's own TLS probe (scanner/tls_probe.py): the same handshake a discovery scan
makes, so "deployed" means what the next scan will see. A match is by the SHA-256 of the leaf's
DER, the identity the inventory uses.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import time
from dataclasses import dataclass

from deploy.targets import Endpoint, format_endpoint
from scanner.jobs import ProbeJob, ProbeResult, Status
from scanner.tls_probe import client_context, probe


@dataclass(frozen=True)
class Served:
    ok: bool
    sha256: str | None  # the leaf served at the last probe (None: no handshake)
    detail: str
    result: ProbeResult | None = None  # the last probe, as the scanner records it


async def _address(host: str) -> str:
    """The address to connect to (the inventory keys endpoints by IP); the name itself when
    it does not resolve (the probe then reports the failure)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None)
        except OSError:
            return host
        return str(infos[0][4][0]) if infos else host
    return host


async def served_leaf(endpoint: Endpoint, *, seconds: float) -> Served:
    """One probe: the SHA-256 of the leaf the endpoint serves now."""
    job = ProbeJob(
        ip=await _address(endpoint.host),
        port=endpoint.port,
        protocol="tls",
        sni=endpoint.sni,
        host=endpoint.host,
    )
    result = await probe(job, client_context(), seconds=seconds)
    where = format_endpoint(endpoint)
    if result.status is not Status.OK or not result.chain:
        return Served(False, None, f"{where}: {result.error or result.status}", result)
    digest = hashlib.sha256(result.chain[0]).hexdigest()
    return Served(True, digest, f"{where} serves {digest[:16]}…", result)


async def wait_for(
    endpoint: Endpoint,
    expected_sha256: str,
    *,
    deadline_seconds: float,
    interval: float,
    probe_seconds: float,
    what: str = "the new certificate",
) -> Served:
    """Probe until the endpoint serves ``expected_sha256``; the last observation otherwise."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        seen = await served_leaf(endpoint, seconds=min(probe_seconds, deadline_seconds))
        if seen.sha256 == expected_sha256:
            return Served(
                True, seen.sha256, f"{format_endpoint(endpoint)} serves {what}", seen.result
            )
        if time.monotonic() + interval > deadline:
            now = f"still serves {seen.sha256[:16]}…" if seen.sha256 else seen.detail
            return Served(
                False,
                seen.sha256,
                f"not serving {what} after {deadline_seconds:g} s ({now})",
                seen.result,
            )
        await asyncio.sleep(interval)
