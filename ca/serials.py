"""Certificate serial numbers.

RFC 5280 §4.1.2.2: a positive INTEGER of at most 20 octets (its DER content, sign octet
included), unique per issuer. CA/B Forum BR §7.1: non-sequential, greater than zero, with at least
64 bits of output from a CSPRNG.

We draw 158 random bits from ``secrets`` and set bit 158: the value is then always exactly 159
bits long, so its DER content is always exactly 20 octets with a clear sign bit - positive,
within the RFC 5280 bound, never 0, 158 bits of entropy (far above the BR's 64), and of fixed
length, which keeps the hex form fixed at 40 digits and avoids the "19- or 21-octet serial" bugs
that variable-length draws cause. Uniqueness is enforced by the UNIQUE constraint on
``certificates.serial``; issuance redraws on the (astronomically unlikely) collision.
"""

from __future__ import annotations

import secrets

SERIAL_BITS = 159


def new_serial() -> int:
    return secrets.randbits(SERIAL_BITS - 1) | (1 << (SERIAL_BITS - 1))


def serial_to_hex(serial: int) -> str:
    """The storage form: lowercase hex, zero-padded to whole octets (OpenSSL's convention)."""
    if serial <= 0:
        raise ValueError("certificate serial numbers are positive (RFC 5280 §4.1.2.2)")
    digits = format(serial, "x")
    return digits if len(digits) % 2 == 0 else "0" + digits
