"""EST interop (RFC 7030 / RFC 8951) with the real curl and openssl against ``certyard serve``:
what a device script or a tutorial does by hand."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from est_server.keygen import ASYMM_DECRYPT_KEY_ID
from tests.interop.conftest import Interop
from tests.support.dnsserver import TestDNSServer
from tests.support.est_pki import Manufacturer, csr_with, manufacturer, pem_cert, pem_key
from tests.support.server import CertyardServer, certyard_command, free_port
from tests.support.tools import require_tool

PASSWORD = "interop-pass-1234"
# The default label, and one that holds enrollments for an operator (RFC 7030 §4.2.3).
LABELS = {
    "default": {"profile": "device", "auth": "either"},
    "held": {"profile": "device", "auth": "basic", "approval": True},
}


@pytest.fixture(scope="module")
def maker(interop_dir: Path) -> Manufacturer:
    """A device manufacturer whose IDevIDs the "factory" label accepts (RFC 7030 §3.3.2)."""
    return manufacturer()


@pytest.fixture(scope="module")
def certyard_server(
    interop_dir: Path, dns_server: TestDNSServer, maker: Manufacturer
) -> Iterator[CertyardServer]:
    """tests/interop/conftest.py's server, with the EST labels above and "factory"."""
    labels: dict[str, Any] = {
        **LABELS,
        "factory": {
            "profile": "device",
            "auth": "cert",
            "manufacturer_cas": [str(maker.write(interop_dir / "manufacturer.pem"))],
        },
    }
    data_dir = interop_dir / "certyard"
    server = CertyardServer(
        data_dir,
        database_url=f"sqlite+aiosqlite:///{data_dir}/certyard.db",
        http01_port=free_port(),
        tlsalpn01_port=free_port(),
        dns_resolvers=[dns_server.address],
        validation_deny=[],
        extra_env={"CERTYARD__EST__LABELS": json.dumps(labels)},
    )
    with server:
        yield server


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
    """curl against the EST endpoint (``operation`` may start with "<label>/"), body to
    ``out``, headers to ``out.headers``; the HTTP status."""
    result = interop.run(
        [
            curl,
            "-sS",
            "--cacert",
            str(interop.certyard.root_pem_path),
            "-o",
            str(out),
            "-D",
            f"{out}.headers",
            "-w",
            "%{http_code}",
            *args,
            url(interop, operation),
        ]
    )
    return int(result.stdout.strip())


def header(out: Path, name: str) -> str | None:
    for line in Path(f"{out}.headers").read_text().splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == name.lower():
            return value.strip()
    return None


