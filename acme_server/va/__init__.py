"""The ACME validation authority: http-01, dns-01 (RFC 8555 §8.3, §8.4) and tls-alpn-01 (RFC 8737).

Each ``validate_*`` coroutine returns the validation records (RFC 8555 §8.3) on success and raises
:class:`ValidationFailure` (an ACME problem plus the records) on any failure; no other exception
escapes. Every connection goes to an address resolved by :func:`resolve_addresses`' rules and
checked against ``ValidationConfig.deny_networks``. See docs/validation.md.
"""

from acme_server.va.dns01 import validate_dns01
from acme_server.va.http01 import validate_http01
from acme_server.va.policy import (
    DEFAULT_DENY,
    ValidationConfig,
    ValidationFailure,
    ValidationRecord,
    resolve_addresses,
)
from acme_server.va.tlsalpn01 import validate_tlsalpn01

__all__ = [
    "DEFAULT_DENY",
    "ValidationConfig",
    "ValidationFailure",
    "ValidationRecord",
    "resolve_addresses",
    "validate_dns01",
    "validate_http01",
    "validate_tlsalpn01",
]
