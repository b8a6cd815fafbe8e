"""The ACME protocol end to end, in process: real database, real CA, real validation over
loopback, driven by a small test client (certbot and lego are in tests/interop)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from sqlalchemy import func, select

from storage.models import Certificate
from tests.support.acme_app import RunningAcme, running_acme
from tests.support.acme_client import (
    AcmeTestClient,
    csr_field,
    make_csr,
    thumbprint_key_authorization,
)
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
        orders_page_size=2,
        validation_timeout_seconds=3,
    ) as running:
        yield running


@pytest.fixture
async def client(acme: RunningAcme) -> AcmeTestClient:
    c = await acme.client()
    assert (await c.register()).status == 201
    return c


async def solve(
    client: AcmeTestClient, order: dict[str, object], responder: Responder, dns: TestDNSServer
) -> None:
    for authz_url in order["authorizations"]:  # type: ignore[attr-defined]
        authz = (await client.get(authz_url)).json()
        if authz["status"] == "valid":
            continue
        types = {c["type"]: c for c in authz["challenges"]}
        if authz.get("wildcard"):
            assert set(types) == {"dns-01"}
        chall = types["http-01"] if "http-01" in types else types["dns-01"]
        key_auth = thumbprint_key_authorization(chall["token"], client.key)
        if chall["type"] == "http-01":
            responder.tokens[chall["token"]] = key_auth
        else:
            digest = base64.urlsafe_b64encode(hashlib.sha256(key_auth.encode()).digest())
            name = f"_acme-challenge.{authz['identifier']['value']}"
            dns.set_txt(name, [*dns_values(dns, name), digest.decode().rstrip("=")])
        reply = await client.post(chall["url"], {})
        assert reply.status == 200, reply.body
        assert any('rel="up"' in link for link in reply.links)
        await client.poll(authz_url, {"valid", "invalid"})


def dns_values(dns: TestDNSServer, name: str) -> list[str]:
    return list(getattr(dns, "_txt", {}).get(name.lower(), []))


async def obtain(
    client: AcmeTestClient, names: list[str], responder: Responder, dns: TestDNSServer
) -> tuple[dict[str, object], list[x509.Certificate]]:
    reply = await client.new_order(names)
    assert reply.status == 201, reply.body
    order_url = reply.headers["Location"]
    order = reply.json()
    await solve(client, order, responder, dns)
    order = await client.poll(order_url, {"ready", "invalid"})
    assert order["status"] == "ready", order
    der, _ = make_csr([n for n in names])
    final = await client.post(order["finalize"], {"csr": csr_field(der)})
    assert final.status == 200, final.body
    order = await client.poll(order_url, {"valid", "invalid"})
    cert_reply = await client.get(order["certificate"])
    assert cert_reply.status == 200
    assert cert_reply.headers["Content-Type"].startswith("application/pem-certificate-chain")
    assert any('rel="up"' in link for link in cert_reply.links)
    chain = x509.load_pem_x509_certificates(cert_reply.body)
    return order, chain


async def test_issue_with_http01_and_dns01_wildcard(
    acme: RunningAcme, client: AcmeTestClient, responder: Responder, dns: TestDNSServer
) -> None:
    names = ["www.example.test", "*.example.test", "example.test"]
    _, chain = await obtain(client, names, responder, dns)
    leaf, intermediate = chain[0], chain[1]
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(names)
    leaf.verify_directly_issued_by(intermediate)
    root = x509.load_pem_x509_certificate(
        (acme.services.settings.server.data_dir / "ca" / "root.pem").read_bytes()
    )
    intermediate.verify_directly_issued_by(root)
    # Recorded before it was returned.
    async with acme.services.sessions() as session:
        row = (
            await session.execute(
                select(Certificate).where(Certificate.serial == format(leaf.serial_number, "x"))
            )
        ).scalar_one()
        assert row.account_id is not None


async def test_failed_challenge_invalidates_order(
    acme: RunningAcme, client: AcmeTestClient
) -> None:
    reply = await client.new_order(["fail.example.test"])
    order_url = reply.headers["Location"]
    authz_url = reply.json()["authorizations"][0]
    authz = (await client.get(authz_url)).json()
    chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
    await client.post(chall["url"], {})  # nothing serves the token: 404
    authz = await client.poll(authz_url, {"valid", "invalid"})
    assert authz["status"] == "invalid"
    failed = next(c for c in authz["challenges"] if c["type"] == "http-01")
    assert failed["status"] == "invalid"
    assert failed["error"]["type"].startswith("urn:ietf:params:acme:error:")
    assert failed["validationRecord"][0]["hostname"] == "fail.example.test"
    order = (await client.get(order_url)).json()
    assert order["status"] == "invalid"


async def test_authorization_reuse_and_orders_list(
    client: AcmeTestClient, responder: Responder, dns: TestDNSServer
) -> None:
    await obtain(client, ["reuse.example.test"], responder, dns)
    again = await client.new_order(["reuse.example.test"])
    assert again.json()["status"] == "ready"
    await client.new_order(["other.example.test"])
    assert client.account_url
    account = (await client.get(client.account_url)).json()
    seen: list[str] = []
    url: str | None = account["orders"]
    while url:
        page = await client.get(url)
        seen += page.json()["orders"]
        url = next((link.split(">")[0][1:] for link in page.links if 'rel="next"' in link), None)
    assert len(seen) == 3 and len(set(seen)) == 3


async def test_concurrent_finalize_issues_once(
    acme: RunningAcme, client: AcmeTestClient, responder: Responder, dns: TestDNSServer
) -> None:
    reply = await client.new_order(["race.example.test"])
    order_url = reply.headers["Location"]
    await solve(client, reply.json(), responder, dns)
    order = await client.poll(order_url, {"ready"})
    der, _ = make_csr(["race.example.test"])
    replies = await asyncio.gather(
        *[client.post(order["finalize"], {"csr": csr_field(der)}) for _ in range(4)]
    )
    statuses = sorted(r.status for r in replies)
    assert statuses.count(200) == 1, [(r.status, r.body) for r in replies]
    assert all(r.problem_type == "orderNotReady" for r in replies if r.status != 200)
    async with acme.services.sessions() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(Certificate)
            .where(Certificate.order_id == order_url.rsplit("/", 1)[1])
        )
    assert count == 1


async def test_revoke_by_account_and_by_certificate_key(
    acme: RunningAcme, client: AcmeTestClient, responder: Responder, dns: TestDNSServer
) -> None:
    from cryptography.hazmat.primitives import serialization

    from tests.support.jws_client import b64

    _, chain = await obtain(client, ["revoke.example.test"], responder, dns)
    der = chain[0].public_bytes(serialization.Encoding.DER)
    revoke_url = client.directory["revokeCert"]
    bad = await client.post(revoke_url, {"certificate": b64(der), "reason": 7})
    assert bad.problem_type == "badRevocationReason"
    ok = await client.post(revoke_url, {"certificate": b64(der), "reason": 1})
    assert ok.status == 200, ok.body
    again = await client.post(revoke_url, {"certificate": b64(der)})
    assert again.problem_type == "alreadyRevoked"

    # A second certificate, revoked with its own key (jwk), by someone without the account.
    reply = await client.new_order(["revoke.example.test"])
    order_url = reply.headers["Location"]
    order = await client.poll(order_url, {"ready"})
    csr, cert_key = make_csr(["revoke.example.test"])
    await client.post(order["finalize"], {"csr": csr_field(csr)})
    order = await client.poll(order_url, {"valid"})
    leaf = x509.load_pem_x509_certificates((await client.get(order["certificate"])).body)[0]
    leaf_der = leaf.public_bytes(serialization.Encoding.DER)
    stranger = await acme.client()
    wrong = await stranger.post(revoke_url, {"certificate": b64(leaf_der)}, use_jwk=True)
    assert wrong.problem_type == "unauthorized"
    by_key = await stranger.post(
        revoke_url, {"certificate": b64(leaf_der)}, use_jwk=True, key=cert_key
    )
    assert by_key.status == 200, by_key.body


async def test_account_lifecycle_and_key_change(acme: RunningAcme, client: AcmeTestClient) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.support.jws_client import sign_key_change

    assert client.account_url
    # Same key again: the existing account, 200.
    again = await client.register()
    assert again.status == 200 and again.headers["Location"] == client.account_url
    updated = await client.post(client.account_url, {"contact": ["mailto:new@example.com"]})
    assert updated.json()["contact"] == ["mailto:new@example.com"]
    bad = await client.post(client.account_url, {"contact": ["tel:+123"]})
    assert bad.problem_type == "unsupportedContact"
    bad = await client.post(client.account_url, {"contact": ["mailto:a@b.example?subject=x"]})
    assert bad.problem_type == "invalidContact"

    new_key = ec.generate_private_key(ec.SECP256R1())
    url = client.directory["keyChange"]
    body = sign_key_change(
        client.key, new_key, account_url=client.account_url, url=url, nonce=await client.nonce()
    )
    reply = await client.raw_post(url, body)
    assert reply.status == 200, reply.body
    old_key, client.key = client.key, new_key
    assert (await client.get(client.account_url)).status == 200
    stale = await client.post(client.account_url, None, key=old_key)
    assert stale.status == 400 and stale.problem_type == "malformed"
    fresh = await acme.client()
    fresh.key = new_key
    found = await fresh.post(
        fresh.directory["newAccount"], {"onlyReturnExisting": True}, use_jwk=True
    )
    assert found.status == 200 and found.headers["Location"] == client.account_url
    nobody = await acme.client()
    missing = await nobody.post(
        nobody.directory["newAccount"], {"onlyReturnExisting": True}, use_jwk=True
    )
    assert missing.problem_type == "accountDoesNotExist"


async def test_nonce_endpoint_and_directory(acme: RunningAcme) -> None:
    async with acme.http.head(f"{acme.base_url}/acme/new-nonce") as resp:
        assert resp.status == 200 and resp.headers["Replay-Nonce"]
    async with acme.http.get(f"{acme.base_url}/acme/new-nonce") as resp:
        assert resp.status == 204 and resp.headers["Replay-Nonce"]
        assert resp.headers["Cache-Control"] == "no-store"
    async with acme.http.get(f"{acme.base_url}/acme/directory") as resp:
        body = await resp.json()
        assert {"newNonce", "newAccount", "newOrder", "revokeCert", "keyChange", "meta"} <= set(
            body
        )
        assert body["meta"]["externalAccountRequired"] is False


async def test_authorization_deactivation(client: AcmeTestClient) -> None:
    reply = await client.new_order(["deact.example.test"])
    order_url = reply.headers["Location"]
    authz_url = reply.json()["authorizations"][0]
    bad = await client.post(authz_url, {"status": "valid"})
    assert bad.problem_type == "malformed"
    done = await client.post(authz_url, {"status": "deactivated"})
    assert done.status == 200 and done.json()["status"] == "deactivated"
    again = await client.post(authz_url, {"status": "deactivated"})
    assert again.problem_type == "malformed"
    assert (await client.get(order_url)).json()["status"] == "invalid"
    # Someone else's authorization is not found, not forbidden (no existence oracle).
    stranger = AcmeTestClient(client.session, client.directory_url)
    await stranger.load_directory()
    await stranger.register()
    assert (await stranger.get(authz_url)).status == 404


async def test_expired_orders_and_authorizations_answer_correctly(
    acme: RunningAcme, client: AcmeTestClient
) -> None:
    import datetime as dt

    from sqlalchemy import update

    from storage.models import Authorization, Order

    reply = await client.new_order(["expire.example.test"])
    order_url = reply.headers["Location"]
    authz_url = reply.json()["authorizations"][0]
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    async with acme.services.sessions.begin() as session:
        await session.execute(
            update(Authorization)
            .where(Authorization.id == authz_url.rsplit("/", 1)[1])
            .values(expires_at=past)
        )
        await session.execute(
            update(Order).where(Order.id == order_url.rsplit("/", 1)[1]).values(expires_at=past)
        )
    authz = (await client.get(authz_url)).json()
    assert authz["status"] == "expired"
    order = (await client.get(order_url)).json()
    assert order["status"] == "invalid" and order["error"]["type"].endswith(":unauthorized")
    chall = authz["challenges"][0]
    answered = await client.post(chall["url"], {})
    assert answered.problem_type == "malformed"  # an expired authorization takes no answers


async def test_pre_authorization(
    db_url: str, tmp_path: Path, dns: TestDNSServer, responder: Responder
) -> None:
    """RFC 8555 §7.4.1: newAuthz when enabled; a later order for the name is ready at once."""
    async with running_acme(
        db_url,
        tmp_path / "pre",
        dns_address=dns.address,
        http01_port=responder.port,
        allow_preauthorization=True,
    ) as acme:
        client = await acme.client()
        await client.register()
        assert "newAuthz" in client.directory
        url = client.directory["newAuthz"]
        wild = await client.post(
            url, {"identifier": {"type": "dns", "value": "*.pre.example.test"}}
        )
        assert wild.problem_type == "rejectedIdentifier"
        reply = await client.post(url, {"identifier": {"type": "dns", "value": "pre.example.test"}})
        assert reply.status == 201, reply.body
        authz_url = reply.headers["Location"]
        authz = reply.json()
        chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
        responder.tokens[chall["token"]] = thumbprint_key_authorization(chall["token"], client.key)
        await client.post(chall["url"], {})
        await client.poll(authz_url, {"valid"})
        order = await client.new_order(["pre.example.test"])
        assert order.json()["status"] == "ready"
        assert order.json()["authorizations"] == [authz_url]


async def test_pre_authorization_disabled(client: AcmeTestClient, acme: RunningAcme) -> None:
    assert "newAuthz" not in client.directory
    reply = await client.post(
        f"{acme.base_url}/acme/new-authz",
        {"identifier": {"type": "dns", "value": "x.example.test"}},
    )
    assert reply.status == 404


async def test_dns_account_01(
    db_url: str, tmp_path: Path, dns: TestDNSServer, responder: Responder
) -> None:
    """draft-ietf-acme-dns-account-label: the TXT record under the account's own label."""
    from acme_server.va.dns01 import account_label

    async with running_acme(
        db_url,
        tmp_path / "acct",
        dns_address=dns.address,
        http01_port=responder.port,
        dns_account_01=True,
    ) as acme:
        client = await acme.client()
        await client.register()
        assert client.account_url
        reply = await client.new_order(["*.label.example.test"])
        order_url = reply.headers["Location"]
        authz_url = reply.json()["authorizations"][0]
        authz = (await client.get(authz_url)).json()
        chall = next(c for c in authz["challenges"] if c["type"] == "dns-account-01")
        key_auth = thumbprint_key_authorization(chall["token"], client.key)
        value = base64.urlsafe_b64encode(hashlib.sha256(key_auth.encode()).digest())
        label = account_label(client.account_url)
        # The plain dns-01 name holds a wrong value: only the account's own label counts.
        dns.set_txt("_acme-challenge.label.example.test", ["wrong"])
        dns.set_txt(f"{label}._acme-challenge.label.example.test", [value.decode().rstrip("=")])
        await client.post(chall["url"], {})
        assert (await client.poll(authz_url, {"valid", "invalid"}))["status"] == "valid"
        assert (await client.poll(order_url, {"ready", "invalid"}))["status"] == "ready"


