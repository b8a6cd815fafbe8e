"""One request pipeline for every ACME POST (RFC 8555 §6.2 to §6.5).

The checks run in this order, each a small function: content type, body size, JWS parse, url,
nonce, key lookup (jwk or kid), signature. Handlers get a VerifiedRequest and never repeat them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from josepy.jwk import JWK
from sqlalchemy import select

from acme_server.context import AcmeContext, ctx
from acme_server.errors import AcmeError, malformed
from acme_server.jws import ParsedJWS, jwk_from_json, parse_jws, verify_jws
from storage.models import Account

JOSE_CONTENT_TYPE = "application/jose+json"


@dataclass(frozen=True)
class VerifiedRequest:
    jws: ParsedJWS
    key: JWK
    account: Account | None  # set when the request was signed with "kid"

    def payload(self) -> dict[str, Any]:
        return self.jws.payload_json()

    def require_account(self) -> Account:
        if self.account is None:  # pragma: no cover - the pipeline enforces kid where needed
            raise malformed("this resource requires a kid")
        return self.account


def check_content_type(request: web.Request) -> None:
    # RFC 8555 §6.2: anything but application/jose+json is 415.
    if request.content_type != JOSE_CONTENT_TYPE:
        raise AcmeError("malformed", f"Content-Type must be {JOSE_CONTENT_TYPE}", status=415)


async def read_limited_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise AcmeError("malformed", f"request body larger than {limit} bytes", status=413)
    body = await request.content.read(limit + 1)
    if len(body) > limit:
        raise AcmeError("malformed", f"request body larger than {limit} bytes", status=413)
    return body


def check_url(context: AcmeContext, request: web.Request, jws: ParsedJWS) -> None:
    # RFC 8555 §6.4: the "url" header must be the URL the request was sent to.
    expected = context.urls.base + request.path_qs
    if jws.url != expected:
        raise AcmeError("unauthorized", f"JWS url {jws.url!r} does not match the request URL")


async def check_nonce_and_load_account(context: AcmeContext, jws: ParsedJWS) -> Account | None:
    """Use up the JWS nonce (RFC 8555 §6.5); for a "kid", also load that account (None when
    there is none). One transaction does both, one database round trip fewer per request;
    nothing in it fails after the DELETE, so the nonce is used up whatever the lookup finds."""
    nonce = jws.nonce
    account_id = context.urls.account_id_from_kid(jws.kid) if jws.kid is not None else None
    account = None
    async with context.sessions.begin() as session:
        consumed = nonce is not None and await context.nonces.consume_in(session, nonce)
        if consumed and account_id is not None:
            account = await session.get(Account, account_id)
    if not consumed:
        raise AcmeError("badNonce", "JWS has an invalid, used or expired anti-replay nonce")
    return account


def require_valid_account(account: Account | None, kid: str) -> Account:
    if account is None:
        raise AcmeError("accountDoesNotExist", f"no account at {kid}")
    if account.status != "valid":
        raise AcmeError("unauthorized", f"account is {account.status}")
    return account


async def verify_post(
    request: web.Request, *, jwk_allowed: bool = False, kid_allowed: bool = True
) -> VerifiedRequest:
    """Run the whole pipeline; raise AcmeError at the first failing check."""
    context = ctx(request)
    check_content_type(request)
    body = await read_limited_body(request, context.config.max_body_bytes)
    jws = parse_jws(body)
    check_url(context, request, jws)
    loaded = await check_nonce_and_load_account(context, jws)
    account: Account | None = None
    if jws.jwk is not None:
        # RFC 8555 §6.2: "jwk" only for newAccount and revokeCert by certificate key.
        if not jwk_allowed:
            raise malformed("this resource requires a kid, not a jwk")
        key = jws.jwk
    else:
        if not kid_allowed:
            raise malformed("this resource requires a jwk, not a kid")
        assert jws.kid is not None
        account = require_valid_account(loaded, jws.kid)
        key = jwk_from_json(account.jwk)
    verify_jws(jws, key)
    return VerifiedRequest(jws=jws, key=key, account=account)


def require_post_as_get(verified: VerifiedRequest) -> None:
    if not verified.jws.is_post_as_get:
        raise malformed("POST-as-GET requests must have an empty payload")


async def first_account_with_key(context: AcmeContext, thumbprint: str) -> Account | None:
    async with context.sessions() as session:
        result = await session.execute(select(Account).where(Account.key_thumbprint == thumbprint))
        return result.scalar_one_or_none()
