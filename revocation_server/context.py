"""What the revocation front end needs from the CA (step-ca style: each front end declares its
own small interface), and the typed application keys that carry it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from aiohttp import web

from ca.crl import PublishedCRL


class CRLSource(Protocol):
    """Satisfied by ``ca.crl.CRLService``."""

    @property
    def shards(self) -> int: ...

    async def current(self, issuer_id: str, shard: int = 0) -> PublishedCRL: ...


class OCSPSource(Protocol):
    """Satisfied by ``ca.ocsp.OCSPResponder``: never raises for a bad request, it answers
    with an OCSP error status instead."""

    async def respond(self, request_der: bytes) -> bytes: ...


CRLS = web.AppKey[CRLSource]("crls")
OCSP = web.AppKey[OCSPSource]("ocsp")
CLOCK = web.AppKey[Callable[[], datetime]]("clock")
