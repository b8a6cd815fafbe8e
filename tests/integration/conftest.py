"""Fixtures shared by the in-process ACME tests: a test DNS server (every name resolves to
127.0.0.1) and an http-01 responder on a loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.dnsserver import TestDNSServer
from tests.support.http01 import Responder


@pytest.fixture
def dns() -> Iterator[TestDNSServer]:
    server = TestDNSServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def responder() -> AsyncIterator[Responder]:
    r = Responder()
    await r.start()
    yield r
    await r.stop()
