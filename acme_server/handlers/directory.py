"""Directory and newNonce (RFC 8555 §7.1.1, §7.2)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from acme_server.context import ctx


async def get_directory(request: web.Request) -> web.Response:
    context = ctx(request)
    urls = context.urls
    meta: dict[str, Any] = {"externalAccountRequired": context.config.require_eab}
    if context.config.terms_of_service:
        meta["termsOfService"] = context.config.terms_of_service
    if context.config.website:
        meta["website"] = context.config.website
    if context.config.profiles:
        meta["profiles"] = dict(context.config.profiles)
    if context.config.caa_identities:
        meta["caaIdentities"] = list(context.config.caa_identities)
    return web.json_response(
        {
            "newNonce": urls.new_nonce,
            "newAccount": urls.new_account,
            "newOrder": urls.new_order,
            "revokeCert": urls.revoke_cert,
            "keyChange": urls.key_change,
            "renewalInfo": urls.renewal_info,
            **({"newAuthz": urls.new_authz} if context.config.allow_preauthorization else {}),
            "meta": meta,
        }
    )


async def head_nonce(request: web.Request) -> web.Response:
    # RFC 8555 §7.2: HEAD answers 200, GET 204; the middleware adds Replay-Nonce.
    return web.Response(status=200)


async def get_nonce(request: web.Request) -> web.Response:
    return web.Response(status=204)
