"""Revocation information of a certbot certificate, checked with openssl and pkilint.

certbot obtains a certificate over http-01 (standalone) from a real ``certyard serve``; then:

* its CRL Distribution Point and AIA caIssuers URLs point at the server's plain-HTTP listener,
  and the caIssuers URL serves the intermediate that signed it;
* pkilint's CA/B Forum TLS BR linter (``lint_cabf_serverauth_cert``) finds nothing at WARNING
  or above, except that ``.example.test`` and the loopback listener's 127.0.0.1 are internal
  names;
* ``openssl ocsp`` says "good" and verifies the response; after ``certbot revoke --reason
  keycompromise`` it says "revoked" with "Reason: keyCompromise" (POST, and GET per RFC 6960
  Appendix A.1); the CRL at the CRL DP URL verifies, lists the serial with reason Key Compromise,
  and ``openssl verify -crl_check`` refuses the certificate as revoked.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID

from tests.interop.conftest import Interop
from tests.support.tools import require_tool

pytestmark = pytest.mark.interop

EMAIL = "test@example.com"
NAME = "ocsp.example.test"
HTTP_TIMEOUT = 30.0
# The only pkilint finding at WARNING or above we accept, and why: cabf.internal_domain_name
# (BR §4.2.2, §7.1.2.7.12) - the test's certificate name ends in ".example.test", a reserved
# domain (RFC 2606/6761), and its CRL DP and caIssuers URLs name the server's loopback listener
# (127.0.0.1); both are internal by design (a private CA on loopback; ca.allow_internal_names,
# docs/ca.md). Any other finding, or this one about any other name, fails the test.
ACCEPTED_LINT_CODE = "cabf.internal_domain_name"


@dataclass
class Certbot:
    """certbot with its own config, work and logs directories, trusting certyard's root."""

    interop: Interop
    path: str
    base: Path

    def argv(self, command: str, *args: str) -> list[str]:
        return [
            self.path,
            command,
            "--config-dir", str(self.base / "config"),
            "--work-dir", str(self.base / "work"),
            "--logs-dir", str(self.base / "logs"),
            "--server", self.interop.certyard.directory_url,
            "--non-interactive",
            *args,
        ]  # fmt: skip

    def run(self, command: str, *args: str) -> None:
        env = {"REQUESTS_CA_BUNDLE": str(self.interop.certyard.root_pem_path)}
        self.interop.run(self.argv(command, *args), env=env)


@dataclass
class Issued:
    """One certbot certificate, plus the files openssl wants."""

    interop: Interop
    certbot: Certbot
    leaf_path: Path  # certbot's cert.pem
    int_path: Path  # certbot's chain.pem: the intermediate alone
    chain_path: Path  # intermediate + root, for `openssl crl -CAfile`
    leaf: x509.Certificate
    intermediate: x509.Certificate

    @property
    def root_path(self) -> Path:
        return self.interop.certyard.root_pem_path

    @property
    def serial_hex(self) -> str:
        return format(self.leaf.serial_number, "x")

    def openssl(self, *args: str, check: bool = True) -> tuple[int, str]:
        """Run openssl; returns (exit status, stdout + stderr)."""
        result = self.interop.run([self.interop.openssl, *args], check=check)
        return result.returncode, result.stdout + result.stderr

    def ocsp_post(self) -> str:
        """``openssl ocsp`` over POST (with a nonce, openssl's default) against certyard."""
        _, output = self.openssl(
            "ocsp",
            "-issuer", str(self.int_path),
            "-cert", str(self.leaf_path),
            "-url", f"{self.interop.certyard.http_url}/ocsp",
            "-CAfile", str(self.root_path),
        )  # fmt: skip
        assert "Response verify OK" in output, output
        return output


def http_get(url: str) -> tuple[int, str, bytes]:
    """A plain-HTTP GET (urllib): status, Content-Type, body."""
    assert url.startswith("http://"), url  # revocation data is fetched without TLS
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read()


