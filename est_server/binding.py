"""Proof of possession bound to the TLS session (RFC 7030 §3.5).

The client puts the base64 of the TLS session's tls-unique value (RFC 5929 §3: the first
Finished message of the latest handshake) into the CSR's challengePassword attribute; the CSR's
signature then ties its key to this very TLS session, so a CSR cannot be relayed through
another one.

TLS 1.3 has no tls-unique (RFC 9266 §1). Its replacement, the tls-exporter binding, needs the
exported keying material of the server's side of the connection, and Python's ssl module (which
aiohttp serves TLS with) has no keying-material exporter. A label that requires the binding
therefore answers 401 on a TLS 1.3 connection with a message saying to connect with TLS 1.2.
"""

from __future__ import annotations

import base64
import hmac
import ssl

from aiohttp import web
from cryptography import x509

from est_server.errors import EstError

# PKCS #9 (RFC 2985 §5.4.1) challengePassword.
CHALLENGE_PASSWORD = x509.ObjectIdentifier("1.2.840.113549.1.9.7")


def _refused(text: str, realm: str) -> EstError:
    return EstError(
        401,
        f"{text} (RFC 7030 §3.5 channel binding)",
        {"WWW-Authenticate": f'Basic realm="{realm}"'},
    )


def tls_unique(request: web.Request, realm: str) -> bytes:
    """The base64 of this connection's tls-unique value, as the client must send it."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        raise _refused("this label requires TLS", realm)
    if ssl_object.version() not in ("TLSv1.2",):
        raise _refused(
            "this label binds the request to the TLS session with tls-unique, which needs "
            "TLS 1.2: connect with TLS 1.2",
            realm,
        )
    value = ssl_object.get_channel_binding("tls-unique")
    if not value:
        raise _refused("the TLS session has no tls-unique value", realm)
    return base64.b64encode(value)


def check_channel_binding(
    request: web.Request, csr: x509.CertificateSigningRequest, realm: str
) -> None:
    """401 unless the CSR's challengePassword is this TLS session's tls-unique (base64)."""
    expected = tls_unique(request, realm)
    try:
        sent = csr.attributes.get_attribute_for_oid(CHALLENGE_PASSWORD).value
    except x509.AttributeNotFound:
        raise _refused(
            "the request has no challengePassword with the tls-unique value", realm
        ) from None
    except ValueError:
        raise EstError(400, "the request's attributes cannot be parsed") from None
    if not hmac.compare_digest(sent.strip(), expected):
        raise _refused("the request's challengePassword is not this TLS session's", realm)
