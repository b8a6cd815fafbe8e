"""Server-side key generation (RFC 7030 §4.4), plain PKCS#8 form.

The key is generated in memory for one answer and never stored or logged. Its type follows the
label's chain when the label pins one, else the type of the key in the client's CSR (RFC 7030
§4.4.1: the CSR's key only tells the server what the client wants), else EC P-256.
"""

from __future__ import annotations

import asyncio
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from est_server.errors import EstError
from est_server.wire import CERTS_ONLY, encode_base64

GeneratedKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

PKCS8 = "application/pkcs8"
# RFC 7030 §4.4.1.2 / RFC 8295 §2: the CSR attributes asking for an encrypted key.
DECRYPT_KEY_ID = x509.ObjectIdentifier("1.2.840.113549.1.9.16.2.37")
ASYMM_DECRYPT_KEY_ID = x509.ObjectIdentifier("1.2.840.113549.1.9.16.2.54")
_CURVES: dict[str, type[ec.EllipticCurve]] = {"secp256r1": ec.SECP256R1, "secp384r1": ec.SECP384R1}
_RSA_SIZES = (2048, 3072, 4096)


def refuse_encrypted(csr: x509.CertificateSigningRequest) -> None:
    """RFC 7030 §4.4.2: an encrypted (EnvelopedData) key is asked for with these attributes;
    this server only returns the plain form."""
    try:
        oids = {attribute.oid for attribute in csr.attributes}
    except ValueError:
        raise EstError(400, "the request's attributes cannot be parsed") from None
    if oids & {DECRYPT_KEY_ID, ASYMM_DECRYPT_KEY_ID}:
        raise EstError(
            501,
            "encrypted server-generated keys (RFC 7030 §4.4.2, CMS EnvelopedData) are not "
            "supported; send the request without DecryptKeyIdentifier / "
            "AsymmetricDecryptKeyIdentifier",
        )


def _generate(chain: str | None, template: x509.CertificateSigningRequest) -> GeneratedKey:
    hint = template.public_key()
    if chain == "rsa" or (chain is None and isinstance(hint, rsa.RSAPublicKey)):
        size = hint.key_size if isinstance(hint, rsa.RSAPublicKey) else 2048
        return rsa.generate_private_key(65537, size if size in _RSA_SIZES else 2048)
    curve: type[ec.EllipticCurve] = ec.SECP256R1
    if isinstance(hint, ec.EllipticCurvePublicKey):
        curve = _CURVES.get(hint.curve.name, ec.SECP256R1)
    return ec.generate_private_key(curve())


async def generate_for(
    chain: str | None, template: x509.CertificateSigningRequest
) -> tuple[GeneratedKey, x509.CertificateSigningRequest]:
    """A fresh key, and a CSR for it with the template's subject and subjectAltName (what the
    CA takes from a request)."""
    key = await asyncio.to_thread(_generate, chain, template)
    builder = x509.CertificateSigningRequestBuilder().subject_name(template.subject)
    try:
        san = template.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        builder = builder.add_extension(san.value, critical=san.critical)
    except x509.ExtensionNotFound:
        pass
    except ValueError:
        raise EstError(400, "the request's extensions cannot be parsed") from None
    return key, builder.sign(key, hashes.SHA256())


def multipart(key: GeneratedKey, certificates_only: bytes) -> tuple[bytes, str]:
    """RFC 7030 §4.4.2: multipart/mixed, the private key (PKCS#8 DER, RFC 5958) first, then the
    certificate in a certs-only CMS; each part base64 (RFC 8951 §3.2). Returns (body,
    Content-Type)."""
    boundary = "est-" + secrets.token_hex(12)
    pkcs8 = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    parts = []
    for content_type, der in ((PKCS8, pkcs8), (CERTS_ONLY, certificates_only)):
        head = (
            f"--{boundary}\r\nContent-Type: {content_type}\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n"
        ).encode()
        # RFC 2046 §5.1.1: the CRLF before a boundary belongs to the boundary.
        parts.append(head + encode_base64(der) + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/mixed; boundary={boundary}"
