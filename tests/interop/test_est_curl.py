"""EST interop (RFC 7030 / RFC 8951) with the real curl and openssl against ``certyard serve``:
what a device script or a tutorial does by hand."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.interop.conftest import Interop
from tests.support.server import certyard_command
from tests.support.tools import require_tool

PASSWORD = "interop-pass-1234"


@pytest.fixture(scope="module")
def curl() -> str:
    return require_tool("curl")


@pytest.fixture(scope="module")
def est_user(interop: Interop) -> tuple[str, str]:
    """``certyard est user add`` with the password on stdin (not a terminal)."""
    env = interop.certyard.environment()
    result = subprocess.run(
        [*certyard_command(), "est", "user", "add", "device-maker"],
        input=PASSWORD + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    listed = subprocess.run(
        [*certyard_command(), "est", "user", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert '"name": "device-maker"' in listed.stdout
    return "device-maker", PASSWORD


def url(interop: Interop, operation: str) -> str:
    return f"{interop.certyard.base_url}/.well-known/est/{operation}"


def request(interop: Interop, curl: str, operation: str, out: Path, *args: str) -> int:
    """curl against the EST endpoint, body to ``out``; the HTTP status."""
    result = interop.run(
        [
            curl,
            "-sS",
            "--cacert",
            str(interop.certyard.root_pem_path),
            "-o",
            str(out),
            "-w",
            "%{http_code}",
            *args,
            url(interop, operation),
        ]
    )
    return int(result.stdout.strip())


def decode_certs(interop: Interop, b64_path: Path) -> Path:
    """RFC 8951 base64 -> DER -> ``openssl pkcs7 -print_certs`` -> PEM file."""
    der = b64_path.with_suffix(".der")
    pem = b64_path.with_suffix(".pem")
    interop.run(["bash", "-o", "pipefail", "-c", f"base64 -d < {b64_path} > {der}"])
    interop.run(
        [
            interop.openssl,
            "pkcs7",
            "-inform",
            "DER",
            "-print_certs",
            "-in",
            str(der),
            "-out",
            str(pem),
        ]
    )
    return pem


def make_csr(interop: Interop, name: str, cn: str, key: Path | None = None) -> tuple[Path, Path]:
    """``openssl req`` DER CSR (a new P-256 key unless ``key``), base64 as a file."""
    work = interop.work_dir
    key_path = key or work / f"{name}.key"
    der = work / f"{name}.csr.der"
    argv = [
        interop.openssl,
        "req",
        "-new",
        "-subj",
        f"/CN={cn}",
        "-outform",
        "DER",
        "-out",
        str(der),
    ]
    if key is None:
        argv += [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(key_path),
        ]
    else:
        argv += ["-key", str(key)]
    interop.run(argv)
    b64 = work / f"{name}.csr.b64"
    interop.run(["bash", "-o", "pipefail", "-c", f"base64 < {der} > {b64}"])
    return b64, key_path


def verify(interop: Interop, cert: Path, cacerts: Path) -> None:
    result = interop.run(
        [
            interop.openssl,
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            str(interop.certyard.root_pem_path),
            "-untrusted",
            str(cacerts),
            str(cert),
        ]
    )
    assert result.stdout.strip() == f"{cert}: OK"


def subject(interop: Interop, cert: Path) -> str:
    result = interop.run([interop.openssl, "x509", "-noout", "-subject", "-in", str(cert)])
    return result.stdout.strip()


def test_est_with_curl_and_openssl(interop: Interop, curl: str, est_user: tuple[str, str]) -> None:
    work = interop.work_dir
    pkcs10 = ["-H", "Content-Type: application/pkcs10"]

    # RFC 7030 §4.1: cacerts without authentication, piped the way the issue describes.
    cacerts = work / "cacerts.pem"
    interop.run(
        [
            "bash",
            "-o",
            "pipefail",
            "-c",
            f"{curl} -sS --fail --cacert {interop.certyard.root_pem_path} "
            f"{url(interop, 'cacerts')} | base64 -d "
            f"| {interop.openssl} pkcs7 -inform DER -print_certs -out {cacerts}",
        ]
    )
    assert cacerts.read_text().count("BEGIN CERTIFICATE") == 3  # ECDSA + RSA issuing CAs, root

    # RFC 7030 §4.2.1: simpleenroll with HTTP Basic.
    csr, key = make_csr(interop, "device-1", "device-1")
    reply = work / "enroll-1.b64"
    assert (
        request(
            interop,
            curl,
            "simpleenroll",
            reply,
            "--user",
            ":".join(est_user),
            "--data-binary",
            f"@{csr}",
            *pkcs10,
        )
        == 200
    )
    cert = decode_certs(interop, reply)
    verify(interop, cert, cacerts)
    assert "CN = device-1" in subject(interop, cert)

    # Without credentials: 401 and a Basic challenge.
    assert (
        request(
            interop, curl, "simpleenroll", work / "401.txt", "--data-binary", f"@{csr}", *pkcs10
        )
        == 401
    )

    # simpleenroll authenticated by the certificate just obtained (TLS client certificate).
    csr2, _ = make_csr(interop, "device-2", "device-2")
    reply2 = work / "enroll-2.b64"
    client = ["--cert", str(cert), "--key", str(key)]
    assert (
        request(
            interop, curl, "simpleenroll", reply2, *client, "--data-binary", f"@{csr2}", *pkcs10
        )
        == 200
    )
    verify(interop, decode_certs(interop, reply2), cacerts)

    # RFC 7030 §4.2.2: simplereenroll with it, same subject, a new key (rekey).
    csr3, _ = make_csr(interop, "device-1-rekey", "device-1")
    reply3 = work / "reenroll.b64"
    assert (
        request(
            interop, curl, "simplereenroll", reply3, *client, "--data-binary", f"@{csr3}", *pkcs10
        )
        == 200
    )
    renewed = decode_certs(interop, reply3)
    verify(interop, renewed, cacerts)
    assert subject(interop, renewed) == subject(interop, cert)

    # RFC 7030 §4.5.2: no CSR attributes -> 204; §4.3 Full CMC is not offered -> 501.
    assert request(interop, curl, "csrattrs", work / "csrattrs.out") == 204
    assert (
        request(
            interop,
            curl,
            "fullcmc",
            work / "fullcmc.txt",
            "--data-binary",
            f"@{csr}",
            "-H",
            "Content-Type: application/pkcs7-mime",
        )
        == 501
    )


def test_serverkeygen_with_curl_and_openssl(
    interop: Interop, curl: str, est_user: tuple[str, str]
) -> None:
    """RFC 7030 §4.4: the multipart answer split with awk, the PKCS#8 key and the certs-only
    CMS decoded by openssl, the key matching the certificate."""
    work = interop.work_dir
    csr, _ = make_csr(interop, "keygen-1", "keygen-1")
    reply = work / "serverkeygen.multipart"
    status = request(
        interop,
        curl,
        "serverkeygen",
        reply,
        "--user",
        ":".join(est_user),
        "--data-binary",
        f"@{csr}",
        "-H",
        "Content-Type: application/pkcs10",
    )
    assert status == 200, reply.read_text()
    # One file per part body: part1 the key (application/pkcs8), part2 the certificate.
    split = (
        f"tr -d '\\r' < {reply} | awk -v dir={work} "
        "'/^--/{n++; head=1; next} head && /^$/{head=0; next} "
        '!head{print > (dir "/part" n ".b64")}\''
    )
    interop.run(["bash", "-o", "pipefail", "-c", split])
    assert "Content-Type: application/pkcs8" in reply.read_text().split("--", 2)[1]
    key_der = work / "keygen.key.der"
    interop.run(["bash", "-o", "pipefail", "-c", f"base64 -d < {work}/part1.b64 > {key_der}"])
    key_pub = interop.run(
        [interop.openssl, "pkey", "-inform", "DER", "-in", str(key_der), "-pubout"]
    ).stdout
    cert = decode_certs(interop, work / "part2.b64")
    cert_pub = interop.run([interop.openssl, "x509", "-noout", "-pubkey", "-in", str(cert)]).stdout
    assert key_pub.strip() and key_pub == cert_pub
    assert "CN = keygen-1" in subject(interop, cert)


def test_acme_directory_still_answers_without_client_certificate(interop: Interop) -> None:
    """The listener asks for an optional client certificate; ACME clients send none."""
    assert interop.certyard.get_status("/acme/directory") == 200
