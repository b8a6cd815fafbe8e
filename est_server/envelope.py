"""CMS EnvelopedData that cryptography's PKCS#7 builder cannot make (it does key transport to
RSA certificates only), assembled from pyasn1-alt-modules' ASN.1 classes and cryptography's
primitives; the content is always AES-256-CBC under a random content-encryption key (CEK):

- to an EC certificate: key agreement, kari (RFC 5652 §6.2.2, RFC 5753 §3.1.1): an
  ephemeral-static ECDH on the recipient's curve (dhSinglePass-stdDH-sha256kdf), the X9.63 KDF
  with SHA-256 over ECC-CMS-SharedInfo (§7.2), AES-256 key wrap (RFC 3394) of the CEK;
- to a pre-shared symmetric key: kekri (RFC 5652 §6.2.3): the CEK wrapped with that key.

``openssl cms -decrypt`` opens both (``-recip``/``-inkey``, ``-secretkey``/``-secretkeyid``).
"""

from __future__ import annotations

import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import aes_key_wrap
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import univ
from pyasn1_alt_modules import rfc3565, rfc5280, rfc5652, rfc5753

EC_PUBLIC_KEY = univ.ObjectIdentifier("1.2.840.10045.2.1")
KEY_BITS = 256


def _wrap_algorithm() -> rfc5280.AlgorithmIdentifier:
    # RFC 3565 §2.3.2: the AES key wrap identifiers carry no parameters.
    algorithm = rfc5280.AlgorithmIdentifier()
    algorithm["algorithm"] = rfc3565.id_aes256_wrap
    return algorithm


def _shared_info() -> bytes:
    # RFC 5753 §7.2: keyInfo = the wrap algorithm, suppPubInfo = the KEK length in bits.
    info = rfc5753.ECC_CMS_SharedInfo()
    info["keyInfo"]["algorithm"] = rfc3565.id_aes256_wrap
    info["suppPubInfo"] = KEY_BITS.to_bytes(4, "big")
    der: bytes = encoder.encode(info)
    return der


def _issuer_and_serial(certificate: x509.Certificate) -> rfc5652.IssuerAndSerialNumber:
    ias = rfc5652.IssuerAndSerialNumber()
    name, _ = decoder.decode(certificate.issuer.public_bytes(), asn1Spec=rfc5280.Name())
    ias["issuer"] = name
    ias["serialNumber"] = certificate.serial_number
    return ias


def _encrypt_content(content: bytes) -> tuple[bytes, bytes, bytes]:
    """(CEK, IV, AES-256-CBC ciphertext with PKCS#7 padding, RFC 5652 §6.3)."""
    cek = os.urandom(32)
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(content) + padder.finalize()
    encryptor = Cipher(algorithms.AES256(cek), modes.CBC(iv)).encryptor()
    return cek, iv, encryptor.update(padded) + encryptor.finalize()


def _enveloped(info: rfc5652.RecipientInfo, iv: bytes, ciphertext: bytes) -> bytes:
    enveloped = rfc5652.EnvelopedData()
    enveloped["version"] = 2  # RFC 5652 §6.1: a RecipientInfo other than a v0 ktri
    enveloped["recipientInfos"].append(info)
    content_info = enveloped["encryptedContentInfo"]
    content_info["contentType"] = rfc5652.id_data
    content_info["contentEncryptionAlgorithm"]["algorithm"] = rfc3565.id_aes256_CBC
    content_info["contentEncryptionAlgorithm"]["parameters"] = encoder.encode(univ.OctetString(iv))
    content_info["encryptedContent"] = ciphertext
    outer = rfc5652.ContentInfo()
    outer["contentType"] = rfc5652.id_envelopedData
    outer["content"] = encoder.encode(enveloped)
    der: bytes = encoder.encode(outer)
    return der


_WRAP = {16: rfc3565.id_aes128_wrap, 24: rfc3565.id_aes192_wrap, 32: rfc3565.id_aes256_wrap}


def envelope_for_kek(content: bytes, key_id: bytes, kek: bytes) -> bytes:
    """DER ContentInfo(EnvelopedData) of ``content`` (as id-data) for the pre-shared AES key
    ``kek`` named ``key_id`` (RFC 7030 §4.4.1.2 DecryptKeyIdentifier)."""
    cek, iv, ciphertext = _encrypt_content(content)
    info = rfc5652.RecipientInfo()
    kekri = info["kekri"]
    kekri["version"] = 4  # RFC 5652 §6.2.3
    kekri["kekid"]["keyIdentifier"] = key_id
    kekri["keyEncryptionAlgorithm"]["algorithm"] = _WRAP[len(kek)]
    kekri["encryptedKey"] = aes_key_wrap(kek, cek)
    return _enveloped(info, iv, ciphertext)


def envelope_for_ec(content: bytes, recipient: x509.Certificate) -> bytes:
    """DER ContentInfo(EnvelopedData) of ``content`` (as id-data) for ``recipient``'s EC key."""
    public = recipient.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise ValueError("the recipient certificate has no EC key")
    ephemeral = ec.generate_private_key(public.curve)
    shared = ephemeral.exchange(ec.ECDH(), public)
    kek = X963KDF(hashes.SHA256(), KEY_BITS // 8, _shared_info()).derive(shared)
    cek, iv, ciphertext = _encrypt_content(content)
    info = rfc5652.RecipientInfo()
    kari = info["kari"]
    kari["version"] = 3  # RFC 5652 §6.2.2
    originator_key = kari["originator"]["originatorKey"]
    originator_key["algorithm"]["algorithm"] = EC_PUBLIC_KEY
    originator_key["publicKey"] = univ.BitString.fromOctetString(
        ephemeral.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    )
    kari["keyEncryptionAlgorithm"]["algorithm"] = rfc5753.dhSinglePass_stdDH_sha256kdf_scheme
    kari["keyEncryptionAlgorithm"]["parameters"] = encoder.encode(_wrap_algorithm())
    encrypted_key = rfc5652.RecipientEncryptedKey()
    encrypted_key["rid"]["issuerAndSerialNumber"] = _issuer_and_serial(recipient)
    encrypted_key["encryptedKey"] = aes_key_wrap(kek, cek)
    kari["recipientEncryptedKeys"].append(encrypted_key)

    return _enveloped(info, iv, ciphertext)
