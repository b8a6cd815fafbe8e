"""The instrumentation hooks: what each code path adds to the registry, with bounded labels."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import generate_latest

from acme_server.va.dispatch import validate_challenge
from acme_server.va.policy import ValidationConfig, ValidationFailure
from ca.errors import CAError
from ca.kek import FileKek
from ca.software_keys import SoftwareKeyBackend
from certyard.metrics import REGISTRY, hsm_timer, issuance_timer, metrics_handler
from certyard.metrics_http import UNMATCHED, instrument
from certyard.metrics_scan import ScanProgress
from scanner.runner import ScanOptions
from scanner.scan import ScanRequest, scan
from tests.support.http01 import Responder
from tests.support.server import free_port

pytestmark = pytest.mark.timeout(60)


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_issuance_timer_counts_outcomes_by_protocol_not_account() -> None:
    labels = {"protocol": "acme", "profile": "tls-server"}
    before_ok = value("certyard_issuances_total", **labels, outcome="issued")
    before_fail = value("certyard_issuances_total", **labels, outcome="unavailable")
    before_hist = value("certyard_issuance_duration_seconds_count", **labels)
    with issuance_timer("acme:acct-secret-id", "tls-server"):
        pass
    with (
        pytest.raises(CAError),
        issuance_timer("acme:acct-secret-id", "tls-server"),
    ):
        raise CAError("unavailable", "token gone")
    assert value("certyard_issuances_total", **labels, outcome="issued") == before_ok + 1
    assert value("certyard_issuances_total", **labels, outcome="unavailable") == before_fail + 1
    # Latency of successful issuances only.
    assert value("certyard_issuance_duration_seconds_count", **labels) == before_hist + 1
    assert b"acct-secret-id" not in generate_latest(REGISTRY)  # no account ids as labels


def test_issuance_protocol_of_unknown_requester_is_other() -> None:
    before = value("certyard_issuances_total", protocol="other", profile="p", outcome="issued")
    with issuance_timer("hierarchy", "p"):
        pass
    after = value("certyard_issuances_total", protocol="other", profile="p", outcome="issued")
    assert after == before + 1


async def test_software_backend_times_sign_and_counts_errors(tmp_path: Path) -> None:
    backend = SoftwareKeyBackend(FileKek(tmp_path / "kek", create_if_missing=True))
    generated = await backend.generate("int-1", "ec-p256")
    sign = {"backend": "software", "operation": "sign"}
    before = value("certyard_hsm_operation_duration_seconds_count", **sign)
    errors = value("certyard_hsm_errors_total", **sign, kind="not_found")
    await backend.sign(generated.key_ref, b"tbs")
    with pytest.raises(CAError):
        await backend.sign("software:missing", b"tbs")
    assert value("certyard_hsm_operation_duration_seconds_count", **sign) == before + 2
    assert value("certyard_hsm_errors_total", **sign, kind="not_found") == errors + 1
    generate = {"backend": "software", "operation": "generate"}
    assert value("certyard_hsm_operation_duration_seconds_count", **generate) >= 1


def test_hsm_timer_kind_of_a_foreign_exception_is_internal() -> None:
    before = value("certyard_hsm_errors_total", backend="pkcs11", operation="sign", kind="internal")
    with pytest.raises(RuntimeError), hsm_timer("pkcs11", "sign"):
        raise RuntimeError("boom")
    after = value("certyard_hsm_errors_total", backend="pkcs11", operation="sign", kind="internal")
    assert after == before + 1


async def test_validation_outcomes_of_real_http01_checks() -> None:
    responder = Responder()
    responder.tokens["tok"] = "tok.thumb"
    await responder.start()
    try:
        config = ValidationConfig(http01_port=responder.port, deny_networks=(), timeout=5)
        ok = {"challenge_type": "http-01", "outcome": "valid", "problem": "none"}
        bad = {"challenge_type": "http-01", "outcome": "invalid", "problem": "unauthorized"}
        before_ok, before_bad = (
            value("certyard_validations_total", **ok),
            value("certyard_validations_total", **bad),
        )
        before_dur = value("certyard_validation_duration_seconds_count", challenge_type="http-01")
        await validate_challenge("http-01", "127.0.0.1", "tok", "tok.thumb", config)
        with pytest.raises(ValidationFailure):  # RFC 8555 §8.3: a wrong body is unauthorized
            await validate_challenge("http-01", "127.0.0.1", "tok", "tok.other", config)
        assert value("certyard_validations_total", **ok) == before_ok + 1
        assert value("certyard_validations_total", **bad) == before_bad + 1
        after_dur = value("certyard_validation_duration_seconds_count", challenge_type="http-01")
        assert after_dur == before_dur + 2
    finally:
        await responder.stop()


async def test_unknown_challenge_type_is_one_bounded_label() -> None:
    labels = {"challenge_type": "unknown", "outcome": "invalid", "problem": "malformed"}
    before = value("certyard_validations_total", **labels)
    with pytest.raises(ValidationFailure):
        await validate_challenge("x-" + "a" * 40, "example.com", "t", "k", ValidationConfig())
    assert value("certyard_validations_total", **labels) == before + 1


def test_scan_progress_observer_and_its_exit() -> None:
    pending, done = (
        value("certyard_scan_endpoints_pending"),
        value("certyard_scan_endpoints_done_total"),
    )
    active = value("certyard_scans_active")
    with ScanProgress() as progress:
        progress.scan_started(3)
        assert value("certyard_scans_active") == active + 1
        progress.endpoint_finished("192.0.2.1", 443)
        assert value("certyard_scan_endpoints_pending") == pending + 2
    # Interrupted after one endpoint: the two left are no longer pending.
    assert value("certyard_scan_endpoints_pending") == pending
    assert value("certyard_scan_endpoints_done_total") == done + 1
    assert value("certyard_scans_active") == active


async def _item(request: web.Request) -> web.Response:
    if request.match_info["item_id"] == "boom":
        raise RuntimeError("handler failure")
    if request.match_info["item_id"] == "gone":
        raise web.HTTPGone()
    return web.json_response({"id": request.match_info["item_id"]})


async def test_middleware_labels_route_templates(aiohttp_client: object) -> None:
    sub = instrument(web.Application(), "acme")
    sub.router.add_get("/item/{item_id}", _item)
    root = instrument(web.Application(), "admin")
    root.router.add_get("/metrics", metrics_handler)
    root.add_subapp("/acme", sub)
    client: TestClient = await aiohttp_client(root)  # type: ignore[operator]

    def requests(endpoint: str, status: str, protocol: str = "admin", method: str = "GET") -> float:
        return value(
            "certyard_http_requests_total",
            protocol=protocol,
            endpoint=endpoint,
            method=method,
            status=status,
        )

    template = "/acme/item/{item_id}"
    before = {s: requests(template, s) for s in ("200", "410", "500")}
    before_unmatched = requests(UNMATCHED, "404")
    before_405 = requests(UNMATCHED, "405", method="POST")
    for item in ("1", "2", "3", "gone", "boom"):
        await client.get(f"/acme/item/{item}")
    await client.get("/no/such/path")
    await client.post("/metrics")
    assert requests(template, "200") == before["200"] + 3
    assert requests(template, "410") == before["410"] + 1
    assert requests(template, "500") == before["500"] + 1
    assert requests(UNMATCHED, "404") == before_unmatched + 1
    assert requests(UNMATCHED, "405", method="POST") == before_405 + 1
    # The root counted the sub-application's requests once, under its own protocol.
    assert requests(template, "200", protocol="acme") == 0
    text = await (await client.get("/metrics")).text()
    assert "/acme/item/1" not in text and 'endpoint="/acme/item/{item_id}"' in text


async def test_scan_progress_during_a_real_scan() -> None:
    """A real scan of two closed loopback ports, observed: two endpoints done, refused probes."""
    ports = [free_port(), free_port()]  # nothing listens there: connections are refused
    done = value("certyard_scan_endpoints_done_total")
    refused = value("certyard_scan_probes_total", status="refused")
    pending = value("certyard_scan_endpoints_pending")
    request = ScanRequest(
        targets=["127.0.0.1"], ports=ports, options=ScanOptions(timeout=2, retries=0)
    )
    with ScanProgress() as progress:
        await scan(request, observer=progress)
    assert value("certyard_scan_endpoints_done_total") == done + 2
    assert value("certyard_scan_probes_total", status="refused") >= refused + 2
    assert value("certyard_scan_endpoints_pending") == pending