def first_pem(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def on_http_listener(issued: Issued, url: str) -> None:
    """``url`` is plain HTTP on the port of the server's http listener, on loopback."""
    parsed = urllib.parse.urlsplit(url)
    assert parsed.scheme == "http", url
    assert parsed.hostname in ("127.0.0.1", "localhost"), url
    assert parsed.port == issued.interop.certyard.http_port, url


def crl_dp_url(leaf: x509.Certificate) -> str:
    points = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    urls = [
        name.value
        for point in points
        for name in (point.full_name or [])
        if isinstance(name, x509.UniformResourceIdentifier)
    ]
    assert len(urls) == 1, urls
    return str(urls[0])


def ca_issuers_url(leaf: x509.Certificate) -> str:
    aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    urls = [
        desc.access_location.value
        for desc in aia
        if desc.access_method == AuthorityInformationAccessOID.CA_ISSUERS
        and isinstance(desc.access_location, x509.UniformResourceIdentifier)
    ]
    assert len(urls) == 1, urls
    return str(urls[0])


def ocsp_status_line(output: str, leaf_path: Path) -> str:
    match = re.search(rf"^{re.escape(str(leaf_path))}: (\w+)$", output, re.MULTILINE)
    assert match, output
    return match.group(1)


@pytest.fixture(scope="module")
def issued(interop: Interop) -> Issued:
    """One certificate from certbot (http-01, standalone)."""
    certbot = Certbot(interop, require_tool("certbot"), interop.work_dir / "certbot-revocation")
    certbot.base.mkdir()
    certbot.run(
        "certonly",
        "--agree-tos", "-m", EMAIL, "--no-eff-email",
        "--standalone",
        "--preferred-challenges", "http",
        "--http-01-address", "127.0.0.1",
        "--http-01-port", str(interop.http01_port),
        "--cert-name", NAME,
        "-d", NAME,
    )  # fmt: skip
    live = certbot.base / "config" / "live" / NAME
    leaf = interop.check_certificate(live / "cert.pem", live / "chain.pem", [NAME])
    files = certbot.base / "files"
    files.mkdir()
    chain_path = files / "int-and-root.pem"
    chain_path.write_text(
        (live / "chain.pem").read_text() + interop.certyard.root_pem_path.read_text()
    )
    return Issued(
        interop=interop,
        certbot=certbot,
        leaf_path=live / "cert.pem",
        int_path=live / "chain.pem",
        chain_path=chain_path,
        leaf=leaf,
        intermediate=first_pem(live / "chain.pem"),
    )


def test_crl_dp_and_aia_point_at_the_http_listener(issued: Issued) -> None:
    on_http_listener(issued, crl_dp_url(issued.leaf))
    url = ca_issuers_url(issued.leaf)
    on_http_listener(issued, url)

    # RFC 5280 §4.2.2.1: caIssuers over HTTP serves a DER certificate (application/pkix-cert).
    status, content_type, body = http_get(url)
    assert status == 200
    assert content_type == "application/pkix-cert", content_type
    fetched = x509.load_der_x509_certificate(body)
    assert fetched == issued.intermediate  # the intermediate certbot got in chain.pem
    assert fetched.subject == issued.leaf.issuer
    constraints = fetched.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    root = first_pem(issued.root_path)
    assert fetched != root
    issued.leaf.verify_directly_issued_by(fetched)
    fetched.verify_directly_issued_by(root)


def test_pkilint_cabf_serverauth_finds_nothing_but_internal_names(issued: Issued) -> None:
    linter = require_tool("lint_cabf_serverauth_cert")
    argv = [
        linter, "lint",
        "--detect", "--output",  # detect the type from the policy OID / EKU, print it
        "--severity", "WARNING",
        "--format", "JSON",
        "--document-format", "PEM",
        str(issued.leaf_path),
    ]  # fmt: skip
    # The linter exits non-zero when it reports findings: judge by its report, not its status.
    result = issued.interop.run(argv, check=False)
    report = issued.interop.report(argv, result.returncode, result.stdout, result.stderr, "ran")
    assert result.stderr.strip() == "DV-FINAL-CERTIFICATE", report  # the detected type
    flagged = [
        (finding["severity"], finding["code"], finding.get("message") or "")
        for node in json.loads(result.stdout)["results"]
        for finding in node["finding_descriptions"]
        if finding["severity"] in ("FATAL", "ERROR", "WARNING")
    ]
    internal_names = {
        NAME,  # the subjectAltName dNSName
        urllib.parse.urlsplit(crl_dp_url(issued.leaf)).hostname,  # the CRL DP URI's host
        urllib.parse.urlsplit(ca_issuers_url(issued.leaf)).hostname,  # the caIssuers URI's host
    }
    accepted = {f'Internal domain name: "{name}"' for name in internal_names}
    unexpected = [
        item for item in flagged if item[1] != ACCEPTED_LINT_CODE or item[2] not in accepted
    ]
    assert unexpected == [], report
    # The exception is really there (the name is internal), so the check above is not vacuous.
    assert f'Internal domain name: "{NAME}"' in {item[2] for item in flagged}, report


def test_ocsp_and_crl_after_certbot_revoke(issued: Issued) -> None:
    crl_url = crl_dp_url(issued.leaf)

    # Before: OCSP good, and the CRL does not list the serial.
    output = issued.ocsp_post()
    assert ocsp_status_line(output, issued.leaf_path) == "good", output
    _, _, body = http_get(crl_url)
    crl = x509.load_der_x509_crl(body)
    assert crl.get_revoked_certificate_by_serial_number(issued.leaf.serial_number) is None

    issued.certbot.run(
        "revoke",
        "--cert-path", str(issued.leaf_path),
        "--reason", "keycompromise",
        "--no-delete-after-revoke",
    )  # fmt: skip

    # OCSP over POST: revoked, reason keyCompromise, response verifies.
    output = issued.ocsp_post()
    assert ocsp_status_line(output, issued.leaf_path) == "revoked", output
    assert re.search(r"^\s*Reason: keyCompromise$", output, re.MULTILINE), output

    check_ocsp_get(issued)
    check_crl(issued, crl_url)


def check_ocsp_get(issued: Issued) -> None:
    """RFC 6960 Appendix A.1: GET {url}/{url-encoding of base64 of the DER OCSPRequest}."""
    files = issued.chain_path.parent
    request_path, response_path = files / "ocsp-req.der", files / "ocsp-resp.der"
    issued.openssl(
        "ocsp",
        "-issuer", str(issued.int_path),
        "-cert", str(issued.leaf_path),
        "-no_nonce",  # a GET request is meant to be cacheable (RFC 5019 §2.1.1)
        "-reqout", str(request_path),
    )  # fmt: skip
    encoded = urllib.parse.quote(base64.b64encode(request_path.read_bytes()).decode(), safe="")
    status, content_type, body = http_get(f"{issued.interop.certyard.http_url}/ocsp/{encoded}")
    assert status == 200
    assert content_type == "application/ocsp-response", content_type
    response_path.write_bytes(body)

    parsed = ocsp.load_der_ocsp_response(body)
    assert parsed.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert parsed.serial_number == issued.leaf.serial_number
    assert parsed.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert parsed.revocation_reason == x509.ReasonFlags.key_compromise

    _, output = issued.openssl(
        "ocsp",
        "-respin", str(response_path),
        "-issuer", str(issued.int_path),
        "-cert", str(issued.leaf_path),
        "-CAfile", str(issued.root_path),
    )  # fmt: skip
    assert "Response verify OK" in output, output
    assert ocsp_status_line(output, issued.leaf_path) == "revoked", output
    assert re.search(r"^\s*Reason: keyCompromise$", output, re.MULTILINE), output


def check_crl(issued: Issued, crl_url: str) -> None:
    files = issued.chain_path.parent
    der_path, pem_path = files / "int.crl", files / "int.crl.pem"
    status, content_type, body = http_get(crl_url)
    assert status == 200
    assert content_type == "application/pkix-crl", content_type
    der_path.write_bytes(body)

    # The CRL's signature verifies against the intermediate (chained to the root).
    _, output = issued.openssl(
        "crl", "-inform", "DER", "-in", str(der_path), "-CAfile", str(issued.chain_path), "-noout"
    )
    assert "verify OK" in output, output

    # The entry: the leaf's serial with reason Key Compromise (RFC 5280 §5.3.1).
    _, text = issued.openssl("crl", "-inform", "DER", "-in", str(der_path), "-noout", "-text")
    entries = re.split(r"^\s*Serial Number: ", text, flags=re.MULTILINE)[1:]
    by_serial = {entry.split(None, 1)[0].lower().lstrip("0"): entry for entry in entries}
    assert issued.serial_hex in by_serial, text
    assert re.search(
        r"X509v3 CRL Reason Code:\s*\n\s*Key Compromise\s*$",
        by_serial[issued.serial_hex],
        re.MULTILINE,
    ), text

    # openssl verify with the CRL refuses the certificate.
    issued.openssl("crl", "-inform", "DER", "-in", str(der_path), "-out", str(pem_path))
    code, output = issued.openssl(
        "verify",
        "-crl_check",
        "-CRLfile", str(pem_path),
        "-CAfile", str(issued.root_path),
        "-untrusted", str(issued.int_path),
        str(issued.leaf_path),
        check=False,
    )  # fmt: skip
    assert code != 0, output
    assert "certificate revoked" in output, output
