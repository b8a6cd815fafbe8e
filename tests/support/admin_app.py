"""The admin listener in process for tests: a software-key CA over SQLite (or the db_url given),
the real admin app (certyard.server.build_admin_app) on a loopback port, a recording audit
recorder and a clock the test can move."""

from __future__ import annotations

import datetime as dt
import json as json_module
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from admin_api import tokens
from admin_api.context import SERVICES, AdminServices
from audit.errors import AuditError
from ca.ceremony import default_ceremony
from ca.issuance import IssuedCertificate
from certyard.health import HealthChecks
from certyard.server import build_admin_app
from certyard.settings import load_settings
from certyard.wiring import Services, build_services, ca_config
from storage.models_admin import NamespaceBinding
from tests.support.server import free_port


@dataclass
class AuditEvent:
    actor: str
    action: str
    target: str
    outcome: str
    details: dict[str, Any] | None


@dataclass
class RecordingRecorder:
    """An AuditRecorder (audit/recorder.py) that keeps what it is given, for assertions."""

    events: list[AuditEvent] = field(default_factory=list)
    # Set by a test: every write fails as the trail's would with its database gone (a fault
    # of the recorder the admin API is handed, simulated here on purpose).
    failing: bool = False

    async def record(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        outcome: str = "success",
        details: dict[str, Any] | None = None,
    ) -> None:
        if self.failing:
            raise AuditError("the audit trail cannot be written")
        self.events.append(AuditEvent(actor, action, target, outcome, details))

    def outcomes(self) -> list[AuditEvent]:
        """The entries other than the "requested" one written before each change."""
        return [e for e in self.events if e.outcome != "requested"]


class Clock:
    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset


@dataclass
class AdminHarness:
    services: Services
    admin: AdminServices
    url: str
    recorder: RecordingRecorder
    clock: Clock
    http: aiohttp.ClientSession

    async def token(
        self,
        role: str,
        namespace: str | None = None,
        scopes: tuple[str, ...] = (),
        lifetime: dt.timedelta = dt.timedelta(days=1),
    ) -> str:
        new = await tokens.create(
            self.services.sessions,
            role=role,
            namespace=namespace,
            scopes=scopes,
            lifetime=lifetime,
            max_lifetime=dt.timedelta(days=3650),
            name=f"test-{role}",
            created_by="test",
            now=self.clock(),
        )
        return new.value

    async def issue(self, name: str, requester: str = "cli") -> IssuedCertificate:
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .sign(key, hashes.SHA256())
        )
        return await self.services.issuance.issue(
            csr, profile="tls-server", dns_names=[name], requester=requester
        )

    async def bind(self, subject: str, namespace: str) -> None:
        async with self.services.sessions.begin() as session:
            session.add(
                NamespaceBinding(subject=subject, namespace=namespace, created_at=self.clock())
            )

    async def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        async with self.http.request(
            method,
            self.url + path,
            json=json,
            params=params,
            headers=all_headers,
            data=data,
        ) as response:
            raw = await response.read()
            body: Any = raw
            if response.content_type in ("application/json", "application/problem+json"):
                body = json_module.loads(raw) if raw else None
            return response.status, body, response


@asynccontextmanager
async def admin_harness(
    tmp_path: Path, *, db_url: str | None = None, admin: dict[str, Any] | None = None
) -> AsyncIterator[AdminHarness]:
    settings = load_settings(
        server={"data_dir": tmp_path / "data", "listen": f"127.0.0.1:{free_port()}"},
        database={"url": db_url or f"sqlite+aiosqlite:///{tmp_path}/certyard.db"},
        ca={"backend": "software", "lint": False},
        est={"labels": {"default": {"profile": "device"}, "meters": {"profile": "device"}}},
        admin=admin or {},
    )
    # One ECDSA chain (no RSA intermediate): the API does not care, and RSA keys are slow to make.
    services = await build_services(
        settings, ceremony=default_ceremony(ca_config(settings), chains=("ecdsa",))
    )
    recorder = RecordingRecorder()
    clock = Clock()
    app = build_admin_app(services, HealthChecks(services.engine, services.backend), recorder)
    admin_services = app[SERVICES]
    admin_services.clock = clock
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    http = aiohttp.ClientSession()
    try:
        yield AdminHarness(
            services, admin_services, f"http://127.0.0.1:{port}", recorder, clock, http
        )
    finally:
        await http.close()
        await runner.cleanup()
        await services.close()
