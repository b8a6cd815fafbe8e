"""certbot (the real client, from .venv) against certyard.

http-01 (standalone), dns-01 for a wildcard (manual hooks), forced renewal, revocation.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.interop.conftest import HOOKS, Interop, serial_of
from tests.support.tools import require_tool

pytestmark = pytest.mark.interop

EMAIL = "test@example.com"


@dataclass
class Certbot:
    interop: Interop
    path: str
    base: Path

    def argv(self, command: str, *args: str, base: Path | None = None) -> list[str]:
        base = base or self.base
        return [
            self.path,
            command,
            "--config-dir", str(base / "config"),
            "--work-dir", str(base / "work"),
            "--logs-dir", str(base / "logs"),
            "--server", self.interop.certyard.directory_url,
            "--non-interactive",
            *args,
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        return {"REQUESTS_CA_BUNDLE": str(self.interop.certyard.root_pem_path)}

    def run(
        self, command: str, *args: str, base: Path | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.interop.run(self.argv(command, *args, base=base), env=self.env(), check=check)

    def certonly_http(self, cert_name: str, *names: str) -> None:
        domains = [arg for name in names for arg in ("-d", name)]
        self.run(
            "certonly",
            "--agree-tos", "-m", EMAIL, "--no-eff-email",
            "--standalone",
            "--preferred-challenges", "http",
            "--http-01-address", "127.0.0.1",
            "--http-01-port", str(self.interop.http01_port),
            "--cert-name", cert_name,
            *domains,
        )  # fmt: skip

    def live(self, cert_name: str) -> Path:
        return self.base / "config" / "live" / cert_name


@pytest.fixture(scope="module")
def certbot(interop: Interop) -> Certbot:
    base = interop.work_dir / "certbot"
    base.mkdir()
    return Certbot(interop, require_tool("certbot"), base)


@pytest.fixture(scope="module")
def http_lineage(certbot: Certbot) -> Path:
    """A certificate for two names obtained over http-01 (certbot's standalone server)."""
    certbot.certonly_http("ab", "a.example.test", "b.example.test")
    return certbot.live("ab")


def test_register(certbot: Certbot, tmp_path: Path) -> None:
    certbot.run("register", "--agree-tos", "-m", EMAIL, "--no-eff-email", base=tmp_path)
    accounts = list((tmp_path / "config" / "accounts").rglob("regr.json"))
    assert len(accounts) == 1, accounts
    assert certbot.interop.certyard.base_url.removeprefix("https://") in str(accounts[0])


def test_http01_two_names(certbot: Certbot, http_lineage: Path) -> None:
    certbot.interop.check_certificate(
        http_lineage / "cert.pem", http_lineage / "chain.pem", ["a.example.test", "b.example.test"]
    )


def test_dns01_wildcard(certbot: Certbot) -> None:
    certbot.run(
        "certonly",
        "--agree-tos", "-m", EMAIL, "--no-eff-email",
        "--manual",
        "--preferred-challenges", "dns",
        "--manual-auth-hook", str(HOOKS / "certbot-auth.sh"),
        "--manual-cleanup-hook", str(HOOKS / "certbot-cleanup.sh"),
        "--cert-name", "wild",
        "-d", "*.wild.example.test",
        "-d", "wild.example.test",
    )  # fmt: skip
    live = certbot.live("wild")
    certbot.interop.check_certificate(
        live / "cert.pem", live / "chain.pem", ["*.wild.example.test", "wild.example.test"]
    )
    # The cleanup hook withdrew the TXT values.
    assert not (certbot.interop.txt_dir / "_acme-challenge.wild.example.test").exists()


def test_renew_force(certbot: Certbot, http_lineage: Path) -> None:
    before = serial_of(http_lineage / "cert.pem")
    certbot.run(
        "renew",
        "--cert-name", "ab",
        "--force-renewal",
        "--no-random-sleep-on-renew",
        "--http-01-address", "127.0.0.1",
        "--http-01-port", str(certbot.interop.http01_port),
    )  # fmt: skip
    after = serial_of(http_lineage / "cert.pem")
    assert after != before
    certbot.interop.check_certificate(
        http_lineage / "cert.pem", http_lineage / "chain.pem", ["a.example.test", "b.example.test"]
    )


def test_revoke(certbot: Certbot) -> None:
    certbot.certonly_http("revoke", "revoke.example.test")
    cert = certbot.live("revoke") / "cert.pem"
    certbot.interop.check_certificate(cert, cert.with_name("chain.pem"), ["revoke.example.test"])
    revoke = ("--cert-path", str(cert), "--reason", "keycompromise", "--no-delete-after-revoke")
    certbot.run("revoke", *revoke)

    # --debug: certbot then prints the ACME error (with its type), not only its detail.
    again = certbot.run("revoke", "--debug", *revoke, check=False)
    output = again.stdout + again.stderr
    assert again.returncode != 0, certbot.interop.report(
        certbot.argv("revoke", *revoke), again.returncode, again.stdout, again.stderr,
        "succeeded a second time",
    )  # fmt: skip
    assert "alreadyRevoked" in output, output


def test_ip_address_certificate(certbot: Certbot) -> None:
    """RFC 8738: an IP identifier, validated with http-01 at the address itself."""
    from cryptography import x509

    certbot.run(
        "certonly",
        "--agree-tos", "-m", EMAIL, "--no-eff-email",
        "--standalone",
        "--preferred-challenges", "http",
        "--http-01-address", "127.0.0.1",
        "--http-01-port", str(certbot.interop.http01_port),
        "--cert-name", "ip",
        "--ip-address", "127.0.0.1",
    )  # fmt: skip
    live = certbot.live("ip")
    leaf = x509.load_pem_x509_certificate((live / "cert.pem").read_bytes())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert sans.get_values_for_type(x509.DNSName) == []
    verified = subprocess.run(
        ["openssl", "verify", "-purpose", "sslserver",
         "-CAfile", str(certbot.interop.certyard.root_pem_path),
         "-untrusted", str(live / "chain.pem"), str(live / "cert.pem")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
