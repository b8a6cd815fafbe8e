"""GET /crl/{issuer_id}.crl and /crl/{issuer_id}/{shard}.crl: DER CRLs (RFC 5280 §5,
media type application/pkix-crl from RFC 2585 §4.2)."""

from __future__ import annotations

import structlog
from aiohttp import web

from ca.errors import CAError
from revocation_server.caching import http_date, respond, seconds_until
from revocation_server.context import CLOCK, CRLS

log = structlog.get_logger("certyard.revocation")

CRL_CONTENT_TYPE = "application/pkix-crl"


def _not_found(what: str) -> web.Response:
    return web.Response(status=404, text=f"{what} not found\n", content_type="text/plain")


async def get_crl(request: web.Request) -> web.Response:
    """One CRL. The unsharded URL exists only with one shard, the sharded one only with more,
    so that each CRL is published under exactly the URL its IssuingDistributionPoint names."""
    crls = request.app[CRLS]
    issuer_id = request.match_info["issuer_id"]
    shard_text = request.match_info.get("shard")
    if (shard_text is None) != (crls.shards == 1):
        return _not_found("CRL")
    shard = 0 if shard_text is None else int(shard_text)  # the route allows digits only
    try:
        crl = await crls.current(issuer_id, shard)
    except CAError as exc:
        if exc.kind == "not_found":
            return _not_found("CRL")
        log.error("crl_failed", issuer_id=issuer_id, shard=shard, kind=exc.kind, error=str(exc))
        if exc.kind == "unavailable":  # the key store (HSM) is unreachable for now
            return web.Response(status=503, text="CRL temporarily unavailable\n")
        return web.Response(status=500, text="internal server error\n")
    now = request.app[CLOCK]()
    headers = {
        # Our own cache rebuilds the CRL at fresh_until; HTTP caches may keep it as long.
        "Cache-Control": f"public, max-age={seconds_until(crl.fresh_until, now)}",
        "Last-Modified": http_date(crl.this_update),
        "Expires": http_date(crl.next_update),
    }
    return respond(request, crl.der, CRL_CONTENT_TYPE, headers)
