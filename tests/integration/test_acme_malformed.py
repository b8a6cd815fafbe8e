"""Malformed ACME requests: each gets its exact error type, a fresh nonce, and never a 500."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.acme_app import RunningAcme, running_acme
from tests.support.acme_client import AcmeTestClient, Reply, csr_field, make_csr
from tests.support.jws_client import sign_jws


@pytest.fixture
async def acme(db_url: str, tmp_path: Path) -> AsyncIterator[RunningAcme]:
    async with running_acme(db_url, tmp_path / "data") as running:
        yield running


@pytest.fixture
async def client(acme: RunningAcme) -> AcmeTestClient:
    c = await acme.client()
    reply = await c.register(contact=["mailto:ops@example.com"])
    assert reply.status == 201, reply.body
    return c


def assert_problem(reply: Reply, acme_type: str, status: int | None = None) -> None:
    assert reply.status != 500
    assert reply.problem_type == acme_type, (reply.status, reply.body)
    if status is not None:
        assert reply.status == status
    assert reply.headers.get("Replay-Nonce"), "every error carries a fresh nonce"
    assert any('rel="index"' in link for link in reply.links)
    body = reply.json()
    assert body["status"] == reply.status
    assert "Traceback" not in reply.body.decode()


async def test_missing_nonce(client: AcmeTestClient) -> None:
    url = client.directory["newOrder"]
    body = sign_jws(client.key, {"identifiers": []}, url=url, nonce=None, kid=client.account_url)
    assert_problem(await client.raw_post(url, body), "badNonce", 400)


async def test_reused_nonce(client: AcmeTestClient) -> None:
    nonce = await client.nonce()
    url = client.account_url
    assert url
    first = await client.post(url, None, nonce=nonce)
    assert first.status == 200
    assert_problem(await client.post(url, None, nonce=nonce), "badNonce", 400)


async def test_foreign_nonce(client: AcmeTestClient) -> None:
    assert client.account_url
    # Well-formed but never issued by this server.
    reply = await client.post(client.account_url, None, nonce="AAAAAAAAAAAAAAAAAAAAAA")
    assert_problem(reply, "badNonce", 400)
    assert_problem(await client.post(client.account_url, None, nonce="not a nonce!"), "badNonce")


async def test_wrong_url(client: AcmeTestClient) -> None:
    assert client.account_url
    reply = await client.post(client.account_url, None, url=client.directory["newOrder"])
    assert_problem(reply, "unauthorized", 403)


@pytest.mark.parametrize("alg", ["none", "HS256", "ES384", "RS256", "XX999"])
async def test_bad_alg(client: AcmeTestClient, alg: str) -> None:
    assert client.account_url
    reply = await client.post(client.account_url, None, alg=alg)
    assert_problem(reply, "badSignatureAlgorithm", 400)
    assert "ES256" in reply.json()["algorithms"]


async def test_both_jwk_and_kid(client: AcmeTestClient) -> None:
    assert client.account_url
    reply = await client.post(client.account_url, None, jwk=True)
    assert_problem(reply, "malformed", 400)


async def test_jwk_where_kid_required(client: AcmeTestClient) -> None:
    reply = await client.post(
        client.directory["newOrder"],
        {"identifiers": [{"type": "dns", "value": "a.example.test"}]},
        use_jwk=True,
    )
    assert_problem(reply, "malformed", 400)


async def test_unknown_account(acme: RunningAcme) -> None:
    c = await acme.client()
    c.account_url = f"{acme.base_url}/acme/account/doesnotexist"
    assert_problem(await c.new_order(["a.example.test"]), "accountDoesNotExist", 400)


async def test_deactivated_account(client: AcmeTestClient) -> None:
    assert client.account_url
    reply = await client.post(client.account_url, {"status": "deactivated"})
    assert reply.status == 200 and reply.json()["status"] == "deactivated"
    assert_problem(await client.new_order(["a.example.test"]), "unauthorized", 403)


async def test_wrong_content_type(client: AcmeTestClient) -> None:
    assert client.account_url
    body = sign_jws(
        client.key, None, url=client.account_url, nonce=await client.nonce(), kid=client.account_url
    )
    reply = await client.raw_post(client.account_url, body, content_type="application/json")
    assert_problem(reply, "malformed", 415)


async def test_oversized_body(client: AcmeTestClient) -> None:
    url = client.directory["newOrder"]
    big = {"identifiers": [{"type": "dns", "value": "a.example.test"}], "pad": "x" * 200_000}
    reply = await client.post(url, big)
    assert_problem(reply, "malformed", 413)


async def test_garbage_body(client: AcmeTestClient) -> None:
    url = client.directory["newOrder"]
    for body in (b"", b"{", b"[]", json.dumps({"protected": 1}).encode(), b"\xff\xfe"):
        assert_problem(await client.raw_post(url, body), "malformed", 400)


async def test_general_serialization(client: AcmeTestClient) -> None:
    assert client.account_url
    reply = await client.post(client.account_url, None, serialization="general")
    assert_problem(reply, "malformed", 400)


async def test_bad_signature(client: AcmeTestClient) -> None:
    assert client.account_url
    other = ec.generate_private_key(ec.SECP256R1())
    reply = await client.post(client.account_url, None, key=other)
    assert_problem(reply, "malformed", 400)


async def _ready_order(
    acme: RunningAcme, client: AcmeTestClient, names: list[str]
) -> dict[str, str]:
    """An order whose authorizations are made valid directly in the database (the challenge
    flow itself is covered by test_acme_flow)."""
    from sqlalchemy import update

    from storage.models import Authorization

    reply = await client.new_order(names)
    assert reply.status == 201, reply.body
    order = reply.json()
    order["url"] = reply.headers["Location"]
    ids = [u.rsplit("/", 1)[1] for u in order["authorizations"]]
    async with acme.services.sessions.begin() as session:
        await session.execute(
            update(Authorization).where(Authorization.id.in_(ids)).values(status="valid")
        )
    return dict(order)


async def test_csr_with_name_not_in_order(acme: RunningAcme, client: AcmeTestClient) -> None:
    order = await _ready_order(acme, client, ["a.example.test"])
    der, _ = make_csr(["a.example.test", "evil.example.test"])
    reply = await client.post(order["finalize"], {"csr": csr_field(der)})
    assert_problem(reply, "badCSR", 400)
    # The order is still ready: a bad CSR does not burn it.
    assert (await client.get(order["url"])).json()["status"] == "ready"


async def test_csr_signed_by_account_key(acme: RunningAcme, client: AcmeTestClient) -> None:
    order = await _ready_order(acme, client, ["a.example.test"])
    der, _ = make_csr(["a.example.test"], key=client.key)
    reply = await client.post(order["finalize"], {"csr": csr_field(der)})
    assert_problem(reply, "badCSR", 400)


async def test_csr_not_base64(acme: RunningAcme, client: AcmeTestClient) -> None:
    order = await _ready_order(acme, client, ["a.example.test"])
    for bad in ("!!!", csr_field(b"\x30\x03\x02\x01\x00")):
        reply = await client.post(order["finalize"], {"csr": bad})
        assert reply.problem_type in ("malformed", "badCSR")
        assert reply.status == 400


async def test_finalize_before_ready(client: AcmeTestClient) -> None:
    reply = await client.new_order(["a.example.test"])
    order = reply.json()
    der, _ = make_csr(["a.example.test"])
    assert_problem(
        await client.post(order["finalize"], {"csr": csr_field(der)}), "orderNotReady", 403
    )


async def test_bad_identifiers(client: AcmeTestClient) -> None:
    reply = await client.post(
        client.directory["newOrder"],
        {
            "identifiers": [
                {"type": "dns", "value": "-bad-.example.test"},
                {"type": "email", "value": "a@b.c"},
            ]
        },
    )
    assert reply.problem_type == "compound"
    subs = reply.json()["subproblems"]
    assert {s["type"].rsplit(":", 1)[1] for s in subs} == {
        "rejectedIdentifier",
        "unsupportedIdentifier",
    }
    assert {s["identifier"]["value"] for s in subs} == {"-bad-.example.test", "a@b.c"}


async def test_unknown_resource(client: AcmeTestClient, acme: RunningAcme) -> None:
    reply = await client.get(f"{acme.base_url}/acme/order/nope")
    assert_problem(reply, "malformed", 404)
    async with acme.http.get(f"{acme.base_url}/acme/nothing-here") as resp:
        assert resp.status == 404
        assert resp.headers["Content-Type"].startswith("application/problem+json")
        assert resp.headers.get("Replay-Nonce")
