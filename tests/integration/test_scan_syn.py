"""``--syn`` (issue 5 §2): the raw SYN pre-scan finds the same open ports as TCP connect on the
loopback fleet, so the scan reports the fleet exactly as a connect scan does. Needs root (raw
sockets); under CI=true, not being able to open one is a failure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from scanner.jobs import Status
from scanner.runner import ScanOptions
from scanner.scan import ScanRequest, scan
from scanner.syn import SynScanner, can_syn_scan
from tests.integration.test_scan_fleet import TIMEOUT, Fleet, build_fleet, observed
from tests.support.tools import missing


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    if not can_syn_scan():
        missing("--syn needs raw sockets (run the suite as root)")
    built = await build_fleet(tmp_path)
    try:
        yield built
    finally:
        built.close()


async def test_syn_prescan_agrees_with_tcp_connect(fleet: Fleet) -> None:
    assert fleet.trust is not None
    request = ScanRequest(
        targets=fleet.targets,
        trust=[fleet.trust],
        system_trust=None,
        options=ScanOptions(timeout=TIMEOUT, retries=0, concurrency=16),
        seed=9,
        syn=True,
        syn_rate=2000,
    )
    outcome = await scan(request)
    assert observed(outcome.document["endpoints"]) == fleet.expected

    # The pre-scan on its own: open exactly where something listens, RST where nothing does.
    ports = {(ip, port) for ip, port, _ in fleet.expected}
    states = await SynScanner(rate=2000, timeout=TIMEOUT, retries=1).scan(ports)
    refused = {(ip, port) for (ip, port, _), (status, _) in fleet.expected.items()
               if status == "refused"}  # fmt: skip
    assert {k for k, v in states.items() if v is Status.REFUSED} == refused
    assert {k for k, v in states.items() if v is Status.OK} == ports - refused
