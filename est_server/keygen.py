"""Server-side key generation (RFC 7030 §4.4): plain PKCS#8, or encrypted to the client's
certificate (§4.4.2, CMS EnvelopedData).

The key is generated in memory for one answer and never stored or logged (nor kept unencrypted
anywhere but in that memory). Its type follows the
label's chain when the label pins one, else the type of the key in the client's CSR (RFC 7030
§4.4.1: the CSR's key only tells the server what the client wants), else EC P-256.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1_alt_modules import rfc5958

from est_server.envelope import envelope_for_ec, envelope_for_kek
from est_server.errors import EstError
from est_server.wire import CERTS_ONLY, encode_base64

GeneratedKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

PKCS8 = "application/pkcs8"
# RFC 7030 §4.4.2: the encrypted key part.
SERVER_GENERATED_KEY = "application/pkcs7-mime; smime-type=server-generated-key"
# RFC 7030 §4.4.1.2 / RFC 8295 §2: the CSR attributes asking for an encrypted key.
DECRYPT_KEY_ID = x509.ObjectIdentifier("1.2.840.113549.1.9.16.2.37")
ASYMM_DECRYPT_KEY_ID = x509.ObjectIdentifier("1.2.840.113549.1.9.16.2.54")
_CURVES: dict[str, type[ec.EllipticCurve]] = {"secp256r1": ec.SECP256R1, "secp384r1": ec.SECP384R1}
_RSA_SIZES = (2048, 3072, 4096)


@dataclass(frozen=True)
class EncryptionRequest:
    """What the CSR asked the key to be encrypted to (RFC 7030 §4.4.1.2): a pre-shared
    symmetric key (DecryptKeyIdentifier) or a certificate's key by its subjectKeyIdentifier
    (AsymmetricDecryptKeyIdentifier)."""

    symmetric: bool
    key_id: bytes


def encryption_request(csr: x509.CertificateSigningRequest) -> EncryptionRequest | None:
    """None for the plain PKCS#8 form."""
    try:
        attributes = {attribute.oid: attribute.value for attribute in csr.attributes}
    except ValueError:
        raise EstError(400, "the request's attributes cannot be parsed") from None
    found = [
        EncryptionRequest(oid == DECRYPT_KEY_ID, attributes[oid])
        for oid in (DECRYPT_KEY_ID, ASYMM_DECRYPT_KEY_ID)
        if oid in attributes
    ]
    if len(found) > 1:
        raise EstError(
            400, "ask for DecryptKeyIdentifier or AsymmetricDecryptKeyIdentifier, not both"
        )
    if found and not found[0].key_id:
        raise EstError(400, "the key identifier attribute is empty")
    return found[0] if found else None


def subject_key_id(certificate: x509.Certificate) -> bytes:
    """The certificate's subjectKeyIdentifier, or the RFC 5280 §4.2.1.2 method (1) value when
    it has none (IDevIDs sometimes lack the extension)."""
    try:
        return certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value.digest
    except (x509.ExtensionNotFound, ValueError):
        return x509.SubjectKeyIdentifier.from_public_key(certificate.public_key()).digest


def _asymmetric_key_package(key: GeneratedKey) -> bytes:
    # RFC 5958 §2: AsymmetricKeyPackage ::= SEQUENCE OF OneAsymmetricKey (PKCS#8 v1 is one).
    one = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    package = rfc5958.AsymmetricKeyPackage()
    package.append(der_decoder.decode(one, asn1Spec=rfc5958.OneAsymmetricKey())[0])
    der: bytes = der_encoder.encode(package)
    return der


def encrypt_key(
    key: GeneratedKey,
    certificate: x509.Certificate,
    recipient: x509.Certificate | tuple[bytes, bytes],
    chain: Sequence[x509.Certificate] = (),
) -> bytes:
    """RFC 7030 §4.4.2 / RFC 5958 §4: the key package in a SignedData, inside an EnvelopedData
    for ``recipient``: key transport (ktri) to an RSA certificate, key agreement (kari, RFC
    5753) to an EC one, or a pre-shared AES key (kekri) given as (key id, key); AES-256-CBC.
    DER.

    The SignedData is signed with the new key under its new certificate: the client checks the
    certificate chains to the CA and so that the CA certified exactly the enclosed key (this
    front end holds no signing key of its own). cryptography's PKCS#7 builders mark both inner
    contents as id-data rather than id-ct-KP-aKeyPackage / id-signedData; ``openssl cms``
    decrypts and verifies them all the same. cryptography's envelope builder does only key
    transport, so EC recipients go through est_server/envelope.py.
    """
    recipient_key = recipient.public_key() if isinstance(recipient, x509.Certificate) else None
    if recipient_key is not None and not isinstance(
        recipient_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    ):
        raise EstError(
            501,
            "the certificate named by AsymmetricDecryptKeyIdentifier has neither an RSA nor "
            "an EC key",
        )
    builder = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(_asymmetric_key_package(key))
        .add_signer(certificate, key, hashes.SHA256())
    )
    for ca in chain:  # the issuing CA, so the client can build the path to its root
        builder = builder.add_certificate(ca)
    signed = builder.sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
    if not isinstance(recipient, x509.Certificate):
        return envelope_for_kek(signed, *recipient)
    if isinstance(recipient_key, ec.EllipticCurvePublicKey):
        return envelope_for_ec(signed, recipient)
    return (
        pkcs7.PKCS7EnvelopeBuilder()
        .set_data(signed)
        .add_recipient(recipient)
        .set_content_encryption_algorithm(algorithms.AES256)
        .encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
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


def plain_key(key: GeneratedKey) -> tuple[str, bytes]:
    """The key part of the plain form: (Content-Type, PKCS#8 DER)."""
    pkcs8 = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return PKCS8, pkcs8


def multipart(key_part: tuple[str, bytes], certificates_only: bytes) -> tuple[bytes, str]:
    """RFC 7030 §4.4.2: multipart/mixed, the private key part first (PKCS#8 DER, or the
    encrypted form), then the certificate in a certs-only CMS; each part base64 (RFC 8951
    §3.2). Returns (body, Content-Type)."""
    boundary = "est-" + secrets.token_hex(12)
    parts = []
    for content_type, der in (key_part, (CERTS_ONLY, certificates_only)):
        head = (
            f"--{boundary}\r\nContent-Type: {content_type}\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n"
        ).encode()
        # RFC 2046 §5.1.1: the CRLF before a boundary belongs to the boundary.
        parts.append(head + encode_base64(der) + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/mixed; boundary={boundary}"
