"""promtool (Debian package ``prometheus``) accepts certyard's metrics and rules, and a real
Prometheus scrapes /metrics served on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import subprocess
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from certyard.metrics import (
    REGISTRY,
    metrics_handler,
    observe_hsm,
    observe_issuance,
    observe_validation,
    set_hsm_up,
)
from certyard.metrics_db import (
    CERTIFICATE_STATES,
    COLLECTOR,
    EXPIRY_WINDOWS_DAYS,
    REFRESH_ERRORS,
    CtLog,
    DbSnapshot,
)
from certyard.metrics_http import instrument
from certyard.metrics_scan import ScanProgress
from scanner.jobs import ProbeJob, ProbeResult, Status
from tests.support.server import CertyardServer, free_port
from tests.support.tools import REPO_ROOT, require_tool

pytestmark = pytest.mark.timeout(120)

RULES_DIR = REPO_ROOT / "conf" / "prometheus"
PROMETHEUS_DEADLINE = 45.0


def _produce_every_family() -> None:
    """Traffic through every hook, so that each family has samples."""
    now = dt.datetime.now(dt.UTC)
    observe_issuance("acme", "tls-server", 0.2, "issued")
    observe_issuance("est", "tls-client", 0.01, "policy")
    observe_validation("http-01", "valid", "none", 0.05)
    observe_validation("dns-01", "invalid", "dns", 0.3)
    observe_hsm("pkcs11", "sign", 0.004)
    observe_hsm("pkcs11", "sign", 10.0, "unavailable")
    set_hsm_up("pkcs11", True)
    with ScanProgress() as progress:
        progress.scan_started(2)
        job = ProbeJob(ip="192.0.2.1", port=443, protocol="tls", sni=None, host=None)
        progress.job_finished(ProbeResult(job=job, status=Status.REFUSED))
        progress.endpoint_finished("192.0.2.1", 443)
    COLLECTOR.snapshot = DbSnapshot(
        taken_at=now,
        certificates=dict.fromkeys(CERTIFICATE_STATES, 2),
        expiring=dict.fromkeys(EXPIRY_WINDOWS_DAYS, 1),
        next_expiry=now + dt.timedelta(days=3),
        ct_logs={"https://ct.example.test/log/": CtLog(12, now)},
        scan_runs={"running": 1, "done": 3, "interrupted": 0},
        scan_running_endpoints=7,
        scan_last_finished=now,
    )
    REFRESH_ERRORS.inc()  # one failed database read


def _metrics_app() -> web.Application:
    app = instrument(web.Application(), "admin")
    app.router.add_get("/metrics", metrics_handler)
    return app


def _promtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [require_tool("promtool"), *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )


async def test_promtool_check_metrics_accepts_every_family(aiohttp_client: Any) -> None:
    require_tool("promtool")
    _produce_every_family()
    client: TestClient = await aiohttp_client(_metrics_app())
    assert (await client.get("/metrics")).status == 200  # counts itself: http families too
    response = await client.get("/metrics")
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    body = await response.read()

    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    for family in REGISTRY.collect():
        assert families[family.name].samples, f"{family.name} has no samples"
    scraped = {"protocol": "admin", "endpoint": "/metrics", "method": "GET", "status": "200"}
    assert (REGISTRY.get_sample_value("certyard_http_requests_total", scraped) or 0) >= 1

    promtool = await asyncio.create_subprocess_exec(
        require_tool("promtool"),
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(promtool.communicate(body), 60)
    problems = output.decode()
    assert promtool.returncode == 0, problems
    assert problems.strip() == "", problems  # no lint remark either


def test_promtool_checks_rules_and_their_unit_tests() -> None:
    checked = _promtool("check", "rules", str(RULES_DIR / "certyard-rules.yml"))
    assert checked.returncode == 0, (checked.stdout + checked.stderr).decode()
    assert b"SUCCESS" in checked.stdout
    tested = _promtool("test", "rules", str(RULES_DIR / "certyard-rules_test.yml"))
    assert tested.returncode == 0, (tested.stdout + tested.stderr).decode()
    config = _promtool("check", "config", str(RULES_DIR / "prometheus.yml"))
    assert config.returncode == 0, (config.stdout + config.stderr).decode()


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    # The check above means something: a rule with a PromQL error fails it.
    broken = tmp_path / "broken.yml"
    broken.write_text("groups:\n- name: x\n  rules:\n  - alert: X\n    expr: certyard_hsm_up ==\n")
    assert _promtool("check", "rules", str(broken)).returncode != 0


@contextlib.contextmanager
def _prometheus(tmp_path: Path, target: str) -> Iterator[str]:
    """A real Prometheus on a free loopback port scraping ``target`` every second, with the
    certyard rules loaded; yields its base URL; stops it by PID."""
    binary = require_tool("prometheus")
    port = free_port()
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(  # JSON is YAML: no YAML writer needed
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES_DIR / "certyard-rules.yml")],
                "scrape_configs": [
                    {
                        "job_name": "certyard",
                        "scrape_interval": "1s",
                        "scrape_timeout": "1s",
                        "static_configs": [{"targets": [target]}],
                    }
                ],
            }
        )
    )
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()  # SIGTERM to this PID only
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


async def _query(session: aiohttp.ClientSession, base: str, promql: str) -> list[Any]:
    async with session.get(f"{base}/api/v1/query", params={"query": promql}) as response:
        document = await response.json()
    assert document["status"] == "success", document
    result: list[Any] = document["data"]["result"]
    return result


async def _poll(session: aiohttp.ClientSession, base: str, promql: str) -> list[Any]:
    """Query until the result is non-empty (Prometheus starting, first scrapes) or fail."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PROMETHEUS_DEADLINE
    last: object = "no answer yet"
    while loop.time() < deadline:
        try:
            result = await _query(session, base, promql)
            if result:
                return result
            last = result
        except (aiohttp.ClientError, AssertionError) as exc:
            last = exc
        await asyncio.sleep(0.2)
    raise AssertionError(f"{promql}: nothing within {PROMETHEUS_DEADLINE} s (last: {last})")


