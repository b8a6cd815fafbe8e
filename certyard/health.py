"""Liveness and readiness for load balancers and operators.

``/healthz`` answers 200 while the process serves at all; ``/readyz`` answers 200 only when the
database answers and the CA's key backend can sign (a lost HSM token shows here as 503 and comes
back by itself when the token does).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ca.keys import KeyBackend

CHECK_TIMEOUT = 5.0


@dataclass
class HealthChecks:
    engine: AsyncEngine
    backend: KeyBackend


HEALTH_CHECKS = web.AppKey("health_checks", HealthChecks)


async def _database(checks: HealthChecks) -> tuple[bool, str]:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            async with checks.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        return True, "ok"
    except Exception as exc:  # any failure means "not ready"; the detail names the kind only
        return False, f"database unreachable ({type(exc).__name__})"


async def _keys(checks: HealthChecks) -> tuple[bool, str]:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            health = await checks.backend.health()
        return health.ok, health.detail
    except TimeoutError:
        return False, "key backend did not answer in time"


async def readyz(request: web.Request) -> web.Response:
    checks = request.app[HEALTH_CHECKS]
    started = time.monotonic()
    (db_ok, db_detail), (keys_ok, keys_detail) = await asyncio.gather(
        _database(checks), _keys(checks)
    )
    ready = db_ok and keys_ok
    body = {
        "status": "ready" if ready else "unavailable",
        "checks": {
            "database": {"ok": db_ok, "detail": db_detail},
            "ca_keys": {"ok": keys_ok, "detail": keys_detail, "backend": checks.backend.name},
        },
        "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
    }
    return web.json_response(body, status=200 if ready else 503)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


def add_health_routes(app: web.Application, checks: HealthChecks) -> None:
    app[HEALTH_CHECKS] = checks
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
