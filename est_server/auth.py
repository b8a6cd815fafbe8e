"""EST client authentication (RFC 7030 §3.2.3, §3.3.2): HTTP Basic and TLS client certificates.

Passwords are stored as scrypt hashes (RFC 7914) with a random salt; verification runs in a
thread (scrypt is deliberately slow) and compares in constant time. An unknown user costs the
same scrypt run as a known one, so timing does not reveal which names exist.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import hmac
import secrets
import ssl
from dataclasses import dataclass

from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from sqlalchemy.exc import SQLAlchemyError

from ca.issuance import StoredCertificate
from est_server.context import EstContext, EstLabel
from est_server.errors import EstError
from storage.models import EstUser

# RFC 7914 §2 parameters: N = 2^14, r = 8, p = 1 (16 MiB, tens of milliseconds).
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_SALT_BYTES = 16
_HASH_BYTES = 32
_MAX_PASSWORD = 1024
_DUMMY_HASH_SALT = secrets.token_bytes(_SALT_BYTES)


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password, salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=_HASH_BYTES
    )


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(password.encode(), salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str | None) -> bool:
    """True when ``password`` matches ``stored``; a None ``stored`` burns the same time."""
    if stored is None:
        _scrypt(password.encode(), _DUMMY_HASH_SALT, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = _scrypt(password.encode(), base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(actual, expected)


def basic_credentials(request: web.Request) -> tuple[str, str] | None:
    """(user, password) from ``Authorization: Basic`` (RFC 7617 §2), None when absent or
    unparseable."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep or not user or len(password) > _MAX_PASSWORD:
        return None
    return user, password


async def check_basic(context: EstContext, request: web.Request, label: str) -> str | None:
    """The authenticated user name, or None when the credentials are missing or wrong.
    A user bound to another label is refused (403)."""
    credentials = basic_credentials(request)
    if credentials is None:
        return None
    name, password = credentials
    try:
        async with context.sessions() as session:
            user = await session.get(EstUser, name)
    except SQLAlchemyError as exc:
        raise EstError(
            503, "the user store is unavailable; retry later", {"Retry-After": "30"}
        ) from exc
    stored = user.password_hash if user is not None else None
    if not await asyncio.to_thread(verify_password, password, stored):
        return None
    if user is not None and user.label is not None and user.label != label:
        raise EstError(403, f"user {name} may not enroll under label {label!r}")
    return name


def peer_certificate_der(request: web.Request) -> bytes | None:
    """The TLS client certificate the listener verified against certyard's root (RFC 7030
    §3.3.2), DER, or None when the client sent none (or the connection is not TLS)."""
    transport = request.transport
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return der or None


@dataclass(frozen=True)
class ClientCertificate:
    der: bytes
    record: StoredCertificate


async def check_client_certificate(
    context: EstContext, request: web.Request
) -> ClientCertificate | None:
    """The client certificate when certyard issued it (the DER is in ``certificates``), it is
    not revoked and is within its validity; None when there is none; 403 when it is unusable."""
    der = peer_certificate_der(request)
    if der is None:
        return None
    record = await context.lookup.find_by_der(der)
    if record is None:
        raise EstError(403, "the client certificate was not issued by this CA")
    if record.status != "valid":
        raise EstError(403, "the client certificate is revoked")
    now = context.clock()
    if not record.not_before <= now <= record.not_after:
        raise EstError(403, "the client certificate is expired or not yet valid")
    return ClientCertificate(der, record)


def check_idevid(label: EstLabel, der: bytes, now: dt.datetime) -> x509.Certificate | None:
    """The TLS client certificate when it is an IDevID (IEEE 802.1AR) that one of the label's
    manufacturer CAs issued and it is within its validity (RFC 7030 §3.3.2: the initial
    enrollment of a device that holds only its manufacturer's certificate); None otherwise.

    The TLS handshake already verified the chain up to a trusted manufacturer CA; this checks
    that the direct issuer is one this *label* trusts, since the listener trusts the union of
    every label's manufacturer CAs.
    """
    if not label.manufacturer_cas:
        return None
    try:
        certificate = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    for ca in label.manufacturer_cas:
        if ca.subject != certificate.issuer:
            continue
        try:
            certificate.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise EstError(403, "the manufacturer (IDevID) certificate is expired or not yet valid")
        return certificate
    return None
