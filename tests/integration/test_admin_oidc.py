"""OIDC bearer tokens on the admin API: a test identity provider (keys made here, its JWKS
served by aiohttp on loopback) signs JWTs; certyard verifies them against that JWKS."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.support.admin_app import AdminHarness, admin_harness
from tests.support.server import free_port

ISSUER = "https://idp.example.test"
AUDIENCE = "certyard-admin"


@dataclass
class Idp:
    url: str
    keys: dict[str, Any] = field(default_factory=dict)  # kid -> private key
    published: set[str] = field(default_factory=set)
    fetches: int = 0

    def jwks(self) -> dict[str, Any]:
        out = []
        for kid in sorted(self.published):
            key = self.keys[kid]
            if isinstance(key, rsa.RSAPrivateKey):
                jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            else:
                jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
            out.append({**jwk, "kid": kid, "use": "sig"})
        return {"keys": out}

    def token(self, kid: str, *, alg: str | None = None, **claims: Any) -> str:
        key = self.keys[kid]
        alg = alg or ("RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256")
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300}
        payload.update(claims)
        return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture
async def idp() -> AsyncIterator[Idp]:
    port = free_port()
    provider = Idp(url=f"http://127.0.0.1:{port}/jwks")
    provider.keys = {
        "rsa-1": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec-1": ec.generate_private_key(ec.SECP256R1()),
        "ec-2": ec.generate_private_key(ec.SECP256R1()),
        "rogue": ec.generate_private_key(ec.SECP256R1()),
    }
    provider.published = {"rsa-1", "ec-1"}

    async def jwks(_request: web.Request) -> web.Response:
        provider.fetches += 1
        return web.json_response(provider.jwks())

    app = web.Application()
    app.router.add_get("/jwks", jwks)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield provider
    finally:
        await runner.cleanup()


@pytest.fixture
async def api(tmp_path: Path, idp: Idp) -> AsyncIterator[AdminHarness]:
    oidc = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks_url": idp.url,
        "algorithms": ["RS256", "ES256"],
        "role_claim": "groups",
        "role_map": {"pki-admins": "admin", "pki-readers": "viewer", "team-a-ops": "operator"},
        "namespace_claim": "team",
        "jwks_refresh_min_seconds": 0,
    }
    async with admin_harness(tmp_path, admin={"oidc": oidc}) as harness:
        yield harness


async def test_valid_tokens_map_roles(api: AdminHarness, idp: Idp) -> None:
    admin = idp.token("rsa-1", groups=["staff", "pki-admins"], team="*")
    status, me, _ = await api.call("GET", "/api/v1/whoami", admin)
    assert status == 200, me
    assert me["actor"] == "oidc:alice" and me["role"] == "admin" and me["namespace"] is None
    ops = idp.token("ec-1", sub="bob", groups="team-a-ops", team="team-a")
    status, me, _ = await api.call("GET", "/api/v1/whoami", ops)
    assert (me["role"], me["namespace"]) == ("operator", "team-a")
    # The operator may not manage tokens: 403, audited under its OIDC identity.
    status, _, _ = await api.call(
        "POST", "/api/v1/tokens", ops, json={"name": "x", "role": "viewer"}
    )
    assert status == 403
    assert [(e.actor, e.outcome) for e in api.recorder.events] == [("oidc:bob", "denied")]
    assert idp.fetches == 1  # the JWKS is cached


@pytest.mark.parametrize(
    ("case", "make"),
    [
        (
            "wrong audience",
            lambda idp: idp.token("rsa-1", aud="someone-else", groups="pki-admins", team="*"),
        ),
        (
            "expired",
            lambda idp: idp.token(
                "rsa-1", exp=int(time.time()) - 3600, groups="pki-admins", team="*"
            ),
        ),
        ("unknown key", lambda idp: idp.token("rogue", groups="pki-admins", team="*")),
        (
            "wrong issuer",
            lambda idp: idp.token("ec-1", iss="https://evil.test", groups="pki-admins", team="*"),
        ),
        ("no known role", lambda idp: idp.token("ec-1", groups=["staff"], team="*")),
        ("no namespace claim", lambda idp: idp.token("ec-1", groups=["pki-admins"])),
        ("HS256 with the public key as secret", lambda idp: _hs256(idp)),
        ("signed by another key under a known kid", lambda idp: _forged(idp)),
    ],
)
async def test_bad_tokens_are_401(api: AdminHarness, idp: Idp, case: str, make: Any) -> None:
    status, _, response = await api.call("GET", "/api/v1/whoami", make(idp))
    assert status == 401, case
    assert response.content_type == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="certyard-admin"')
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def _hs256(idp: Idp) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "m", "exp": now + 60, "groups": "pki-admins"}
    return jwt.encode(
        payload, "not-a-key-of-the-idp-at-all-32b!", algorithm="HS256", headers={"kid": "rsa-1"}
    )


def _forged(idp: Idp) -> str:
    token = idp.token("rogue", groups="pki-admins", team="*")
    _, payload, signature = token.split(".")
    honest = idp.token("ec-1", groups="pki-admins", team="*").split(".")[0]
    return ".".join([honest, payload, signature])


async def test_key_rotation_refetches_the_jwks(api: AdminHarness, idp: Idp) -> None:
    assert (
        await api.call("GET", "/api/v1/whoami", idp.token("ec-1", groups="pki-readers", team="*"))
    )[0] == 200
    before = idp.fetches
    idp.published.add("ec-2")  # the provider rotates in a new key
    status, me, _ = await api.call(
        "GET", "/api/v1/whoami", idp.token("ec-2", groups="pki-readers", team="*")
    )
    assert status == 200 and me["role"] == "viewer"
    assert idp.fetches == before + 1
