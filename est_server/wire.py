"""EST wire formats: RFC 8951 base64 bodies, certs-only CMS, PKCS#10 requests.

RFC 8951 §3.2 (updating RFC 7030 §4): bodies are base64 (RFC 4648) whatever the
Content-Transfer-Encoding header says, or whether there is one; a receiver accepts base64 with
or without line breaks. We send base64 wrapped at 76 columns, the MIME line length.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from est_server.errors import EstError

PKCS10 = "application/pkcs10"
PKCS7_MIME = "application/pkcs7-mime"
CSRATTRS = "application/csrattrs"
CERTS_ONLY = "application/pkcs7-mime; smime-type=certs-only"
LINE = 76
# Whitespace RFC 8951 §3.2 tells receivers to tolerate between base64 characters.
_WHITESPACE = b" \t\r\n"


def decode_base64(body: bytes) -> bytes:
    """The DER inside an RFC 8951 base64 body (line breaks, spaces and tabs ignored)."""
    compact = body.translate(None, _WHITESPACE)
    if not compact:
        raise EstError(400, "empty body: expected a base64-encoded DER message")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise EstError(400, "the body is not valid base64 (RFC 8951 §3.2)") from None


def encode_base64(der: bytes) -> bytes:
    """Base64 in lines of 76 characters (RFC 2045 §6.8 line length; RFC 8951 §3.2 lets
    receivers ignore line breaks). Lines end in LF, not CRLF: ``base64 -d`` of GNU coreutils
    refuses a CR, and EST how-tos pipe curl into it."""
    text = base64.b64encode(der)
    return b"".join(text[i : i + LINE] + b"\n" for i in range(0, len(text), LINE))


def certs_only(certificates: Sequence[x509.Certificate]) -> bytes:
    """A degenerate CMS SignedData holding only certificates (RFC 7030 §4.1.3, §4.2.3;
    RFC 5652 §5: no signers, no content)."""
    return pkcs7.serialize_certificates(list(certificates), serialization.Encoding.DER)


def parse_csr(der: bytes) -> x509.CertificateSigningRequest:
    """A PKCS#10 request whose signature verifies (RFC 2986 §3: proof of possession)."""
    try:
        csr = x509.load_der_x509_csr(der)
    except ValueError:
        raise EstError(400, "the body is not a DER PKCS#10 certification request") from None
    try:
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm):
        raise EstError(400, "the request uses an unsupported key or signature algorithm") from None
    if not valid:
        raise EstError(400, "the request's signature does not verify (RFC 2986 §3)")
    return csr


def requested_names(csr: x509.CertificateSigningRequest) -> tuple[list[str], list[str]]:
    """The dNSName and iPAddress values of the request's subjectAltName extension."""
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return [], []
    except ValueError:
        raise EstError(400, "the request's extensions cannot be parsed") from None
    san = ext.value
    dns = list(san.get_values_for_type(x509.DNSName))
    ips = [str(address) for address in san.get_values_for_type(x509.IPAddress)]
    return dns, ips


def common_name(name: x509.Name) -> str | None:
    values = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if not values:
        return None
    value = values[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def key_chain(csr: x509.CertificateSigningRequest) -> str | None:
    """The CA chain ("ecdsa" / "rsa") that issues for the request's key type."""
    key = csr.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ecdsa"
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa"
    return None


def spki(key_owner: x509.Certificate | x509.CertificateSigningRequest) -> bytes:
    return key_owner.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
