"""certyard's certificate authority: key backends, hierarchy, profiles and issuance.

Front ends import from here; see docs/ca.md.
"""

from ca.config import CAConfig
from ca.errors import CAError, CAErrorKind
from ca.hierarchy import Hierarchy, IssuerHandle, load_or_create_hierarchy
from ca.issuance import IssuanceService, IssuedCertificate, ServerCredentials, StoredCertificate
from ca.keys import KEY_ALGORITHMS, GeneratedKey, KeyBackend
from ca.profiles import TLSServerProfile
from ca.serials import new_serial, serial_to_hex
from ca.software_keys import SoftwareKeyBackend, load_or_create_passphrase

__all__ = [
    "KEY_ALGORITHMS",
    "CAConfig",
    "CAError",
    "CAErrorKind",
    "GeneratedKey",
    "Hierarchy",
    "IssuanceService",
    "IssuedCertificate",
    "IssuerHandle",
    "KeyBackend",
    "ServerCredentials",
    "SoftwareKeyBackend",
    "StoredCertificate",
    "TLSServerProfile",
    "load_or_create_hierarchy",
    "load_or_create_passphrase",
    "new_serial",
    "serial_to_hex",
]
