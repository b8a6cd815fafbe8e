"""Certificate download (RFC 8555 §7.4.2), with alternate chains, and revocation (§7.6)."""

from __future__ import annotations

import base64
import binascii

import structlog
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from acme_server.context import ctx
from acme_server.errors import AcmeError, malformed
from acme_server.jws import jwk_public_key_der
from acme_server.messages import RevokePayload, parse_payload
from acme_server.pipeline import require_post_as_get, verify_post
from ca.errors import CAError
from ca.serials import serial_to_hex
from storage.models import Authorization, Certificate

log = structlog.get_logger("certyard.acme")

PEM_CHAIN = "application/pem-certificate-chain"
# RFC 5280 §5.3.1 reason codes; 7 is unused, and RFC 8555 §7.6 lets servers refuse others.
CA_PROFILES = frozenset({"root-ca", "intermediate-ca", "ocsp-signing"})
REVOCATION_REASONS = {0, 1, 2, 3, 4, 5, 6, 8, 9, 10}


async def _released_certificate(request: web.Request) -> tuple[Certificate, str]:
    """The account's certificate named by the URL (POST-as-GET, RFC 8555 §7.4.2) and its
    default chain."""
    context = ctx(request)
    verified = await verify_post(request)
    require_post_as_get(verified)
    account = verified.require_account()
    async with context.sessions() as session:
        cert = await session.get(Certificate, request.match_info["id"])
    if cert is None or cert.account_id != account.id or cert.chain_pem is None:
        # A record still "signing" was never released: it does not exist for the client.
        raise AcmeError("malformed", "no such certificate", status=404)
    return cert, cert.chain_pem


def _link_alternates(
    request: web.Request, response: web.Response, cert: Certificate, current: int
) -> None:
    """RFC 8555 §7.4.2: one Link rel="alternate" per other chain of the same leaf; chain 0 is
    the default download, n >= 1 the issuer's n-th alternate chain."""
    context = ctx(request)
    count = len(context.alternate_chains.get(cert.issuer_id, ()))
    base = context.urls.certificate(cert.id)
    for n in range(count + 1):
        if n != current:
            url = base if n == 0 else f"{base}/alt/{n}"
            response.headers.add("Link", f'<{url}>;rel="alternate"')


async def download(request: web.Request) -> web.Response:
    context = ctx(request)
    cert, chain_pem = await _released_certificate(request)
    response = web.Response(body=chain_pem.encode(), content_type=PEM_CHAIN)
    response.headers.add("Link", f'<{context.urls.issuer(cert.issuer_id)}>;rel="up"')
    _link_alternates(request, response, cert, 0)
    return response


async def download_alternate(request: web.Request) -> web.Response:
    """``/cert/{id}/alt/{n}``: the same leaf followed by the issuer's n-th alternate chain."""
    context = ctx(request)
    cert, _ = await _released_certificate(request)
    alternates = context.alternate_chains.get(cert.issuer_id, ())
    number = request.match_info["n"]
    if not number.isdigit() or not 1 <= int(number) <= len(alternates) or cert.der is None:
        raise AcmeError("malformed", "no such alternate chain", status=404)
    chain = alternates[int(number) - 1]
    leaf = x509.load_der_x509_certificate(cert.der).public_bytes(serialization.Encoding.PEM)
    response = web.Response(body=leaf + chain.pem.encode(), content_type=PEM_CHAIN)
    response.headers.add("Link", f'<{context.urls.issuer(chain.id)}>;rel="up"')
    _link_alternates(request, response, cert, int(number))
    return response


async def issuer_certificate(request: web.Request) -> web.Response:
    context = ctx(request)
    pem = context.issuer_pems.get(request.match_info["id"])
    if pem is None:
        raise AcmeError("malformed", "no such issuer", status=404)
    return web.Response(body=pem.encode(), content_type=PEM_CHAIN)


def _decode_certificate(value: str) -> x509.Certificate:
    try:
        der = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        return x509.load_der_x509_certificate(der)
    except (ValueError, binascii.Error):
        raise malformed("certificate is not base64url DER") from None


async def revoke(request: web.Request) -> web.Response:
    context = ctx(request)
    verified = await verify_post(request, jwk_allowed=True)
    payload = parse_payload(RevokePayload, verified.payload())
    reason = 0 if payload.reason is None else payload.reason
    if reason not in REVOCATION_REASONS:
        raise AcmeError("badRevocationReason", f"revocation reason {reason} is not allowed")
    target = _decode_certificate(payload.certificate)
    der = target.public_bytes(serialization.Encoding.DER)
    async with context.sessions() as session:
        result = await session.execute(
            select(Certificate).where(Certificate.serial == serial_to_hex(target.serial_number))
        )
        cert = result.scalar_one_or_none()
        if cert is None or cert.der != der:
            raise AcmeError("malformed", "certificate was not issued by this CA", status=404)
        if cert.profile in CA_PROFILES or not cert.names:
            # CA and responder certificates are revoked by the operator (certyard ca revoke),
            # never through ACME; a certificate without names has no identifiers to prove.
            raise AcmeError("unauthorized", "this certificate cannot be revoked through ACME")
        if verified.account is None:
            # Signed with the certificate's own key (§7.6): the JWK must be that key.
            spki = target.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            if jwk_public_key_der(verified.key) != spki:
                raise AcmeError("unauthorized", "the JWS key is not the certificate's key")
        elif cert.account_id != verified.account.id and not await _holds_authorizations(
            session, verified.account.id, cert.names
        ):
            raise AcmeError(
                "unauthorized",
                "the account neither ordered this certificate nor controls its names",
            )
    if cert.status == "revoked":
        raise AcmeError("alreadyRevoked", "certificate is already revoked")
    try:
        await context.issuer.revoke(cert.id, reason)
    except CAError as exc:
        if exc.kind == "conflict":
            raise AcmeError("alreadyRevoked", "certificate is already revoked") from None
        if exc.kind == "malformed":
            raise AcmeError("badRevocationReason", exc.detail) from None
        raise
    log.info("certificate_revoked", certificate=cert.id, serial=cert.serial, reason=reason)
    return web.Response(status=200)


async def _holds_authorizations(session: AsyncSession, account_id: str, names: list[str]) -> bool:
    """RFC 8555 §7.6: an account with valid authorizations for every name may revoke."""
    for name in names:
        wildcard = name.startswith("*.")
        value = name[2:] if wildcard else name
        result = await session.execute(
            select(Authorization.id)
            .where(
                Authorization.account_id == account_id,
                Authorization.identifier_value == value,
                Authorization.status == "valid",
            )
            .limit(1)
        )
        if result.first() is None:
            return False
    return True
