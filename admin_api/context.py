"""What the admin API is handed (plain objects, no globals) and what a handler receives."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from admin_api.auth import Authenticator, Principal
from admin_api.config import AdminSettings
from admin_api.oidc import OidcVerifier
from admin_api.scan_jobs import ScanJobs
from audit.recorder import AuditRecorder, NullRecorder
from ca.keys import KeyBackend

if TYPE_CHECKING:  # only for the annotation: certyard.settings imports every package's config
    from certyard.settings import Settings


class Revoker(Protocol):
    """The one thing the admin API needs from the CA to revoke (ca.authority satisfies it;
    ca/issuance.py IssuanceService.revoke does the work and refuses bad reason codes)."""

    async def revoke(self, cert_id: str, reason: int) -> Any: ...


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class AdminServices:
    settings: AdminSettings
    sessions: async_sessionmaker[AsyncSession]
    revoker: Revoker | None = None
    key_backend: KeyBackend | None = None
    recorder: AuditRecorder = field(default_factory=NullRecorder)
    clock: Callable[[], dt.datetime] = _utc_now
    est_labels: tuple[str, ...] = ()
    oidc: OidcVerifier | None = None
    # Extra trust anchors for scans started through the API (certyard's own root.pem).
    scan_anchors: tuple[Path, ...] = ()
    scans: ScanJobs = field(default_factory=ScanJobs)
    # The whole configuration, for resources that act like a CLI command (a renewal pass
    # needs [renewal], [notify], [deploy]); None: a pass answers 501 and the queue is ranked
    # under the default [renewal] settings (admin_api/resources/renewal.py).
    app_settings: Settings | None = None

    def __post_init__(self) -> None:
        if self.oidc is None and self.settings.oidc.issuer:
            self.oidc = OidcVerifier(self.settings.oidc)
        # Through self.clock at each call: a test (or a caller) may swap the clock later.
        self.authenticator = Authenticator(self.sessions, self.oidc, lambda: self.clock())


SERVICES = web.AppKey("admin_services", AdminServices)

Q = TypeVar("Q")
B = TypeVar("B")


@dataclass
class Call(Generic[Q, B]):
    """One authenticated, authorized request with its parsed query and body."""

    request: web.Request
    services: AdminServices
    principal: Principal
    path: dict[str, str]
    query: Q
    body: B
    # Added to the audit entry of a state-changing request.
    audit: dict[str, Any] = field(default_factory=dict)

    @property
    def now(self) -> dt.datetime:
        return self.services.clock()
