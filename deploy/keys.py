"""The new key: made on the target when it has openssl, else in certyard and sent over SSH.

On the target, ``openssl req -new -newkey … -nodes -keyout <temp>`` writes the key to a
temporary file beside the key path (umask 077: only its owner can read it) and prints the CSR
(RFC 2986) on stdout; the private key never leaves the host. Only the CSR's public key matters
to certyard's CA (ca/issuance.py ignores its subject), so the subject is just the first name.

In certyard, the key exists only in memory and goes to the target inside the SSH channel
(encrypted by the SSH transport, RFC 4253 §6.3); it is never written to certyard's disk.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import asyncssh
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from deploy.config import KeyType
from deploy.errors import DeployError
from deploy.remote_files import RemoteFiles, temp_name
from deploy.ssh import quote, run

# openssl req -newkey arguments per key type.
_OPENSSL_NEWKEY: dict[str, list[str]] = {
    "ec-p256": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    "ec-p384": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
    "rsa-2048": ["-newkey", "rsa:2048"],
    "rsa-3072": ["-newkey", "rsa:3072"],
    "rsa-4096": ["-newkey", "rsa:4096"],
}
# The shell's "command not found": the target has no openssl.
_NOT_FOUND = 127


@dataclass(frozen=True)
class NewKey:
    csr: x509.CertificateSigningRequest
    tmp_path: str  # the key, already on the target under a temporary name
    origin: str  # "target" | "certyard"


def _subject(common_name: str) -> str:
    # DNS names (LDH) and IP addresses need no escaping in openssl's -subj syntax.
    return f"/CN={common_name[:64]}"


async def generate_on_target(
    conn: asyncssh.SSHClientConnection,
    key_path: str,
    key_type: KeyType,
    common_name: str,
    *,
    seconds: float,
) -> NewKey | None:
    """Make the key on the target; None when the target has no openssl."""
    tmp = temp_name(key_path, "key")
    args = ["openssl", "req", "-new", *_OPENSSL_NEWKEY[key_type], "-nodes", "-sha256"]
    args += ["-keyout", tmp, "-subj", _subject(common_name), "-outform", "PEM"]
    command = "umask 077 && " + " ".join(shlex.quote(a) for a in args)
    result = await run(conn, command, seconds=seconds)
    if result.exit_status == _NOT_FOUND:
        return None
    if result.exit_status != 0:
        await run(conn, f"rm -f -- {quote(tmp)}", seconds=seconds)
        raise DeployError("remote", f"openssl req on the target failed: {result.brief()}")
    try:
        csr = x509.load_pem_x509_csr(result.stdout.encode())
    except ValueError:
        await run(conn, f"rm -f -- {quote(tmp)}", seconds=seconds)
        raise DeployError("remote", "openssl req on the target printed no CSR") from None
    return NewKey(csr, tmp, "target")


async def generate_in_certyard(
    files: RemoteFiles, key_path: str, key_type: KeyType, common_name: str
) -> NewKey:
    """Make the key here and write it to a temporary file on the target (mode 0600)."""
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if key_type.startswith("ec-"):
        key = ec.generate_private_key(ec.SECP256R1() if key_type == "ec-p256" else ec.SECP384R1())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        # The target's service reads the key unencrypted, as it would a key made there;
        # in transit the SSH channel encrypts it.
        serialization.NoEncryption(),
    )
    tmp = await files.write_temp(key_path, pem, 0o600)
    return NewKey(csr, tmp, "certyard")
