"""The EST operations (RFC 7030 §4): one function each, after :func:`dispatch` has resolved the
label and checked the method."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from aiohttp import web
from cryptography import x509
from sqlalchemy.exc import SQLAlchemyError

from ca.serials import serial_to_hex
from est_server.approval import check_approval, mark_issued
from est_server.auth import (
    check_basic,
    check_client_certificate,
    check_idevid,
    peer_certificate_der,
)
from est_server.binding import check_channel_binding
from est_server.context import EST_CONTEXT, EstContext, EstLabel
from est_server.errors import EstError
from est_server.keygen import (
    SERVER_GENERATED_KEY,
    EncryptionRequest,
    encrypt_key,
    encryption_request,
    generate_for,
    multipart,
    plain_key,
    subject_key_id,
)
from est_server.wire import (
    CERTS_ONLY,
    CSRATTRS,
    PKCS7_MIME,
    PKCS10,
    certs_only,
    common_name,
    decode_base64,
    encode_base64,
    key_chain,
    parse_csr,
    requested_names,
    spki,
)
from storage.models import EstEnrollment

log = structlog.get_logger("certyard.est")

Csr = x509.CertificateSigningRequest
Handler = Callable[[EstContext, EstLabel, web.Request], Awaitable[web.StreamResponse]]


# -- helpers ----------------------------------------------------------------------------------


def _base64_response(der: bytes, content_type: str) -> web.Response:
    # RFC 8951 §3.2: the body is base64; the header says so for RFC 7030 clients that look.
    return web.Response(
        body=encode_base64(der),
        headers={"Content-Type": content_type, "Content-Transfer-Encoding": "base64"},
    )


async def _read_body(context: EstContext, request: web.Request) -> bytes:
    limit = context.max_body_bytes
    too_large = EstError(413, f"the body is larger than {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_csr(context: EstContext, label: EstLabel, request: web.Request) -> Csr:
    csr = parse_csr(decode_base64(await _read_body(context, request)))
    chain = key_chain(csr)
    if label.chain is not None and chain != label.chain:
        raise EstError(
            400, f"label {label.name!r} issues from the {label.chain} chain: use a matching key"
        )
    return csr


def _require_pkcs10(request: web.Request) -> None:
    # RFC 7030 §4.2.1: the request is application/pkcs10; any Content-Transfer-Encoding or
    # none is accepted (RFC 8951 §3.2).
    if request.content_type != PKCS10:
        raise EstError(415, f"the request's Content-Type must be {PKCS10}")


def _unauthorized(context: EstContext) -> EstError:
    return EstError(
        401,
        "authentication required: HTTP Basic credentials of an EST user",
        {"WWW-Authenticate": f'Basic realm="{context.realm}"'},
    )


@dataclass(frozen=True)
class Requester:
    """Who is asking: "basic:<user>", "cert:<serial>", "idevid:<serial>" or Basic and a
    certificate; ``certificate`` is the TLS client certificate that authenticated, if any."""

    identity: str
    certificate: x509.Certificate | None = None


async def _client(context: EstContext, label: EstLabel, request: web.Request) -> Requester | None:
    """A usable TLS client certificate: one certyard issued (RFC 7030 §3.3.2), or an IDevID
    of a manufacturer CA the label trusts; None when the client sent none; 403 when unusable."""
    der = peer_certificate_der(request)
    if der is None:
        return None
    idevid = check_idevid(label, der, context.clock())
    if idevid is not None:
        return Requester(f"idevid:{serial_to_hex(idevid.serial_number)}", idevid)
    client = await check_client_certificate(context, request)
    if client is None:
        return None
    return Requester(f"cert:{client.record.serial_hex}", x509.load_der_x509_certificate(der))


async def _authenticate(context: EstContext, label: EstLabel, request: web.Request) -> Requester:
    """The requester under the label's auth mode (RFC 7030 §3.2.3, §3.3.2)."""
    client: Requester | None = None
    if label.auth != "basic":
        try:
            client = await _client(context, label, request)
        except EstError:
            if label.auth != "either":
                raise
            client = None  # "either": an unusable certificate leaves Basic to decide
    if label.auth == "cert" or (label.auth == "either" and client is not None):
        if client is None:
            raise EstError(403, "a TLS client certificate issued by this CA is required")
        return client
    user = await check_basic(context, request, label.name)
    if user is None:
        raise _unauthorized(context)
    if label.auth == "both":
        if client is None:
            raise EstError(403, "a TLS client certificate issued by this CA is also required")
        return Requester(f"basic:{user} {client.identity}", client.certificate)
    return Requester(f"basic:{user}")


def _rate_limit(context: EstContext, label: EstLabel) -> None:
    """429 with Retry-After (RFC 6585 §4) beyond the label's enrollments per window."""
    wait = context.limiter.acquire(label.name, label.rate_limit, label.rate_limit_window_seconds)
    if wait is not None:
        raise EstError(
            429,
            f"label {label.name!r} allows {label.rate_limit} enrollments per "
            f"{label.rate_limit_window_seconds:g} s; retry later",
            {"Retry-After": str(wait)},
        )


