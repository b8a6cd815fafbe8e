"""ACME Renewal Information (RFC 9773): certificate identifiers and suggested windows.

A certID (RFC 9773 §4.1) is ``base64url(AKI keyIdentifier) "." base64url(serial)``, the serial
being the DER INTEGER's content octets. The default suggested window sits in the last third of
the lifetime, starting at two thirds; a per-certificate jitter spreads renewals of certificates
issued together over the first part of that window, so clients don't all come back at once.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
from dataclasses import dataclass

from cryptography import x509

from acme_server.errors import malformed


@dataclass(frozen=True)
class CertId:
    key_identifier: bytes
    serial: int

    def encode(self) -> str:
        return f"{_b64(self.key_identifier)}.{_b64(serial_octets(self.serial))}"


@dataclass(frozen=True)
class Window:
    start: dt.datetime
    end: dt.datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    if not text or any(c not in _B64URL for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def serial_octets(serial: int) -> bytes:
    """The content octets of the DER INTEGER (X.690 §8.3: minimal two's complement)."""
    return serial.to_bytes(serial.bit_length() // 8 + 1, "big")


def parse_cert_id(text: str) -> CertId:
    """Parse a certID; any deviation is ``malformed`` (RFC 9773 §4.1)."""
    key_text, dot, serial_text = text.partition(".")
    try:
        if not dot:
            raise ValueError("no dot")
        key_identifier = _unb64(key_text)
        raw_serial = _unb64(serial_text)
    except (ValueError, binascii.Error):
        raise malformed(
            "renewalInfo: the certificate identifier is not two base64url parts"
        ) from None
    if not raw_serial or raw_serial[0] & 0x80:
        raise malformed("renewalInfo: the serial is not a positive DER INTEGER")
    if len(raw_serial) > 1 and raw_serial[0] == 0 and not raw_serial[1] & 0x80:
        raise malformed("renewalInfo: the serial is not minimally encoded")
    return CertId(key_identifier, int.from_bytes(raw_serial, "big"))


def cert_id_of(cert: x509.Certificate) -> CertId:
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    if aki.key_identifier is None:
        raise ValueError("certificate has no AKI keyIdentifier")
    return CertId(aki.key_identifier, cert.serial_number)


def default_window(not_before: dt.datetime, not_after: dt.datetime, serial_hex: str) -> Window:
    lifetime = not_after - not_before
    start = not_before + lifetime * 2 / 3
    # Deterministic jitter: the same certificate always gets the same window (RFC 9773 §4.2
    # asks for a stable answer between polls), spread over the first sixth of the lifetime.
    fraction = int.from_bytes(hashlib.sha256(serial_hex.encode()).digest()[:4], "big") / 2**32
    start = start + lifetime / 6 * fraction * 0.5
    end = not_before + lifetime * 8 / 9
    return Window(start, max(end, start + dt.timedelta(minutes=1)))


def revoked_window(now: dt.datetime) -> Window:
    """RFC 9773 §4.2: a window in the past tells the client to renew at once."""
    return Window(now - dt.timedelta(hours=2), now - dt.timedelta(hours=1))