@pytest.fixture
async def metrics_server() -> AsyncIterator[str]:
    runner = web.AppRunner(_metrics_app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_real_prometheus_scrapes_metrics(tmp_path: Path, metrics_server: str) -> None:
    _produce_every_family()
    with _prometheus(tmp_path, metrics_server) as base:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            up = await _poll(session, base, 'up{job="certyard"} == 1')
            assert up[0]["metric"]["instance"] == metrics_server
            # Prometheus' own scrapes went through the middleware, by route template.
            scrapes = await _poll(
                session,
                base,
                'certyard_http_requests_total{protocol="admin",endpoint="/metrics",status="200"}',
            )
            assert float(scrapes[0]["value"][1]) >= 1
            expiring = await _poll(session, base, 'certyard_certificates_expiring{within_days="7"}')
            assert float(expiring[0]["value"][1]) == 1
            # The rules file loaded into the real server and evaluates without errors.
            async with session.get(f"{base}/api/v1/rules") as response:
                groups = (await response.json())["data"]["groups"]
            assert {g["name"] for g in groups} == {"certyard-recording", "certyard-alerts"}
            # Every dashboard query is valid PromQL for the real server (Grafana's
            # $__rate_interval stands for a duration).
            dashboard = json.loads((REPO_ROOT / "conf/grafana/certyard-dashboard.json").read_text())
            for panel in dashboard["panels"]:
                for target in panel.get("targets", []):
                    expr = target["expr"].replace("$__rate_interval", "1m")
                    await _query(session, base, expr)  # asserts status "success"
            # The expiring-certificates alert is pending: the data says one expires in 3 days.
            alerts = await _poll(
                session, base, 'ALERTS{alertname="CertyardCertificatesExpiringSoon"}'
            )
            assert alerts[0]["metric"]["alertstate"] in {"pending", "firing"}


def test_real_certyard_serve_metrics_pass_promtool_and_prometheus(tmp_path: Path) -> None:
    """The admin listener of a real ``certyard serve`` (SoftHSM2 CA keys): promtool accepts its
    /metrics, and a real Prometheus scrapes it and sees the CA's HSM signatures."""
    require_tool("promtool")
    with CertyardServer(tmp_path / "certyard") as server:
        with urllib.request.urlopen(server.admin_url + "/metrics", timeout=10) as response:
            body = response.read()
        result = _promtool("check", "metrics", stdin=body)
        assert result.returncode == 0, (result.stdout + result.stderr).decode()
        # Starting issued the listener's certificate and CRLs: signatures on the key backend.
        assert b"certyard_hsm_operation_duration_seconds_count{" in body

        target = server.admin_url.removeprefix("http://")
        with _prometheus(tmp_path / "prometheus", target) as base:
            up = asyncio.run(_poll_once(base, 'up{job="certyard"} == 1'))
            assert up[0]["metric"]["instance"] == target
            signs = asyncio.run(
                _poll_once(base, 'certyard_hsm_operation_duration_seconds_count{operation="sign"}')
            )
            assert float(signs[0]["value"][1]) >= 1


async def _poll_once(base: str, promql: str) -> list[Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        return await _poll(session, base, promql)


def test_promtool_check_metrics_flags_unconventional_names() -> None:
    # The check above means something: promtool's lint rejects a counter without _total.
    bad = b"# HELP x_requests r\n# TYPE x_requests counter\nx_requests 1\n"
    result = _promtool("check", "metrics", stdin=bad)
    assert result.returncode != 0
    assert b"_total" in result.stdout + result.stderr
