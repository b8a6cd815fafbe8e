"""The canonical encoding every audit hash and checkpoint signature is computed over.

It is the JSON Canonicalization Scheme (RFC 8785): no whitespace, object members sorted by
their names as UTF-16 code units (§3.2.3), strings with only the mandatory escapes (§3.2.2.2,
lower-case ``\\u00xx``), numbers as ECMAScript prints them (§3.2.2.3), UTF-8 output (§3.2.4).
It is written here rather than taken from a library because it is about sixty lines and every
verifier must be able to re-implement it from docs/audit.md; ``json.dumps(sort_keys=True)``
alone differs from RFC 8785 in number formatting and in sorting non-BMP characters.

Values are limited to what JSON carries unambiguously: ``None``, ``bool``, ``str``, integers
of at most 2^53 in magnitude (RFC 8785 §3.2.2.3 / I-JSON, RFC 7493 §2.2), finite floats, lists
and objects with string keys. Anything else is refused rather than guessed.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from audit.errors import AuditError

MAX_SAFE_INTEGER = 2**53 - 1  # RFC 7493 §2.2


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 encoding of ``value`` as UTF-8 bytes."""
    return _encode(value).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def normalize(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists, ...), checked encodable: what
    is stored is exactly what was hashed."""
    return json.loads(canonical_json(value))


def _encode(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise AuditError(f"integer {value} is too large for canonical JSON (RFC 7493 §2.2)")
        return str(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise AuditError(f"object member name {key!r} is not a string")
        # RFC 8785 §3.2.3: sort by UTF-16 code units, not by code points.
        keys = sorted(value, key=lambda k: k.encode("utf-16-be"))
        return "{" + ",".join(_string(k) + ":" + _encode(value[k]) for k in keys) + "}"
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return "[" + ",".join(_encode(item) for item in value) + "]"
    raise AuditError(f"a {type(value).__name__} has no canonical JSON form")


def _string(text: str) -> str:
    # json.dumps with ensure_ascii=False escapes exactly '"', '\\' and U+0000..U+001F, using
    # \b \t \n \f \r and lower-case \u00xx otherwise: RFC 8785 §3.2.2.2.
    for char in text:
        if 0xD800 <= ord(char) <= 0xDFFF:
            raise AuditError("a string holds a lone surrogate (not valid Unicode)")
    return json.dumps(text, ensure_ascii=False)


def _number(number: float) -> str:
    """ECMAScript Number.prototype.toString (ECMA-262 §6.1.6.1.20), as RFC 8785 §3.2.2.3 asks.
    Python's repr yields the same shortest round-trip digits; only the layout differs."""
    if not math.isfinite(number):
        raise AuditError("NaN and infinities have no JSON form")
    if number == 0:
        return "0"  # -0 too
    sign = "-" if number < 0 else ""
    digits_tuple, exponent = Decimal(repr(abs(number))).normalize().as_tuple()[1:]
    digits = "".join(str(d) for d in digits_tuple)
    assert isinstance(exponent, int)
    k = len(digits)
    n = exponent + k  # the value is 0.digits * 10^n
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    e = n - 1
    mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{sign}{mantissa}e{'+' if e > 0 else '-'}{abs(e)}"
