"""The services one ACME application works with, passed in (never globals)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from acme_server.config import AcmeConfig
from acme_server.issuer import AcmeIssuer
from acme_server.nonces import NonceService
from acme_server.urls import Urls


@dataclass
class AcmeContext:
    config: AcmeConfig
    sessions: async_sessionmaker[AsyncSession]
    issuer: AcmeIssuer
    nonces: NonceService
    urls: Urls
    clock: Callable[[], dt.datetime]
    # Issuer certificates by id, for Link rel="up" downloads (PEM).
    issuer_pems: dict[str, str]
    default_issuer_id: str
    # Called after a challenge is queued, so this instance's workers look at once.
    wake_validation: Callable[[], None] = lambda: None


ACME_CONTEXT = web.AppKey("acme_context", AcmeContext)


def ctx(request: web.Request) -> AcmeContext:
    return request.app[ACME_CONTEXT]
