"""Multi-perspective validation with agents in their own network namespaces.

Three ``certyard va-agent`` processes (perspectives a, b, c) each run in a network namespace
made by this test, reachable from the ACME server only over a veth link (10.200.N.2). In each
namespace a test DNS server of its own listens on the namespace's ``127.0.0.1:53``, and the
agent resolves through it: each perspective really has its own resolver, and a test makes one
(or two) of them see a different TXT record. The server validates locally through a third DNS
server on the host, then asks the agents over mutual TLS; the quorum decides.

Needs root and iproute2 (skipped otherwise, a failure under CI=true).
"""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_va_perspectives import Issued, MiniCA, _txt_value
from tests.support.acme_app import running_acme
from tests.support.acme_client import AcmeTestClient, thumbprint_key_authorization
from tests.support.dnsserver import TestDNSServer
from tests.support.netns import Namespace, NetnsLab, require_netns
from tests.support.server import certyard_command
from tests.support.tools import REPO_ROOT

AGENT_PORT = 8600  # each namespace is a fresh host: the port is free there
PERSPECTIVES = ("a", "b", "c")


@dataclass
class Perspective:
    name: str
    namespace: Namespace
    txt_dir: Path  # its DNS server answers TXT queries from these files
    processes: list[subprocess.Popen[bytes]]
    logs: list[Path]

    @property
    def url(self) -> str:
        return f"https://{self.namespace.address}:{AGENT_PORT}"

    def publish(self, name: str, value: str) -> None:
        (self.txt_dir / f"_acme-challenge.{name}").write_text(value + "\n")


@dataclass
class Lab:
    ca: MiniCA
    client: Issued  # the ACME server's client certificate
    perspectives: dict[str, Perspective]


def _wait_for(check: Callable[[], bool], perspective: Perspective) -> None:
    what = f"perspective {perspective.name}"
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        for process in perspective.processes:
            if process.poll() is not None:
                tails = "\n".join(log.read_text()[-2000:] for log in perspective.logs)
                raise RuntimeError(f"{what}: a process exited:\n{tails}")
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start in time")


