"""tls-alpn-01 validation (RFC 8737).

The VA resolves the domain, keeps the addresses the deny list allows, and opens a TLS connection
to the checked address (IPv6 first, IPv4 if that connection fails) on ``config.tlsalpn01_port``
with SNI = the domain and ALPN offering only ``acme-tls/1``. The certificate is not verified
(RFC 8737 §3: it is a self-signed validation certificate); instead its content is checked.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import ssl

from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from acme_server.errors import AcmeError
from acme_server.va.policy import (
    IPAddress,
    ValidationConfig,
    ValidationFailure,
    ValidationRecord,
    check_addresses,
    connection_order,
    fail,
    key_authorization_digest,
    lookup_addresses,
    normalize_identifier,
    os_error_reason,
)

log = logging.getLogger(__name__)

ACME_TLS_1 = "acme-tls/1"  # RFC 8737 §6.2
ID_PE_ACME_IDENTIFIER = ObjectIdentifier("1.3.6.1.5.5.7.1.31")  # RFC 8737 §6.1


class _ConnectFailed(Exception):
    def __init__(self, failure: ValidationFailure) -> None:
        super().__init__(str(failure))
        self.failure = failure


async def validate_tlsalpn01(
    domain: str, key_authorization: str, config: ValidationConfig
) -> list[ValidationRecord]:
    """Validate a tls-alpn-01 challenge: one record, or :class:`ValidationFailure`."""
    records: list[ValidationRecord] = []
    try:
        return await _validate(domain, key_authorization, config, records)
    except ValidationFailure as exc:
        exc.records = list(records)
        raise
    except Exception:  # a bug here must not turn into a 500 or leak a traceback
        log.exception("tls-alpn-01 validation of %s failed unexpectedly", domain)
        raise ValidationFailure(
            AcmeError("serverInternal", "the tls-alpn-01 validation could not be completed"),
            records,
        ) from None


async def _validate(
    domain: str,
    key_authorization: str,
    config: ValidationConfig,
    records: list[ValidationRecord],
) -> list[ValidationRecord]:
    name = normalize_identifier(domain)
    resolved = await lookup_addresses(name, config)
    record = ValidationRecord(
        hostname=name,
        port=config.tlsalpn01_port,
        addresses_resolved=tuple(str(a) for a in resolved),
        address_used="",
    )
    records.append(record)
    allowed = check_addresses(name, resolved, config)
    last: ValidationFailure | None = None
    for address in connection_order(allowed):
        records[-1] = ValidationRecord(
            hostname=name,
            port=config.tlsalpn01_port,
            addresses_resolved=record.addresses_resolved,
            address_used=str(address),
        )
        try:
            der = await _handshake(name, address, config)
        except _ConnectFailed as exc:
            last = exc.failure
            continue
        _check_certificate(der, name, key_authorization, address)
        return records
    assert last is not None
    raise last


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def _sni_for(name: str) -> str:
    address = _ip(name)
    return address.reverse_pointer if address is not None else name


def _client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # RFC 8737 §3: a self-signed certificate is expected
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8737 §4: TLS 1.2 or later
    ctx.set_alpn_protocols([ACME_TLS_1])  # RFC 8737 §3: the single protocol "acme-tls/1"
    return ctx


async def _handshake(name: str, address: IPAddress, config: ValidationConfig) -> bytes:
    """Connect, negotiate acme-tls/1 and return the DER certificate the server presented."""
    where = f"{address}:{config.tlsalpn01_port}"
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(config.timeout):
            _, writer = await asyncio.open_connection(
                str(address),
                config.tlsalpn01_port,
                ssl=_client_context(),
                # RFC 8737 §3: SNI carries the domain being validated; RFC 8738 §6: for an IP
                # identifier, its reverse-mapping name (in-addr.arpa / ip6.arpa).
                server_hostname=_sni_for(name),
                ssl_handshake_timeout=config.timeout,
            )
        ssl_object = writer.get_extra_info("ssl_object")
        if not isinstance(ssl_object, ssl.SSLObject):
            raise fail("tls", f"{where}: no TLS session was established")
        # RFC 8737 §3: the server must negotiate acme-tls/1.
        if ssl_object.selected_alpn_protocol() != ACME_TLS_1:
            raise fail(
                "tls", f"{where}: the server did not negotiate the {ACME_TLS_1} protocol with ALPN"
            )
        der = ssl_object.getpeercert(binary_form=True)
        if not der:
            raise fail("tls", f"{where}: the server presented no certificate")
        return der
    except ValidationFailure:
        raise
    except ssl.SSLError as exc:
        reason = exc.reason.lower().replace("_", " ") if exc.reason else "handshake failed"
        raise fail("tls", f"{where}: TLS error: {reason}") from None
    except TimeoutError:
        raise _ConnectFailed(
            fail("connection", f"{where}: timeout during connect or TLS handshake")
        ) from None
    except (ConnectionResetError, BrokenPipeError):
        raise fail("tls", f"{where}: the connection was closed during the TLS handshake") from None
    except OSError as exc:
        raise _ConnectFailed(fail("connection", f"{where}: {os_error_reason(exc)}")) from None
    finally:
        if writer is not None:
            writer.transport.abort()


def _check_certificate(der: bytes, name: str, key_authorization: str, address: IPAddress) -> None:
    """RFC 8737 §3 step 4: one dNSName SAN = the domain, critical acmeIdentifier = the digest."""
    where = f"{address}: the validation certificate"
    try:
        cert = x509.load_der_x509_certificate(der)
        extensions = cert.extensions
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise fail("unauthorized", f"{where} has no subjectAltName extension") from None
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        raise fail("unauthorized", f"{where} could not be parsed") from None
    names = list(san)
    identifier_ip = _ip(name)
    if identifier_ip is not None:
        # RFC 8738 §6: exactly one SAN, an iPAddress equal to the identifier.
        if len(names) != 1 or not isinstance(names[0], x509.IPAddress):
            raise fail(
                "unauthorized",
                f"{where} must have exactly one subjectAltName, an "
                f"iPAddress for {name}; it has {len(names)} entries",
            )
        if names[0].value != identifier_ip:
            raise fail("unauthorized", f"{where} is for {names[0].value}, not {name}")
    elif len(names) != 1 or not isinstance(names[0], x509.DNSName):
        raise fail(
            "unauthorized",
            f"{where} must have exactly one subjectAltName, a dNSName "
            f"for {name}; it has {len(names)} entries",
        )
    elif names[0].value.rstrip(".").lower() != name:
        raise fail("unauthorized", f"{where} is for {names[0].value!r}, not {name!r}")
    try:
        ext = extensions.get_extension_for_oid(ID_PE_ACME_IDENTIFIER)
    except x509.ExtensionNotFound:
        raise fail("unauthorized", f"{where} has no acmeIdentifier extension") from None
    if not ext.critical:
        raise fail("unauthorized", f"{where} has a non-critical acmeIdentifier extension")
    if not isinstance(ext.value, x509.UnrecognizedExtension):
        raise fail("unauthorized", f"{where} has an unreadable acmeIdentifier extension")
    # RFC 8737 §3: Authorization ::= OCTET STRING (SIZE (32)), DER: 0x04 0x20 + the digest.
    value = ext.value.value
    if len(value) != 34 or value[:2] != b"\x04\x20":
        raise fail("unauthorized", f"{where} has a malformed acmeIdentifier extension")
    if not hmac.compare_digest(value[2:], key_authorization_digest(key_authorization)):
        raise fail(
            "unauthorized",
            f"{where} has an acmeIdentifier that does not match the "
            "expected key authorization digest",
        )
