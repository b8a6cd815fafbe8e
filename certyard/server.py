"""``certyard serve``: one HTTPS listener for ACME, with background validation workers, and the
admin listener (``admin.listen``: the admin API, /metrics, /healthz, /readyz; docs/admin-api.md).

The listener's certificate is issued by certyard's own CA at every start, for server.hostnames.
SIGTERM and SIGINT stop accepting connections and let requests in flight finish (up to
server.shutdown_grace_seconds) before the process exits.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import secrets
import signal
import ssl
from pathlib import Path

import structlog
from aiohttp import web
from cryptography.hazmat.primitives import serialization

from acme_server.app import create_app
from acme_server.context import AcmeContext, AlternateChainView
from acme_server.nonces import NonceService
from acme_server.ratelimits import RateLimiter
from acme_server.urls import PREFIX, Urls
from acme_server.validation_worker import ValidationWorker
from admin_api.app import create_app as create_admin_app
from admin_api.context import AdminServices
from audit.recorder import AuditRecorder, NullRecorder
from audit.trail import AuditTrail
from certyard.health import HealthChecks, add_health_routes
from certyard.jobs import build_registry
from certyard.metrics import metrics_handler
from certyard.metrics_db import start_db_gauges
from certyard.metrics_http import instrument
from certyard.request_ids import with_request_ids
from certyard.settings import Settings, parse_hostport
from certyard.wiring import (
    Services,
    acme_config,
    build_services,
    ensure_private_dir,
    rate_limit_config,
    utc_now,
)
from est_server.app import PREFIX as EST_PREFIX
from est_server.app import create_app as create_est_app
from est_server.context import EstContext
from est_server.wiring import add_manufacturer_trust, build_est_context
from notify.dispatcher import build_notifier
from revocation_server.app import create_app as create_revocation_app
from scheduler.runner import check_kinds, run_scheduler
from storage.repositories import leases

log = structlog.get_logger("certyard")
PURGE_SECONDS = 300


async def server_ssl_context(services: Services) -> ssl.SSLContext:
    settings = services.settings
    names = list(settings.server.hostnames)
    host, _ = settings.listen_host_port
    if _is_specific_ip(host) and host not in names:
        # Clients that use the listen address itself (https://127.0.0.1:8443/...) can verify too.
        names.append(host)
    creds = await services.issuance.issue_server_certificate(names)
    tls_dir = ensure_private_dir(services.settings.server.data_dir / "tls")
    cert_path = tls_dir / "server.pem"
    key_path = tls_dir / "server.key"
    # Each process writes its own pair (several instances may share a data dir).
    suffix = f".{os.getpid()}"
    cert_path = cert_path.with_name(cert_path.name + suffix)
    key_path = key_path.with_name(key_path.name + suffix)
    cert_path.write_text(creds.chain_pem)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(creds.key_pem)  # encrypted PKCS#8: never a plaintext key at rest
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # RFC 7030 §3.3.2: EST clients may authenticate with a certificate from this CA. Optional,
    # so ACME clients (which send none) are unaffected; est_server checks the rest.
    context.verify_mode = ssl.CERT_OPTIONAL
    # The root is the trust anchor; the intermediates (retired ones too) only complete the
    # chains of clients that send their certificate alone (curl --cert leaf.pem).
    hierarchy = services.hierarchy
    context.load_verify_locations(
        cadata="".join([hierarchy.root_pem(), *(h.pem for h in hierarchy.intermediates)])
    )
    # RFC 7030 §3.3.2: EST labels may also accept IDevID certificates of manufacturer CAs.
    add_manufacturer_trust(context, services.settings)
    context.load_cert_chain(cert_path, key_path, password=creds.key_password)
    for path in (cert_path, key_path):
        path.unlink(missing_ok=True)  # loaded; nothing to leave behind
    return context


def _is_specific_ip(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not address.is_unspecified


def build_acme_context(services: Services, worker_wake: list[ValidationWorker]) -> AcmeContext:
    config = acme_config(services.settings)
    hierarchy = services.hierarchy
    # Every intermediate (retired ones still have certificates out there) and every alternate
    # chain, for Link rel="up" (RFC 8555 §7.4.2); alternates for rel="alternate".
    issuer_pems = {handle.id: handle.pem for handle in hierarchy.intermediates}
    issuer_pems.update({alternate.id: alternate.pem for alternate in hierarchy.alternates})
    alternates = {
        handle.id: tuple(
            AlternateChainView(id=alternate.id, pem=alternate.pem)
            for alternate in hierarchy.alternates_of(handle.id)
        )
        for handle in hierarchy.intermediates
        if hierarchy.alternates_of(handle.id)
    }
    return AcmeContext(
        config=config,
        sessions=services.sessions,
        issuer=services.authority,
        nonces=NonceService(services.sessions, utc_now, config.nonce_lifetime),
        urls=Urls(config.base_url),
        clock=utc_now,
        issuer_pems=issuer_pems,
        default_issuer_id=hierarchy.intermediate.id,
        alternate_chains=alternates,
        wake_validation=lambda: _wake_all(worker_wake),
        rate_limits=RateLimiter(services.sessions, rate_limit_config(services.settings)),
    )


def _wake_all(workers: list[ValidationWorker]) -> None:
    for worker in workers:
        worker.wake()


def build_https_app(
    context: AcmeContext, checks: HealthChecks, est: EstContext | None = None
) -> web.Application:
    """The public HTTPS listener: ACME under /acme, EST under /.well-known/est (RFC 7030
    §3.2.2), /healthz and /readyz at the top."""
    root = web.Application(client_max_size=context.config.max_body_bytes)
    with_request_ids(root)  # X-Request-Id for ACME, EST and health (docs/admin-api.md)
    add_health_routes(root, checks)
    # Metrics middleware per sub-application: protocol acme / est (docs/metrics.md).
    root.add_subapp(PREFIX, instrument(create_app(context), "acme"))
    if est is not None:
        root.add_subapp(EST_PREFIX, instrument(create_est_app(est), "est"))
    return root


async def _purge_loop(context: AcmeContext, instance: str) -> None:
    """Delete expired nonces; one instance at a time does it, through a database lease."""
    while True:
        await asyncio.sleep(PURGE_SECONDS)
        try:
            now = utc_now()
            if await leases.acquire(
                context.sessions,
                "nonce-purge",
                instance,
                now,
                dt.timedelta(seconds=2 * PURGE_SECONDS),
            ):
                await context.nonces.purge_expired()
        except Exception:
            log.exception("nonce_purge_failed")


async def _crl_loop(services: Services) -> None:
    """Regenerate CRLs on schedule (RFC 5280 §5.1.2.5: a new CRL before nextUpdate)."""
    interval = services.settings.ca.crl_regenerate_minutes * 60
    while True:
        try:
            await services.crls.regenerate_all()
        except Exception:
            log.exception("crl_regeneration_failed")
        await asyncio.sleep(interval)


def build_http_app(services: Services) -> web.Application:
    """The plain-HTTP listener: CRLs, OCSP and issuer certificates (RFC 5019 §5) of the root
    and every intermediate (AIA caIssuers of their certificates names them)."""
    issuers = {
        handle.id: handle.certificate.public_bytes(serialization.Encoding.DER)
        for handle in services.hierarchy.issuers
    }
    app = create_revocation_app(services.crls, services.ocsp, issuer_certs=issuers)
    return with_request_ids(instrument(app, "revocation"))


def build_admin_app(
    services: Services, checks: HealthChecks, recorder: AuditRecorder | None = None
) -> web.Application:
    """The admin listener: the admin API (/api/v1, /api/openapi.json, /api/docs), Prometheus
    /metrics, and /healthz and /readyz as on the public listener."""
    settings = services.settings
    admin = AdminServices(
        settings=settings.admin,
        sessions=services.sessions,
        revoker=services.authority,  # revokes through IssuanceService, then refreshes CRL/OCSP
        key_backend=services.backend,
        recorder=recorder or NullRecorder(),
        clock=utc_now,
        est_labels=tuple(settings.est.labels),
        scan_anchors=(settings.server.data_dir / "ca" / "root.pem",),
        app_settings=settings,
    )
    app = with_request_ids(instrument(create_admin_app(admin), "admin"))
    add_health_routes(app, checks)
    app.router.add_get("/metrics", metrics_handler)
    return app


async def serve(settings: Settings) -> int:
    services = await build_services(settings)
    workers: list[ValidationWorker] = []
    context = build_acme_context(services, workers)
    worker = ValidationWorker(context, context.config.validation_workers)
    workers.append(worker)
    checks = HealthChecks(services.engine, services.backend)
    app = build_https_app(context, checks, build_est_context(services))
    # Notifications for everything that raises them (renewal, deployment, CT), and the
    # scheduler's jobs (docs/scheduler.md); an unknown job kind stops the start here.
    build_notifier(settings.notify, services.sessions)  # [notify] secrets readable, or stop
    registry = build_registry(settings, services)
    check_kinds(settings.scheduler, registry)
    ssl_context = await server_ssl_context(services)
    host, port = settings.listen_host_port
    runner = web.AppRunner(
        app, shutdown_timeout=settings.server.shutdown_grace_seconds, access_log=None
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_address=True)
    http_runner: web.AppRunner | None = None
    if settings.server.http_listen:
        http_runner = web.AppRunner(
            build_http_app(services),
            shutdown_timeout=settings.server.shutdown_grace_seconds,
            access_log=None,
        )
        await http_runner.setup()
    admin_runner: web.AppRunner | None = None
    if settings.admin.listen:
        admin_runner = web.AppRunner(
            build_admin_app(services, checks, recorder=services.audit),
            shutdown_timeout=settings.server.shutdown_grace_seconds,
            access_log=None,
        )
        await admin_runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    background: list[asyncio.Task[None]] = []
    instance = secrets.token_hex(8)  # names this process in leases and logs
    try:
        await site.start()
        if http_runner is not None:
            http_host, http_port = parse_hostport(settings.server.http_listen)
            await web.TCPSite(http_runner, http_host, http_port, reuse_address=True).start()
        if admin_runner is not None:
            admin_host, admin_port = parse_hostport(settings.admin.listen)
            # admin.tls: the public listener's certificate; else plain HTTP (loopback).
            await web.TCPSite(
                admin_runner,
                admin_host,
                admin_port,
                ssl_context=ssl_context if settings.admin.tls else None,
                reuse_address=True,
            ).start()
        worker.start()
        background.append(asyncio.create_task(_purge_loop(context, instance)))
        background.append(asyncio.create_task(_crl_loop(services)))
        # Database gauges and certyard_hsm_up for /metrics, refreshed every 15 s.
        background.append(start_db_gauges(services.sessions, stop, key_backend=services.backend))
        scheduler_task = asyncio.create_task(
            run_scheduler(services.sessions, registry, settings.scheduler, instance, stop)
        )
        if isinstance(services.audit, AuditTrail):
            # Time-based audit checkpoints (count-based ones happen on each append).
            background.append(asyncio.create_task(services.audit.run_checkpoints()))
        log.info(
            "certyard_started",
            acme_directory=context.urls.directory,
            listen=f"{host}:{port}",
            crl_ocsp=settings.http_public_url,
            admin=settings.admin.listen or None,
            root_certificate=str(Path(settings.server.data_dir) / "ca" / "root.pem"),
            key_backend=services.backend.name,
            database=settings.database_url.split("@")[-1],
            instance=instance,
        )
        await stop.wait()
        log.info("certyard_stopping")
        # The scheduler records runs still in progress and gives back its leases.
        await asyncio.wait_for(scheduler_task, settings.server.shutdown_grace_seconds)
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await runner.cleanup()  # stops listening, waits for requests in flight
        if http_runner is not None:
            await http_runner.cleanup()
        if admin_runner is not None:
            await admin_runner.cleanup()
        await worker.stop()
        await services.close()
    log.info("certyard_stopped")
    return 0