def _connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _start(lab: NetnsLab, name: str, ca: MiniCA, work: Path) -> Perspective:
    namespace = lab.add()
    # The agent's certificate names its address: the server verifies it (mutual TLS).
    agent = ca.issue(f"agent-{name}", server=True, ips=(namespace.address,))
    txt_dir = work / f"txt-{name}"
    txt_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CERTYARD__")}
    env["PYTHONUNBUFFERED"] = "1"
    dns_command = [sys.executable, "-m", "tests.support.dnsserver"]
    dns_command += ["--txt-dir", str(txt_dir), "--port", "53"]
    agent_env = {
        **env,
        # The namespace's own loopback: a resolver no other perspective can reach.
        "CERTYARD__ACME__DNS_RESOLVERS": json.dumps(["127.0.0.1:53"]),
        "CERTYARD__ACME__VALIDATION_DENY": "[]",
        "CERTYARD__ACME__VALIDATION_TIMEOUT_SECONDS": "3",
        "CERTYARD__SERVER__DATA_DIR": str(work),
        "CERTYARD__LOG__FORMAT": "json",
    }
    agent_command = [
        *certyard_command(),
        "va-agent",
        "--listen",
        f"{namespace.address}:{AGENT_PORT}",
        "--cert",
        str(agent.cert),
        "--key",
        str(agent.key),
        "--ca",
        str(ca.pem),
        "--name",
        name,
    ]
    perspective = Perspective(name, namespace, txt_dir, [], [])
    for kind, command, environ in (("dns", dns_command, env), ("agent", agent_command, agent_env)):
        log = work / f"{kind}-{name}.log"
        perspective.logs.append(log)
        with log.open("wb") as out:
            perspective.processes.append(
                subprocess.Popen(
                    namespace.command(command, lab.ip),
                    cwd=REPO_ROOT,
                    env=environ,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    return perspective


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    ip = require_netns()
    work = tmp_path_factory.mktemp("netns")
    netns = NetnsLab(ip)
    perspectives: dict[str, Perspective] = {}
    try:
        ca = MiniCA(work, "va-ca")
        client = ca.issue("acme-server", server=False)
        for name in PERSPECTIVES:
            perspectives[name] = _start(netns, name, ca, work)
        for p in perspectives.values():
            _wait_for(functools.partial(_connects, p.namespace.address, AGENT_PORT), p)
        yield Lab(ca, client, perspectives)
    finally:
        for p in perspectives.values():
            for process in p.processes:
                _stop(process)
        netns.close()


def _settings(lab: Lab, quorum: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "va_agents": [{"name": p.name, "url": p.url} for p in lab.perspectives.values()],
        "va_quorum": quorum,
        "va_client_cert": lab.client.cert,
        "va_client_key": lab.client.key,
        "va_ca_file": lab.ca.pem,
        "va_timeout_seconds": 10,
        "validation_timeout_seconds": 3,
        **extra,
    }


async def _dns01(
    client: AcmeTestClient,
    name: str,
    local_dns: TestDNSServer,
    lab: Lab,
    wrong: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Order ``name``, publish its TXT record everywhere (a wrong one in the perspectives named
    in ``wrong``), answer the dns-01 challenge, return the final authorization."""
    reply = await client.new_order([name])
    assert reply.status == 201, reply.body
    authz_url = reply.json()["authorizations"][0]
    authz = (await client.get(authz_url)).json()
    chall = next(c for c in authz["challenges"] if c["type"] == "dns-01")
    value = _txt_value(thumbprint_key_authorization(chall["token"], client.key))
    local_dns.set_txt(f"_acme-challenge.{name}", [value])
    for perspective in lab.perspectives.values():
        perspective.publish(name, "hijacked-answer" if perspective.name in wrong else value)
    assert (await client.post(chall["url"], {})).status == 200
    result: dict[str, Any] = await client.poll(authz_url, {"valid", "invalid"})
    return result


def _detail(authz: dict[str, Any]) -> str:
    chall = next(c for c in authz["challenges"] if c["type"] == "dns-01")
    assert chall["error"]["type"] == "urn:ietf:params:acme:error:unauthorized", chall
    detail: str = chall["error"]["detail"]
    return detail


def _sqlite(tmp_path: Path) -> str:
    # What is under test is the network, not storage: one database engine is enough here
    # (test_va_perspectives.py runs the same server path on SQLite and PostgreSQL).
    return f"sqlite+aiosqlite:///{tmp_path}/certyard.db"


@pytest.fixture
def local_dns() -> Iterator[TestDNSServer]:
    server = TestDNSServer()
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("quorum, expected", [(2, "valid"), (3, "invalid")])
async def test_one_namespace_sees_another_answer(
    tmp_path: Path,
    lab: Lab,
    local_dns: TestDNSServer,
    quorum: int,
    expected: str,
) -> None:
    """Perspective c's resolver answers differently: 2 of 3 issues, "all 3" refuses."""
    settings = _settings(lab, quorum)
    async with running_acme(
        _sqlite(tmp_path), tmp_path / "d", dns_address=local_dns.address, **settings
    ) as acme:
        client = await acme.client()
        await client.register()
        name = f"q{quorum}.netns.test"
        authz = await _dns01(client, name, local_dns, lab, wrong=("c",))
        assert authz["status"] == expected, authz
        if expected == "invalid":
            detail = _detail(authz)
            assert "2 of 3 remote perspectives agreed, 3 required" in detail, detail
            assert (
                f"perspective c: unauthorized: Incorrect TXT record 'hijacked-answer' found at "
                f"_acme-challenge.{name}"
            ) in detail, detail
            assert "perspective a: ok" in detail and "perspective b: ok" in detail, detail


@pytest.mark.parametrize("wrong, expected", [(("c",), "valid"), (("b", "c"), "invalid")])
async def test_br_policy_quorum(
    tmp_path: Path,
    lab: Lab,
    local_dns: TestDNSServer,
    wrong: tuple[str, ...],
    expected: str,
) -> None:
    """acme.mpic_policy = "br" with 3 remote perspectives: one may disagree, not two."""
    settings = _settings(lab, mpic_policy="br")
    async with running_acme(
        _sqlite(tmp_path), tmp_path / "d", dns_address=local_dns.address, **settings
    ) as acme:
        client = await acme.client()
        await client.register()
        name = f"br{len(wrong)}.netns.test"
        authz = await _dns01(client, name, local_dns, lab, wrong=wrong)
        assert authz["status"] == expected, authz
        if expected == "invalid":
            detail = _detail(authz)
            assert "1 of 3 remote perspectives agreed, 2 required" in detail, detail
            assert "perspective b: unauthorized: Incorrect TXT record" in detail, detail
            assert "perspective c: unauthorized: Incorrect TXT record" in detail, detail
