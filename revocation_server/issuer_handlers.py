"""GET /ca/{issuer_id}.crt: an issuer certificate as DER (RFC 5280 §4.2.2.1 caIssuers,
media type application/pkix-cert from RFC 2585 §4.1), for clients that build chains by AIA."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

ISSUER_CERTS = web.AppKey[Mapping[str, bytes]]("issuer_certs")
CERT_CONTENT_TYPE = "application/pkix-cert"


async def get_issuer(request: web.Request) -> web.Response:
    der = request.app[ISSUER_CERTS].get(request.match_info["issuer_id"])
    if der is None:
        return web.Response(status=404, text="issuer not found\n", content_type="text/plain")
    return web.Response(
        body=der,
        content_type=CERT_CONTENT_TYPE,
        headers={"Cache-Control": "public, max-age=86400"},
    )
