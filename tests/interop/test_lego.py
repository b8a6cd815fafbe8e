"""lego (Debian package) against certyard: http-01, tls-alpn-01, dns-01 wildcard, renew, revoke."""

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
class Lego:
    interop: Interop
    path: str
    base: Path

    def run(
        self, names: list[str], *args: str, env: dict[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``lego <global flags> -d NAME... <args>``; lego 4.9 wants global flags first."""
        argv = [
            self.path,
            "--server", self.interop.certyard.directory_url,
            "--accept-tos",
            "--email", EMAIL,
            "--path", str(self.base),
            *[arg for name in names for arg in ("-d", name)],
            *args,
        ]  # fmt: skip
        client_env = {"LEGO_CA_CERTIFICATES": str(self.interop.certyard.root_pem_path)}
        return self.interop.run(argv, env={**client_env, **(env or {})}, check=check)

    def http(self) -> list[str]:
        return ["--http", "--http.port", f"127.0.0.1:{self.interop.http01_port}"]

    def tls(self) -> list[str]:
        return ["--tls", "--tls.port", f"127.0.0.1:{self.interop.tlsalpn01_port}"]

    def dns(self) -> tuple[list[str], dict[str, str]]:
        flags = ["--dns", "exec", "--dns.resolvers", self.interop.dns.address, "--dns.disable-cp"]
        env = {
            "EXEC_PATH": str(HOOKS / "lego-exec.sh"),
            "EXEC_PROPAGATION_TIMEOUT": "60",
            "EXEC_POLLING_INTERVAL": "1",
            # The exec provider solves one name at a time, waiting this long (default 60 s)
            # between two names: the wildcard and the base name share one TXT name.
            "EXEC_SEQUENCE_INTERVAL": "1",
        }
        return flags, env

    def bundle(self, first_name: str) -> Path:
        """lego's certificate file: the leaf then the issuer (names with '*' become '_')."""
        return self.base / "certificates" / f"{first_name.replace('*', '_')}.crt"


@pytest.fixture(scope="module")
def lego(interop: Interop) -> Lego:
    base = interop.work_dir / "lego"
    base.mkdir()
    return Lego(interop, require_tool("lego"), base)


HTTP_NAMES = ["lego-http.example.test", "lego-http2.example.test"]


@pytest.fixture(scope="module")
def http_bundle(lego: Lego) -> Path:
    lego.run(HTTP_NAMES, *lego.http(), "run")
    return lego.bundle(HTTP_NAMES[0])


def test_http01(lego: Lego, http_bundle: Path) -> None:
    lego.interop.check_bundle(http_bundle, HTTP_NAMES)


def test_tlsalpn01(lego: Lego) -> None:
    names = ["lego-tls.example.test"]
    lego.run(names, *lego.tls(), "run")
    lego.interop.check_bundle(lego.bundle(names[0]), names)


def test_dns01_wildcard(lego: Lego) -> None:
    names = ["*.lego-wild.example.test", "lego-wild.example.test"]
    flags, env = lego.dns()
    lego.run(names, *flags, "run", env=env)
    lego.interop.check_bundle(lego.bundle(names[0]), names)
    assert not (lego.interop.txt_dir / "_acme-challenge.lego-wild.example.test").exists()


def test_renew(lego: Lego, http_bundle: Path) -> None:
    before = serial_of(http_bundle)
    # certyard's certificates last 90 days, so --days 100 always renews.
    lego.run(HTTP_NAMES, *lego.http(), "renew", "--days", "100", "--no-random-sleep")
    after = serial_of(http_bundle)
    assert after != before
    lego.interop.check_bundle(http_bundle, HTTP_NAMES)


def test_revoke(lego: Lego) -> None:
    names = ["lego-revoke.example.test"]
    lego.run(names, *lego.http(), "run")
    bundle = lego.bundle(names[0])
    lego.interop.check_bundle(bundle, names)
    result = lego.run(names, "revoke", "--reason", "1")
    assert "revoked" in (result.stdout + result.stderr).lower()
    # Without --keep lego archives the revoked certificate.
    assert not bundle.exists()