def _bind(context: EstContext, label: EstLabel, request: web.Request, csr: Csr) -> None:
    if label.channel_binding:
        check_channel_binding(request, csr, context.realm)


async def _issue_certificate(
    context: EstContext,
    label: EstLabel,
    request: web.Request,
    csr: Csr,
    identity: str,
    *,
    names_from: Csr | None = None,
) -> tuple[str, x509.Certificate]:
    """Issue for ``csr``'s key (names from ``names_from``, default ``csr``) and record the
    enrollment: (certificate id, certificate)."""
    names = names_from or csr
    dns, ips = requested_names(names)
    issued = await context.issuer.issue(
        csr,
        profile=label.profile,
        dns_names=dns,
        ip_addresses=ips,
        common_name=common_name(names.subject) if label.use_common_name else None,
        requester=f"est:{label.name}",
    )
    try:
        async with context.sessions.begin() as session:
            session.add(
                EstEnrollment(
                    id=secrets.token_urlsafe(16),
                    label=label.name,
                    identity=identity[:255],
                    source_address=(request.remote or "")[:64] or None,
                    certificate_id=issued.id,
                    created_at=context.clock(),
                )
            )
    except SQLAlchemyError as exc:
        log.error("est_enrollment_record_failed", certificate=issued.id, error=str(exc))
        raise EstError(
            503, "the enrollment could not be recorded; retry later", {"Retry-After": "30"}
        ) from exc
    log.info("est_enrolled", label=label.name, identity=identity, serial=issued.serial_hex)
    return issued.id, x509.load_der_x509_certificate(issued.der)


async def _issue(
    context: EstContext,
    label: EstLabel,
    request: web.Request,
    csr: Csr,
    identity: str,
) -> web.Response:
    _, certificate = await _issue_certificate(context, label, request, csr, identity)
    # RFC 7030 §4.2.3: the issued certificate alone, in a certs-only CMS message.
    return _base64_response(certs_only([certificate]), CERTS_ONLY)


# -- operations -------------------------------------------------------------------------------


async def cacerts(context: EstContext, label: EstLabel, request: web.Request) -> web.Response:
    """RFC 7030 §4.1: the label's CA certificates, no authentication (§4.1.1)."""
    return _base64_response(certs_only(label.ca_certificates), PKCS7_MIME)


async def simpleenroll(context: EstContext, label: EstLabel, request: web.Request) -> web.Response:
    """RFC 7030 §4.2.1: a PKCS#10 request from an authenticated client."""
    _require_pkcs10(request)
    identity = (await _authenticate(context, label, request)).identity
    csr = await _read_csr(context, label, request)
    _bind(context, label, request, csr)
    if not label.approval:
        _rate_limit(context, label)
        return await _issue(context, label, request, csr, identity)
    # RFC 7030 §4.2.3: 202 + Retry-After until an operator decides; then the same CSR again.
    approved = await check_approval(context, label, request, csr, identity)
    if approved.certificate_der is not None:
        certificate = x509.load_der_x509_certificate(approved.certificate_der)
        return _base64_response(certs_only([certificate]), CERTS_ONLY)
    _rate_limit(context, label)
    certificate_id, certificate = await _issue_certificate(context, label, request, csr, identity)
    await mark_issued(context, approved.pending_id, certificate_id)
    return _base64_response(certs_only([certificate]), CERTS_ONLY)


