"""CAA at validation and at finalize (RFC 8659, RFC 8657), through the ACME flow, in process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.test_acme_flow import solve
from tests.support.acme_app import RunningAcme, running_acme
from tests.support.acme_client import AcmeTestClient, csr_field, make_csr
from tests.support.dnsserver import TestDNSServer
from tests.support.http01 import Responder


@pytest.fixture
async def acme(
    db_url: str, tmp_path: Path, dns: TestDNSServer, responder: Responder
) -> AsyncIterator[RunningAcme]:
    async with running_acme(
        db_url,
        tmp_path / "data",
        dns_address=dns.address,
        http01_port=responder.port,
        caa_identities=["certyard.test"],
        validation_timeout_seconds=3,
    ) as running:
        yield running


@pytest.fixture
async def client(acme: RunningAcme) -> AcmeTestClient:
    c = await acme.client()
    assert (await c.register()).status == 201
    return c


async def _order_status(
    client: AcmeTestClient, names: list[str], responder: Responder, dns: TestDNSServer
) -> tuple[dict[str, object], list[dict[str, object]]]:
    reply = await client.new_order(names)
    assert reply.status == 201, reply.body
    order_url = reply.headers["Location"]
    await solve(client, reply.json(), responder, dns)
    order = await client.poll(order_url, {"ready", "invalid"})
    authzs = [(await client.get(url)).json() for url in reply.json()["authorizations"]]
    return order, authzs


async def test_ten_names_one_forbidden(
    client: AcmeTestClient, responder: Responder, dns: TestDNSServer
) -> None:
    names = [f"n{i}.caa.test" for i in range(10)]
    dns.set_caa("n7.caa.test", ['0 issue "someone-else.test"'])
    order, authzs = await _order_status(client, names, responder, dns)
    assert order["status"] == "invalid"
    invalid = [a for a in authzs if a["status"] == "invalid"]
    assert [a["identifier"]["value"] for a in invalid] == ["n7.caa.test"]
    error = next(c["error"] for c in invalid[0]["challenges"] if c.get("error"))
    assert error["type"] == "urn:ietf:params:acme:error:caa"
    assert "n7.caa.test" in error["detail"]


async def test_caa_on_a_parent_applies_and_naming_us_permits(
    client: AcmeTestClient, responder: Responder, dns: TestDNSServer
) -> None:
    dns.set_caa("parent.test", ['0 issue "someone-else.test"'])
    order, _ = await _order_status(client, ["a.b.parent.test"], responder, dns)
    assert order["status"] == "invalid"
    dns.set_caa("ok.test", ['0 issue "certyard.test"', '0 iodef "mailto:sec@ok.test"'])
    order, _ = await _order_status(client, ["www.ok.test"], responder, dns)
    assert order["status"] == "ready"


async def test_accounturi_and_validationmethods(
    client: AcmeTestClient, responder: Responder, dns: TestDNSServer
) -> None:
    dns.set_caa("acct.test", ['0 issue "certyard.test; accounturi=https://elsewhere/acct/1"'])
    order, _ = await _order_status(client, ["acct.test"], responder, dns)
    assert order["status"] == "invalid"
    dns.set_caa("mine.test", [f'0 issue "certyard.test; accounturi={client.account_url}"'])
    order, _ = await _order_status(client, ["mine.test"], responder, dns)
    assert order["status"] == "ready"
    dns.set_caa("meth.test", ['0 issue "certyard.test; validationmethods=dns-01"'])
    order, _ = await _order_status(client, ["meth.test"], responder, dns)  # solved by http-01
    assert order["status"] == "invalid"


async def test_truncated_and_failed_lookups_fail_closed(
    client: AcmeTestClient, responder: Responder, dns: TestDNSServer
) -> None:
    dns.set_caa_truncated("trunc.test")
    dns.set_servfail("servfail.test")
    dns.set_a("www.servfail.test", ["127.0.0.1"])
    for name in ("trunc.test", "www.servfail.test"):
        order, authzs = await _order_status(client, [name], responder, dns)
        assert order["status"] == "invalid"
        errors = [c["error"] for c in authzs[0]["challenges"] if c.get("error")]  # type: ignore[index,union-attr]
        assert errors and errors[0]["type"] == "urn:ietf:params:acme:error:caa", errors


async def test_finalize_rechecks_old_validations(
    db_url: str, tmp_path: Path, dns: TestDNSServer, responder: Responder
) -> None:
    async with running_acme(
        db_url,
        tmp_path / "data",
        dns_address=dns.address,
        http01_port=responder.port,
        caa_identities=["certyard.test"],
        caa_recheck_seconds=0,
    ) as acme:
        client = await acme.client()
        await client.register()
        order, _ = await _order_status(client, ["late.test", "fine.test"], responder, dns)
        assert order["status"] == "ready"
        dns.set_caa("late.test", ['0 issue "someone-else.test"'])
        der, _ = make_csr(["late.test", "fine.test"])
        reply = await client.post(str(order["finalize"]), {"csr": csr_field(der)})
        assert reply.problem_type == "caa" and reply.status == 403
        subs = reply.json()["subproblems"]
        assert [s["identifier"]["value"] for s in subs] == ["late.test"]