async def test_finalize_orphaned_by_a_dead_instance_is_taken_over(
    acme: RunningAcme, client: AcmeTestClient, responder: Responder, dns: TestDNSServer
) -> None:
    """An order left "processing" (its instance died before "valid") is finalized by the
    next finalize once it is stale; a fresh "processing" one is not touched."""
    import datetime as dt

    from sqlalchemy import update

    from storage.models import Order

    reply = await client.new_order(["orphan.example.test"])
    order_url = reply.headers["Location"]
    order_id = order_url.rsplit("/", 1)[1]
    await solve(client, reply.json(), responder, dns)
    order = await client.poll(order_url, {"ready"})
    der, _ = make_csr(["orphan.example.test"])

    async def set_processing(age: dt.timedelta) -> None:
        async with acme.services.sessions.begin() as session:
            await session.execute(
                update(Order)
                .where(Order.id == order_id)
                .values(status="processing", updated_at=dt.datetime.now(dt.UTC) - age)
            )

    await set_processing(dt.timedelta(seconds=1))
    busy = await client.post(order["finalize"], {"csr": csr_field(der)})
    assert busy.problem_type == "orderNotReady"
    await set_processing(dt.timedelta(minutes=5))
    taken = await client.post(order["finalize"], {"csr": csr_field(der)})
    assert taken.status == 200, taken.body
    assert (await client.poll(order_url, {"valid"}))["certificate"]
