"""``certyard ca ...`` as an operator runs it: the real console script as a subprocess, settings
through CERTYARD__* variables, the default PKCS#11 backend (a SoftHSM2 token certyard makes
under the data dir) or the software backend, SQLite and PostgreSQL (``db_url``), and the real
``openssl`` reading the CRLs it writes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.support.server import certyard_command
from tests.support.softhsm import require_softhsm
from tests.support.tools import REPO_ROOT, require_tool

# Issues one certificate with the CA the CLI made: the same settings, another process (a
# PKCS#11 module is process-wide state, so the token is only ever used by subprocesses here).
ISSUE = """
import asyncio, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from certyard.settings import load_settings
from certyard.wiring import build_services

async def main():
    services = await build_services(load_settings(), hierarchy_mode="load")
    try:
        key = ec.generate_private_key(ec.SECP256R1())
        csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(
            key, hashes.SHA256()
        )
        issued = await services.issuance.issue(
            csr, profile="tls-server", dns_names=[sys.argv[1]], requester="cli"
        )
        print(issued.serial_hex, issued.issuer_id)
    finally:
        await services.close()

asyncio.run(main())
"""


class Cli:
    def __init__(self, data_dir: Path, db_url: str, **settings: str) -> None:
        self.data_dir = data_dir
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CERTYARD__")}
        env["CERTYARD__SERVER__DATA_DIR"] = str(data_dir)
        env["CERTYARD__DATABASE__URL"] = db_url
        env.update({f"CERTYARD__{key.upper()}": value for key, value in settings.items()})
        self.env = env
        self.outputs: list[str] = []

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*certyard_command(), "ca", *args],
            env=self.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        self.outputs += [result.stdout, result.stderr]
        return result

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, result
        return result.stdout

    def fails(self, status: int, *args: str) -> str:
        """Run a command that must fail: its status, nothing on stdout, one line on stderr."""
        result = self.run(*args)
        assert result.returncode == status, result
        assert result.stdout == "" and len(result.stderr.splitlines()) == 1, result
        assert result.stderr.startswith("certyard: ")
        return result.stderr

    def issue(self, name: str) -> tuple[str, str]:
        result = subprocess.run(
            [sys.executable, "-c", ISSUE, name],
            env=self.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result
        serial, issuer = result.stdout.splitlines()[-1].split()  # (logs come first)
        return serial, issuer

    def status(self) -> dict[str, dict[str, object]]:
        document = json.loads(self.ok("status", "--json"))
        return {row["id"]: row for row in document["issuers"]}


def _openssl_crl_text(path: Path) -> str:
    result = subprocess.run(
        [require_tool("openssl"), "crl", "-inform", "DER", "-in", str(path), "-noout", "-text"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result
    return result.stdout


def test_hsm_ceremony_status_revoke_crl_rotate(tmp_path: Path, db_url: str) -> None:
    require_softhsm()
    cli = Cli(tmp_path / "data", db_url)  # ca.backend: pkcs11 (the default)

    created = cli.ok("init")
    assert "created the CA hierarchy (key backend pkcs11)" in created
    assert "root-1  (root)" in created
    assert "int-1  (intermediate, chain ecdsa, active)" in created
    assert "int-2  (intermediate, chain rsa, active)" in created
    assert created.count("pkcs11:id=") == 3
    root = x509.load_pem_x509_certificate((cli.data_dir / "ca" / "root.pem").read_bytes())
    spki = root.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert f"SPKI SHA-256   {hashlib.sha256(spki).hexdigest()}" in created
    assert "already has a CA hierarchy" in cli.fails(1, "init")

    serial, issuer = cli.issue("www.example.test")
    assert issuer == "int-1"

    table = cli.ok("status")
    assert table.startswith("key backend: pkcs11, token ok")
    for row in ("root-1", "int-1", "int-2"):
        assert any(line.startswith(f"{row} ") for line in table.splitlines()), table
    issuers = cli.status()
    assert issuers["root-1"]["certificates_signed"] == 3  # itself and the two intermediates
    assert issuers["int-1"]["certificates_signed"] == 1
    assert issuers["int-2"]["certificates_signed"] == 0
    assert {row["key_backend"] for row in issuers.values()} == {"pkcs11"}

    revoked = cli.ok("revoke", serial, "--reason", "keyCompromise")
    assert revoked.startswith(f"revoked serial {serial} (certificate ")
    assert "issuer int-1, reason keyCompromise" in revoked
    crl_path = tmp_path / "int-1.crl"
    assert "wrote the CRL of int-1" in cli.ok("crl", "--issuer", "int-1", "--out", str(crl_path))
    text = _openssl_crl_text(crl_path)
    assert f"Serial Number: {serial.upper()}" in text and "Key Compromise" in text
    assert cli.ok("crl", "--pem").startswith("-----BEGIN X509 CRL-----")  # default: int-1

    assert "no certificate with serial" in cli.fails(1, "revoke", "0badc0de")
    assert "already revoked" in cli.fails(1, "revoke", serial, "--reason", "1")
    assert "unknown revocation reason" in cli.fails(2, "revoke", serial, "--reason", "nope")
    assert "no CA 'nope'" in cli.fails(2, "crl", "--issuer", "nope")

    rotated = cli.ok("rotate", "--chain", "rsa")
    assert "int-3 is its active intermediate" in rotated and "retired int-2" in rotated
    issuers = cli.status()
    assert (issuers["int-2"]["status"], issuers["int-3"]["status"]) == ("retired", "active")
    assert issuers["int-3"]["chain"] == "rsa"

    # Nothing secret in anything the CLI printed: neither PIN of the token.
    for pin_file in ("user-pin", "so-pin"):
        pin = (cli.data_dir / "softhsm" / pin_file).read_text().strip()
        assert pin and not any(pin in output for output in cli.outputs)


def test_ceremony_file_and_added_chain(tmp_path: Path, db_url: str) -> None:
    cli = Cli(tmp_path / "data", db_url, ca__backend="software")
    assert "ca init" in cli.fails(1, "status")  # no hierarchy yet

    bad = tmp_path / "bad.toml"
    bad.write_text("[root]\nkey = { algorithm = 'ec-p256' }\n")
    assert "root.subject" in cli.fails(2, "init", "--ceremony", str(bad))

    example = REPO_ROOT / "conf" / "examples" / "ceremony.toml"
    created = cli.ok("init", "--ceremony", str(example))
    assert "CN=Example ECDSA Issuing CA 1,O=Example Corp,C=XX" in created
    assert "constraints    permitted DNS example.com, example.internal" in created
    assert "int-2  (intermediate, chain rsa, active)" in created
    assert "every chain already has" in cli.fails(1, "init", "--add-intermediate")


def test_add_intermediate_adds_the_missing_chain(tmp_path: Path, db_url: str) -> None:
    ec_only = tmp_path / "ec-only.toml"
    ec_only.write_text(
        "[root]\nkey = { algorithm = 'ec-p256' }\nsubject = { CN = 'Solo Root' }\n"
        "[[intermediates]]\nkey = { algorithm = 'ec-p256' }\nsubject = { CN = 'Solo CA 1' }\n"
    )
    cli = Cli(tmp_path / "data", db_url, ca__backend="software")
    assert "int-2" not in cli.ok("init", "--ceremony", str(ec_only))
    added = cli.ok("init", "--add-intermediate")
    assert "added intermediate int-2 under root-1" in added
    assert "int-2  (intermediate, chain rsa, active)" in added
    assert cli.status()["int-2"]["subject"] == "CN=certyard RSA Issuing CA 1,O=certyard,C=XX"
