"""External Account Binding (RFC 8555 §7.3.4) with per-key policy, in process."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from acme_server.eab import name_allowed
from storage.models import EabKey
from tests.support.acme_app import RunningAcme, running_acme
from tests.support.acme_client import AcmeTestClient
from tests.support.jws_client import b64, public_jwk


@pytest.fixture
async def acme(db_url: str, tmp_path: Path) -> AsyncIterator[RunningAcme]:
    async with running_acme(db_url, tmp_path / "data", require_eab=True) as running:
        yield running


async def add_key(acme: RunningAcme, **policy: Any) -> tuple[str, bytes]:
    kid, key = f"kid-{len(policy)}-{dt.datetime.now().timestamp()}", b"k" * 32
    async with acme.services.sessions.begin() as session:
        session.add(
            EabKey(
                kid=kid,
                hmac_key=key,
                created_at=dt.datetime.now(dt.UTC),
                expires_at=policy.get("expires_at"),
                revoked_at=None,
                account_id=None,
                allowed_domains=policy.get("domains", []),
                allowed_profiles=policy.get("profiles", []),
                max_validity_days=policy.get("max_days"),
                description="",
            )
        )
    return kid, key


def binding(
    client: AcmeTestClient,
    kid: str,
    key: bytes,
    *,
    alg: str = "HS256",
    url: str | None = None,
    jwk: dict[str, Any] | None = None,
) -> dict[str, str]:
    protected = b64(
        json.dumps({"alg": alg, "kid": kid, "url": url or client.directory["newAccount"]}).encode()
    )
    payload = b64(json.dumps(jwk or public_jwk(client.key)).encode())
    mac = hmac.new(key, f"{protected}.{payload}".encode(), hashlib.sha256).digest()
    return {"protected": protected, "payload": payload, "signature": b64(mac)}


async def test_required_and_bound_once(acme: RunningAcme) -> None:
    client = await acme.client()
    assert client.directory["meta"]["externalAccountRequired"] is True
    missing = await client.register()
    assert missing.problem_type == "externalAccountRequired"
    kid, key = await add_key(acme)
    ok = await client.register(externalAccountBinding=binding(client, kid, key))
    assert ok.status == 201, ok.body
    other = await acme.client()
    reused = await other.register(externalAccountBinding=binding(other, kid, key))
    assert reused.problem_type == "unauthorized"


@pytest.mark.parametrize("fault", ["mac", "url", "jwk", "alg", "kid", "expired"])
async def test_bad_bindings(acme: RunningAcme, fault: str) -> None:
    client = await acme.client()
    expired = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    kid, key = await add_key(acme, expires_at=expired if fault == "expired" else None)
    args: dict[str, Any] = {}
    if fault == "mac":
        key = b"x" * 32
    if fault == "url":
        args["url"] = client.directory["newOrder"]
    if fault == "jwk":
        from cryptography.hazmat.primitives.asymmetric import ec

        args["jwk"] = public_jwk(ec.generate_private_key(ec.SECP256R1()))
    if fault == "kid":
        kid = "nope"
    body = binding(client, kid, key, **args)
    if fault == "alg":
        header = json.loads(base64.urlsafe_b64decode(body["protected"] + "=="))
        header["alg"] = "RS256"
        body["protected"] = b64(json.dumps(header).encode())
    reply = await client.register(externalAccountBinding=body)
    expected = {
        "mac": "unauthorized",
        "url": "malformed",
        "jwk": "malformed",
        "alg": "badSignatureAlgorithm",
        "kid": "unauthorized",
        "expired": "unauthorized",
    }
    assert reply.problem_type == expected[fault], reply.body
    assert reply.status != 500


async def test_policy_limits_domains_and_profiles(acme: RunningAcme) -> None:
    client = await acme.client()
    kid, key = await add_key(
        acme, domains=["*.allowed.test", "exact.test"], profiles=["tls-server"]
    )
    assert (await client.register(externalAccountBinding=binding(client, kid, key))).status == 201
    ok = await client.new_order(["www.allowed.test", "exact.test", "*.allowed.test"])
    assert ok.status == 201, ok.body
    refused = await client.new_order(["www.allowed.test", "evil.test"])
    assert refused.problem_type == "rejectedIdentifier"
    assert [s["identifier"]["value"] for s in refused.json()["subproblems"]] == ["evil.test"]
    profile = await client.post(
        client.directory["newOrder"],
        {"identifiers": [{"type": "dns", "value": "a.allowed.test"}], "profile": "shortlived"},
    )
    assert profile.problem_type == "invalidProfile"


def test_name_patterns() -> None:
    assert name_allowed("a.example.com", ["*.example.com"])
    assert name_allowed("a.b.example.com", ["*.example.com"])
    assert name_allowed("*.example.com", ["*.example.com"])
    assert not name_allowed("example.com", ["*.example.com"])
    assert not name_allowed("badexample.com", ["*.example.com"])
    assert name_allowed("example.com", ["example.com"])
    assert not name_allowed("a.example.com", ["example.com"])
