"""Prometheus metrics (prometheus-client): one registry for the process, served as /metrics on
the admin listener. Metric names start with ``certyard_``.

Conventions (https://prometheus.io/docs/practices/naming/): base units in the name (``_seconds``),
``_total`` on counters, and every label drawn from a bounded set (a route template, never a raw
path; a profile or challenge type from the configuration, never an account id or a hostname), so
that the number of time series stays bounded however many clients call.

This module holds the metrics updated by the code paths themselves and the small hooks that
update them (``observe_*``, ``issuance_timer``, ``hsm_timer``); it imports nothing of certyard, so
any layer (``ca/`` included) may call it. The HTTP middleware is in ``certyard.metrics_http``, the
gauges read from the database in ``certyard.metrics_db``, the scanner's progress observer in
``certyard.metrics_scan``. docs/metrics.md lists every metric.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder

REGISTRY = CollectorRegistry(auto_describe=True)
# CPU, memory, open files of this process (from /proc): certyard_process_cpu_seconds_total ...
ProcessCollector(namespace="certyard", registry=REGISTRY)

# Protocols a request or an issuance is attributed to (label ``protocol``).
PROTOCOLS = ("acme", "est", "admin", "revocation")
# ``requester`` prefixes of IssuanceService.issue (ca/issuance.py) mapped to ``protocol``.
_REQUESTER_PROTOCOLS = {"acme": "acme", "est": "est", "server-tls": "server-tls", "cli": "cli"}

# Latency buckets, seconds. HTTP: the client library defaults (5 ms .. 10 s). Issuance includes
# CSR checks, linting, two audit writes, a database commit and a CA signature: 10 ms .. 30 s.
# HSM calls: a software signature takes ~0.1 ms, a SoftHSM2 RSA-4096 one ~10 ms, a network HSM
# tens of ms, and a call waiting for a reconnect up to Pkcs11Config.call_timeout (10 s).
ISSUANCE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
HSM_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
VALIDATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HTTP_REQUESTS = Counter(
    "certyard_http_requests_total",
    "HTTP requests answered, by protocol, route template, method and status code.",
    ["protocol", "endpoint", "method", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "certyard_http_request_duration_seconds",
    "Time from receiving an HTTP request to its response, by protocol, route template, method.",
    ["protocol", "endpoint", "method"],
    registry=REGISTRY,
)
ISSUANCES = Counter(
    "certyard_issuances_total",
    "Certificate issuances attempted, by protocol, profile and outcome "
    "(issued, or the CA error kind that stopped it).",
    ["protocol", "profile", "outcome"],
    registry=REGISTRY,
)
ISSUANCE_DURATION = Histogram(
    "certyard_issuance_duration_seconds",
    "Time to issue one certificate (CSR checks, lint, audit, signature, commit).",
    ["protocol", "profile"],
    buckets=ISSUANCE_BUCKETS,
    registry=REGISTRY,
)
VALIDATIONS = Counter(
    "certyard_validations_total",
    "ACME challenge checks run by this process, by challenge type, outcome (valid, invalid, "
    "error) and ACME problem type of a failure (none when valid).",
    ["challenge_type", "outcome", "problem"],
    registry=REGISTRY,
)
VALIDATION_DURATION = Histogram(
    "certyard_validation_duration_seconds",
    "Time to run one ACME challenge check, by challenge type.",
    ["challenge_type"],
    buckets=VALIDATION_BUCKETS,
    registry=REGISTRY,
)
HSM_DURATION = Histogram(
    "certyard_hsm_operation_duration_seconds",
    "Time of one CA key operation (generate, load, sign) on the key backend.",
    ["backend", "operation"],
    buckets=HSM_BUCKETS,
    registry=REGISTRY,
)
HSM_ERRORS = Counter(
    "certyard_hsm_errors_total",
    "CA key operations that failed, by backend, operation and CA error kind "
    "(unavailable = token unreachable).",
    ["backend", "operation", "kind"],
    registry=REGISTRY,
)
HSM_UP = Gauge(
    "certyard_hsm_up",
    "1 when the CA key backend answered its last health check, else 0.",
    ["backend"],
    registry=REGISTRY,
)
SCAN_ENDPOINTS_DONE = Counter(
    "certyard_scan_endpoints_done_total",
    "Endpoints (ip, port) whose probes all finished, in scans run by this process.",
    registry=REGISTRY,
)
SCAN_PROBES = Counter(
    "certyard_scan_probes_total",
    "TLS/SSH probes finished in scans run by this process, by status.",
    ["status"],
    registry=REGISTRY,
)
SCAN_ENDPOINTS_PENDING = Gauge(
    "certyard_scan_endpoints_pending",
    "Endpoints not yet finished in the scans this process is running.",
    registry=REGISTRY,
)
SCANS_ACTIVE = Gauge(
    "certyard_scans_active",
    "Scans this process is running now.",
    registry=REGISTRY,
)


async def metrics_handler(request: web.Request) -> web.Response:
    """GET /metrics: OpenMetrics when the scraper asks for it (Prometheus does), else the
    Prometheus text format 0.0.4 (curl, promtool check metrics). The client library's own
    content negotiation, as its WSGI/ASGI apps do."""
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return web.Response(body=encoder(REGISTRY), headers={"Content-Type": content_type})


def requester_protocol(requester: str) -> str:
    """The ``protocol`` label of an issuance from its requester ("acme:<account>" -> "acme"):
    only the prefix, so account ids never become label values."""
    return _REQUESTER_PROTOCOLS.get(requester.split(":", 1)[0], "other")


def error_kind(exc: BaseException) -> str:
    """A bounded label for a failure: a CAError's kind, else "internal"."""
    kind = getattr(exc, "kind", None)
    return kind if isinstance(kind, str) else "internal"


