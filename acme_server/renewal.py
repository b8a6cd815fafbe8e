"""Renewal information (RFC 9773): the renewalInfo resource and ``replaces`` in newOrder."""

from __future__ import annotations

from aiohttp import web
from cryptography import x509
from sqlalchemy import select

from acme_server.ari import CertId, Window, default_window, parse_cert_id, revoked_window
from acme_server.context import AcmeContext, ctx
from acme_server.errors import AcmeError, malformed
from acme_server.identifiers import Identifier
from acme_server.views import rfc3339
from ca.serials import serial_to_hex
from storage.models import Certificate, Order


async def _find(context: AcmeContext, cert_id: CertId) -> Certificate | None:
    """The certificate a certID names: its serial, and its AKI equal to the certID's."""
    if cert_id.serial <= 0:
        return None
    async with context.sessions() as session:
        result = await session.execute(
            select(Certificate).where(Certificate.serial == serial_to_hex(cert_id.serial))
        )
        cert = result.scalar_one_or_none()
    if cert is None or cert.der is None:
        return None
    parsed = x509.load_der_x509_certificate(cert.der)
    try:
        aki = parsed.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return None
    return cert if aki.key_identifier == cert_id.key_identifier else None


async def get_renewal_info(request: web.Request) -> web.Response:
    """GET {renewalInfo}/{certID}: no authentication (RFC 9773 §4.1)."""
    context = ctx(request)
    cert_id = parse_cert_id(request.match_info["cert_id"])
    cert = await _find(context, cert_id)
    if cert is None:
        raise AcmeError("malformed", "no certificate with this identifier", status=404)
    now = context.clock()
    if cert.status == "revoked":
        window = revoked_window(now)
    elif cert.ari_window_start is not None and cert.ari_window_end is not None:
        window = Window(cert.ari_window_start, cert.ari_window_end)
    else:
        window = default_window(cert.not_before, cert.not_after, cert.serial)
    response = web.json_response(
        {"suggestedWindow": {"start": rfc3339(window.start), "end": rfc3339(window.end)}}
    )
    response.headers["Retry-After"] = str(int(context.config.ari_retry_after.total_seconds()))
    return response


async def replaced_certificate(
    context: AcmeContext, account_id: str, text: str, identifiers: list[Identifier]
) -> str:
    """Check newOrder's ``replaces`` (RFC 9773 §5) and return the canonical certID to record."""
    cert_id = parse_cert_id(text)
    cert = await _find(context, cert_id)
    if cert is None:
        raise malformed("replaces: no certificate of this CA has that identifier")
    if cert.account_id != account_id:
        raise AcmeError("unauthorized", "replaces: the certificate belongs to another account")
    if not set(cert.names) & {i.value for i in identifiers}:
        raise malformed("replaces: the order shares no identifier with that certificate")
    canonical = cert_id.encode()
    async with context.sessions() as session:
        result = await session.execute(
            select(Order.id).where(Order.replaces == canonical, Order.status != "invalid").limit(1)
        )
        if result.first() is not None:
            raise AcmeError(
                "alreadyReplaced", "replaces: that certificate is already replaced by another order"
            )
    return canonical
