"""A small async ACME client for in-process tests, built on the JWS signer in jws_client.

It speaks to a real certyard ACME application over HTTP and keeps nothing but the account key,
the account URL and the last nonce; each call returns the raw aiohttp response data so tests can
assert on status codes, headers and problem documents.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.jws_client import PrivateKey, b64, public_jwk, sign_jws

JOSE = "application/jose+json"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    links: list[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def problem_type(self) -> str | None:
        if not self.headers.get("Content-Type", "").startswith("application/problem+json"):
            return None
        return str(self.json()["type"]).removeprefix("urn:ietf:params:acme:error:")


@dataclass
class AcmeTestClient:
    session: aiohttp.ClientSession
    directory_url: str
    key: PrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    account_url: str | None = None
    directory: dict[str, Any] = field(default_factory=dict)

    async def load_directory(self) -> dict[str, Any]:
        async with self.session.get(self.directory_url) as resp:
            self.directory = await resp.json()
        return self.directory

    async def nonce(self) -> str:
        async with self.session.head(self.directory["newNonce"]) as resp:
            return resp.headers["Replay-Nonce"]

    async def raw_post(self, url: str, body: bytes, content_type: str = JOSE) -> Reply:
        async with self.session.post(
            url, data=body, headers={"Content-Type": content_type}
        ) as resp:
            data = await resp.read()
            return Reply(resp.status, dict(resp.headers), resp.headers.getall("Link", []), data)

    async def post(
        self, target: str, payload: dict[str, Any] | None, *, use_jwk: bool = False, **kwargs: Any
    ) -> Reply:
        """Sign and send; ``kwargs`` go to sign_jws (``url=`` signs another URL than target)."""
        kid = None if use_jwk else self.account_url
        nonce = kwargs.pop("nonce", None) or await self.nonce()
        key = kwargs.pop("key", self.key)
        signed_url = kwargs.pop("url", target)
        body = sign_jws(key, payload, url=signed_url, nonce=nonce, kid=kid, **kwargs)
        return await self.raw_post(target, body)

    async def register(self, **payload: Any) -> Reply:
        payload.setdefault("termsOfServiceAgreed", True)
        reply = await self.post(self.directory["newAccount"], payload, use_jwk=True)
        if reply.status in (200, 201):
            self.account_url = reply.headers["Location"]
        return reply

    async def new_order(self, names: list[str]) -> Reply:
        return await self.post(
            self.directory["newOrder"],
            {"identifiers": [{"type": "dns", "value": n} for n in names]},
        )

    async def get(self, url: str) -> Reply:
        return await self.post(url, None)

    async def poll(self, url: str, until: set[str], deadline: float = 20.0) -> dict[str, Any]:
        end = time.monotonic() + deadline
        while True:
            body = (await self.get(url)).json()
            if body.get("status") in until:
                return dict(body)
            if time.monotonic() > end:
                raise AssertionError(f"{url} stayed {body.get('status')}: {body}")
            await asyncio.sleep(0.1)


def make_csr(names: list[str], key: PrivateKey | None = None) -> tuple[bytes, PrivateKey]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return csr.public_bytes(serialization.Encoding.DER), key


def csr_field(der: bytes) -> str:
    return b64(der)


def thumbprint_key_authorization(token: str, key: PrivateKey) -> str:
    import hashlib

    jwk = public_jwk(key)
    members = {k: jwk[k] for k in sorted(("crv", "kty", "x", "y", "e", "n")) if k in jwk}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode())
    return f"{token}.{base64.urlsafe_b64encode(digest.digest()).decode().rstrip('=')}"
