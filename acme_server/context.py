"""The services one ACME application works with, passed in (never globals)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from acme_server.config import AcmeConfig
from acme_server.issuer import AcmeIssuer
from acme_server.nonces import NonceService
from acme_server.ratelimits import RateLimiter
from acme_server.urls import Urls


@dataclass(frozen=True)
class AlternateChainView:
    """An alternate chain of an issuer (RFC 8555 §7.4.2): ``pem`` follows the leaf; ``id``
    names it in ``issuer_pems`` (its Link rel="up")."""

    id: str
    pem: str


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
    # ACME rate limits (None: unlimited, e.g. in tests that do not exercise them).
    rate_limits: RateLimiter | None = None
    # Alternate chains by issuer id, offered with Link rel="alternate" on downloads.
    alternate_chains: dict[str, tuple[AlternateChainView, ...]] = field(default_factory=dict)


ACME_CONTEXT = web.AppKey("acme_context", AcmeContext)


def ctx(request: web.Request) -> AcmeContext:
    return request.app[ACME_CONTEXT]
