"""POST /ocsp and GET /ocsp/{base64 request} (RFC 6960 Appendix A.1, RFC 5019 §5).

Every answer the responder gives is an OCSPResponse with HTTP 200 - error statuses included
(malformedRequest, unauthorized, internalError; RFC 6960 §2.3). Only HTTP-level problems get HTTP
errors: 413 for a body over 10 KiB, 415 for a POST whose Content-Type is present and not
application/ocsp-request (RFC 6960 A.1.1 requires that type; a missing header is tolerated).
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse

from aiohttp import web
from cryptography.x509 import ocsp

from ca.ocsp import unsuccessful
from revocation_server.caching import http_date, respond, seconds_until
from revocation_server.context import CLOCK, OCSP

REQUEST_CONTENT_TYPE = "application/ocsp-request"
RESPONSE_CONTENT_TYPE = "application/ocsp-response"
# A single-request OCSPRequest is about 100 bytes; 10 KiB leaves room for signed requests.
MAX_REQUEST_BYTES = 10 * 1024
# base64 of MAX_REQUEST_BYTES, percent-encoded at worst (3 characters per octet of base64).
MAX_GET_CHARS = 3 * 4 * (MAX_REQUEST_BYTES // 3 + 1)


def decode_get_request(raw_tail: str) -> bytes | None:
    """The DER request from the path after /ocsp/: "url-encoding of base-64 encoding of the DER"
    (RFC 6960 A.1.1). Tolerates a missing '=' padding and the base64url alphabet; None when it
    is not base64."""
    if len(raw_tail) > MAX_GET_CHARS:
        return None
    text = urllib.parse.unquote(raw_tail)  # not unquote_plus: '+' is base64, not a space
    text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        der = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return der or None


async def post_ocsp(request: web.Request) -> web.Response:
    if "Content-Type" in request.headers and request.content_type != REQUEST_CONTENT_TYPE:
        return web.Response(status=415, text=f"Content-Type must be {REQUEST_CONTENT_TYPE}\n")
    if request.content_length is not None and request.content_length > MAX_REQUEST_BYTES:
        return web.Response(status=413, text="OCSP request too large\n")
    body = await request.read()  # the app's client_max_size also stops chunked bodies
    return _ocsp_response(request, await request.app[OCSP].respond(body))


async def get_ocsp(request: web.Request) -> web.Response:
    # The tail match holds everything after /ocsp/, '/' included (already percent-decoded,
    # which a second unquote leaves alone: base64 has no '%').
    der = decode_get_request(request.match_info["request"])
    if der is None:
        return _ocsp_response(request, unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST))
    return _ocsp_response(request, await request.app[OCSP].respond(der))


def _ocsp_response(request: web.Request, der: bytes) -> web.Response:
    parsed = ocsp.load_der_ocsp_response(der)
    if parsed.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return web.Response(
            body=der,
            content_type=RESPONSE_CONTENT_TYPE,
            headers={"Cache-Control": "no-store"},
        )
    this_update = parsed.this_update_utc
    next_update = parsed.next_update_utc or this_update
    max_age = seconds_until(next_update, request.app[CLOCK]())
    # RFC 5019 §6.2: max-age below nextUpdate, Last-Modified, Expires, ETag; must-revalidate
    # so that no cache serves the response after nextUpdate.
    headers = {
        "Cache-Control": f"max-age={max_age}, public, no-transform, must-revalidate",
        "Last-Modified": http_date(this_update),
        "Expires": http_date(next_update),
    }
    return respond(request, der, RESPONSE_CONTENT_TYPE, headers)