def _san_values(extensions: x509.Extensions) -> set[x509.GeneralName]:
    try:
        return set(extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return set()


async def simplereenroll(
    context: EstContext, label: EstLabel, request: web.Request
) -> web.Response:
    """RFC 7030 §4.2.2: renew or rekey the client certificate presented in TLS."""
    _require_pkcs10(request)
    client = await check_client_certificate(context, request)
    if client is None:
        raise EstError(403, "re-enrollment requires the current certificate as TLS client cert")
    identity = f"cert:{client.record.serial_hex}"
    if label.auth == "both":
        user = await check_basic(context, request, label.name)
        if user is None:
            raise _unauthorized(context)
        identity = f"basic:{user} {identity}"
    csr = await _read_csr(context, label, request)
    current = x509.load_der_x509_certificate(client.der)
    # RFC 7030 §4.2.2: Subject and SubjectAltName MUST be identical to the current certificate's.
    if csr.subject != current.subject:
        raise EstError(403, "the request's subject differs from the current certificate's")
    try:
        csr_sans = _san_values(csr.extensions)
    except ValueError:
        raise EstError(400, "the request's extensions cannot be parsed") from None
    if csr_sans != _san_values(current.extensions):
        raise EstError(403, "the request's subjectAltName differs from the current certificate's")
    same_key = spki(csr) == spki(current)
    if label.reenroll_key_change == "require" and same_key:
        raise EstError(403, f"label {label.name!r} requires a new key at re-enrollment")
    if label.reenroll_key_change == "forbid" and not same_key:
        raise EstError(403, f"label {label.name!r} does not allow a key change at re-enrollment")
    _bind(context, label, request, csr)
    _rate_limit(context, label)
    return await _issue(context, label, request, csr, identity)


async def csrattrs(context: EstContext, label: EstLabel, request: web.Request) -> web.Response:
    """RFC 7030 §4.5.2 / RFC 9908: the label's CsrAttrs (est_server/csrattrs.py), base64 like
    every body (RFC 8951 §3.2); 204 when the label asks for none."""
    if label.csr_attributes is None:
        return web.Response(status=204)
    return _base64_response(label.csr_attributes, CSRATTRS)


async def fullcmc(context: EstContext, label: EstLabel, request: web.Request) -> web.Response:
    raise EstError(501, "Full CMC (RFC 7030 §4.3) is not supported by this server")


async def serverkeygen(context: EstContext, label: EstLabel, request: web.Request) -> web.Response:
    """RFC 7030 §4.4: the server makes the key and returns it with the certificate. The CSR
    carries the subject and names (its own key only hints at the key type)."""
    _require_pkcs10(request)
    requester = await _authenticate(context, label, request)
    identity = requester.identity
    if not label.use_common_name:
        # CA/B Forum BR §6.1.1.3: the subscriber generates TLS server keys.
        raise EstError(403, "server key generation is not allowed for TLS server certificates")
    template = parse_csr(decode_base64(await _read_body(context, request)))
    _bind(context, label, request, template)
    recipient = _key_recipient(label, requester, encryption_request(template))
    approved = None
    if label.approval:
        approved = await check_approval(context, label, request, template, identity)
        if approved.certificate_der is not None:
            # The key went out with the first answer and was not kept.
            raise EstError(409, "a key was already generated and delivered for this request")
    _rate_limit(context, label)
    key, csr = await generate_for(label.chain, template)
    certificate_id, certificate = await _issue_certificate(
        context, label, request, csr, identity, names_from=template
    )
    if approved is not None:
        await mark_issued(context, approved.pending_id, certificate_id)
    if recipient is None:
        key_part = plain_key(key)
    else:
        # RFC 7030 §4.4.2: encrypted to the certificate the client named; the plain key
        # exists only in this process's memory until this returns.
        key_part = (
            SERVER_GENERATED_KEY,
            await asyncio.to_thread(
                encrypt_key,
                key,
                certificate,
                recipient,
                [ca for ca in label.ca_certificates if ca.subject == certificate.issuer],
            ),
        )
    body, content_type = multipart(key_part, certs_only([certificate]))
    return web.Response(body=body, headers={"Content-Type": content_type})


def _key_recipient(
    label: EstLabel, requester: Requester, asked: EncryptionRequest | None
) -> x509.Certificate | tuple[bytes, bytes] | None:
    """What to encrypt the generated key to (RFC 7030 §4.4.1.2): the label's pre-shared key
    named by DecryptKeyIdentifier, or the TLS client certificate whose subjectKeyIdentifier
    AsymmetricDecryptKeyIdentifier names."""
    if asked is None:
        return None
    if asked.symmetric:
        secret = label.decrypt_keys.get(asked.key_id)
        if secret is None:
            raise EstError(
                400, f"label {label.name!r} shares no key with that DecryptKeyIdentifier"
            )
        return asked.key_id, secret
    certificate = requester.certificate
    if certificate is None or subject_key_id(certificate) != asked.key_id:
        raise EstError(
            400,
            "AsymmetricDecryptKeyIdentifier must name the TLS client certificate this request "
            "authenticated with (its subjectKeyIdentifier)",
        )
    return certificate


# RFC 7030 §3.2.2: operation path segment -> (method, handler).
OPERATIONS: dict[str, tuple[str, Handler]] = {
    "cacerts": ("GET", cacerts),
    "csrattrs": ("GET", csrattrs),
    "simpleenroll": ("POST", simpleenroll),
    "simplereenroll": ("POST", simplereenroll),
    "fullcmc": ("POST", fullcmc),
    "serverkeygen": ("POST", serverkeygen),
}


async def dispatch(request: web.Request) -> web.StreamResponse:
    context = request.app[EST_CONTEXT]
    operation = request.match_info["operation"]
    name = request.match_info.get("label", context.default_label)
    entry = OPERATIONS.get(operation)
    if entry is None:
        raise EstError(404, f"unknown EST operation {operation!r}")
    label = context.labels.get(name)
    if label is None:
        raise EstError(404, f"unknown EST label {name!r}")
    method, handler = entry
    if request.method != method and not (method == "GET" and request.method == "HEAD"):
        raise EstError(405, f"{operation} takes {method}", {"Allow": method})
    return await handler(context, label, request)