def observe_issuance(protocol: str, profile: str, seconds: float, outcome: str) -> None:
    """One issuance attempt: ``outcome`` "issued" or the CAError kind that stopped it."""
    ISSUANCES.labels(protocol, profile, outcome).inc()
    if outcome == "issued":  # latency of successful issuances only: failures are often instant
        ISSUANCE_DURATION.labels(protocol, profile).observe(seconds)


@contextmanager
def issuance_timer(requester: str, profile: str) -> Iterator[None]:
    """Time the block as one issuance by ``requester`` of ``profile`` (IssuanceService.issue)."""
    started = time.perf_counter()
    protocol = requester_protocol(requester)
    try:
        yield
    except Exception as exc:  # a cancelled request is not an outcome: not counted
        observe_issuance(protocol, profile, time.perf_counter() - started, error_kind(exc))
        raise
    observe_issuance(protocol, profile, time.perf_counter() - started, "issued")


def observe_validation(
    challenge_type: str, outcome: str, problem: str = "none", seconds: float | None = None
) -> None:
    """One challenge check: ``outcome`` valid | invalid | error, ``problem`` the ACME error type
    of an invalid one (RFC 8555 §6.7, e.g. "incorrectResponse", "dns", "connection")."""
    VALIDATIONS.labels(challenge_type, outcome, problem).inc()
    if seconds is not None:
        VALIDATION_DURATION.labels(challenge_type).observe(seconds)


def observe_hsm(backend: str, operation: str, seconds: float, error: str | None = None) -> None:
    """One key operation; ``error`` is the CAError kind when it failed."""
    HSM_DURATION.labels(backend, operation).observe(seconds)
    if error is not None:
        HSM_ERRORS.labels(backend, operation, error).inc()


@contextmanager
def hsm_timer(backend: str, operation: str) -> Iterator[None]:
    """Time the block as one key operation; an exception counts as an error of its kind."""
    started = time.perf_counter()
    try:
        yield
    except Exception as exc:  # cancellation is not a backend error: not counted
        observe_hsm(backend, operation, time.perf_counter() - started, error_kind(exc))
        raise
    observe_hsm(backend, operation, time.perf_counter() - started)


def set_hsm_up(backend: str, up: bool) -> None:
    HSM_UP.labels(backend).set(1 if up else 0)