def certyard_cli(interop: Interop, *argv: str) -> str:
    result = subprocess.run(
        [*certyard_command(), *argv],
        env=interop.certyard.environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


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

    # §4.3 Full CMC is not offered -> 501.
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


def test_approval_flow_with_curl(interop: Interop, curl: str, est_user: tuple[str, str]) -> None:
    """RFC 7030 §4.2.3: 202 + Retry-After, ``certyard est approve``, the same CSR again → 200."""
    work = interop.work_dir
    csr, _ = make_csr(interop, "held-1", "meter-17")
    post = ["--user", ":".join(est_user), "--data-binary", f"@{csr}"]
    post += ["-H", "Content-Type: application/pkcs10"]
    held = work / "held-1.txt"
    assert request(interop, curl, "held/simpleenroll", held, *post) == 202
    assert int(header(held, "Retry-After") or "0") > 0
    pending = [
        json.loads(line) for line in certyard_cli(interop, "est", "pending", "--json").splitlines()
    ]
    (entry,) = [p for p in pending if p["subject"] == "CN=meter-17"]
    assert entry["label"] == "held"
    assert f"approved EST enrollment {entry['id']}" in certyard_cli(
        interop, "est", "approve", entry["id"]
    )
    reply = work / "held-1.b64"
    assert request(interop, curl, "held/simpleenroll", reply, *post) == 200
    cert = decode_certs(interop, reply)
    assert "CN = meter-17" in subject(interop, cert)


def test_encrypted_serverkeygen_with_curl_and_openssl_cms(
    interop: Interop, curl: str, est_user: tuple[str, str]
) -> None:
    """RFC 7030 §4.4.2: the key comes back in CMS EnvelopedData for the client's certificate,
    opened with ``openssl cms -decrypt``, its SignedData checked with ``openssl cms -verify``."""
    work = interop.work_dir
    openssl = interop.openssl
    # An EC client certificate from simpleenroll: the key comes back encrypted to it by key
    # agreement (kari, RFC 5753); tests/integration/test_est_more.py covers RSA (ktri) too.
    key = work / "kt.key"
    interop.run(
        [
            openssl,
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            str(key),
        ]
    )
    csr, _ = make_csr(interop, "kt", "kt-client", key=key)
    reply = work / "kt.b64"
    basic = ["--user", ":".join(est_user)]
    pkcs10 = ["-H", "Content-Type: application/pkcs10"]
    assert (
        request(interop, curl, "simpleenroll", reply, *basic, "--data-binary", f"@{csr}", *pkcs10)
        == 200
    )
    cert = decode_certs(interop, reply)
    # The CSR names that certificate by its subjectKeyIdentifier (AsymmetricDecryptKeyIdentifier;
    # openssl req cannot add an OCTET STRING attribute, hence Python for this one file).
    ski = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    )
    der, _ = csr_with("enc-device", attributes=((ASYMM_DECRYPT_KEY_ID, ski.value.digest, True),))
    template = work / "enc.der"
    template.write_bytes(der)
    interop.run(["bash", "-o", "pipefail", "-c", f"base64 < {template} > {template}.b64"])
    answer = work / "enc.multipart"
    status = request(
        interop,
        curl,
        "serverkeygen",
        answer,
        "--cert",
        str(cert),
        "--key",
        str(key),
        "--data-binary",
        f"@{template}.b64",
        *pkcs10,
    )
    assert status == 200, answer.read_text()
    assert "smime-type=server-generated-key" in answer.read_text().split("--", 2)[1]
    split = (
        f"tr -d '\\r' < {answer} | awk -v dir={work} "
        "'/^--/{n++; head=1; next} head && /^$/{head=0; next} "
        '!head{print > (dir "/enc" n ".b64")}\''
    )
    interop.run(["bash", "-o", "pipefail", "-c", split])
    interop.run(["bash", "-o", "pipefail", "-c", f"base64 -d < {work}/enc1.b64 > {work}/key.p7"])
    interop.run(
        [
            openssl,
            "cms",
            "-decrypt",
            "-inform",
            "DER",
            "-in",
            str(work / "key.p7"),
            "-recip",
            str(cert),
            "-inkey",
            str(key),
            "-out",
            str(work / "signed.der"),
        ]
    )
    interop.run(
        [
            openssl,
            "cms",
            "-verify",
            "-inform",
            "DER",
            "-in",
            str(work / "signed.der"),
            "-binary",
            "-purpose",
            "any",
            "-CAfile",
            str(interop.certyard.root_pem_path),
            "-out",
            str(work / "package.der"),
        ]
    )
    # RFC 5958 AsymmetricKeyPackage: SEQUENCE OF OneAsymmetricKey; take the first one.
    parsed = interop.run(
        [openssl, "asn1parse", "-inform", "DER", "-in", str(work / "package.der")]
    ).stdout
    first = parsed.splitlines()[1].split(":")[0].strip()
    interop.run(
        [
            openssl,
            "asn1parse",
            "-inform",
            "DER",
            "-in",
            str(work / "package.der"),
            "-strparse",
            first,
            "-noout",
            "-out",
            str(work / "generated.der"),
        ]
    )
    key_pub = interop.run(
        [openssl, "pkey", "-inform", "DER", "-in", str(work / "generated.der"), "-pubout"]
    ).stdout
    issued = decode_certs(interop, work / "enc2.b64")
    cert_pub = interop.run([openssl, "x509", "-noout", "-pubkey", "-in", str(issued)]).stdout
    assert key_pub.strip() and key_pub == cert_pub
    assert "CN = enc-device" in subject(interop, issued)


def test_csrattrs_with_curl_and_asn1parse(interop: Interop, curl: str) -> None:
    """RFC 7030 §4.5.2 / RFC 9908: the default label's profile as a CSR template."""
    work = interop.work_dir
    reply = work / "csrattrs.b64"
    assert request(interop, curl, "csrattrs", reply) == 200
    assert header(reply, "Content-Type") == "application/csrattrs"
    der = work / "csrattrs.der"
    interop.run(["bash", "-o", "pipefail", "-c", f"base64 -d < {reply} > {der}"])
    parsed = interop.run([interop.openssl, "asn1parse", "-inform", "DER", "-in", str(der)]).stdout
    # id-aa-certificationRequestInfoTemplate, a CN to fill in, id-aa-extensionReqTemplate with
    # the EKU the device profile fixes.
    assert ":1.2.840.113549.1.9.16.2.61" in parsed
    assert ":commonName" in parsed
    assert ":1.2.840.113549.1.9.16.2.62" in parsed
    assert "X509v3 Extended Key Usage" in parsed


def test_idevid_enrollment_with_curl(interop: Interop, curl: str, maker: Manufacturer) -> None:
    """RFC 7030 §3.3.2: a device with only its manufacturer's certificate enrolls under the
    label that trusts that manufacturer, and nowhere else."""
    work = interop.work_dir
    idevid, idevid_key = maker.idevid("SN-77")
    cert, key = work / "idevid.pem", work / "idevid.key"
    cert.write_bytes(pem_cert(idevid))
    key.write_bytes(pem_key(idevid_key))
    csr, _ = make_csr(interop, "ldevid", "sensor-77")
    post = ["--cert", str(cert), "--key", str(key), "--data-binary", f"@{csr}"]
    post += ["-H", "Content-Type: application/pkcs10"]
    reply = work / "ldevid.b64"
    assert request(interop, curl, "factory/simpleenroll", reply, *post) == 200
    assert "CN = sensor-77" in subject(interop, decode_certs(interop, reply))
    # The default label ("either") does not count the IDevID: Basic is asked for instead.
    assert request(interop, curl, "simpleenroll", work / "ldevid-401.txt", *post) == 401
