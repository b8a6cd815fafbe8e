"""Interop fixtures: one certyard server (SQLite) and one test DNS server per test module.

certyard validates against the test DNS server (``acme.dns_resolvers``), which answers every A
query with 127.0.0.1 and serves TXT records from files the clients' hook scripts write. Loopback
is allowed as a validation target (``acme.validation_deny=[]``), and the http-01 / tls-alpn-01
ports certyard connects to are free ports the clients then listen on.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from tests.support.dnsserver import TestDNSServer
from tests.support.server import CertyardServer, free_port
from tests.support.tools import require_tool

CLIENT_TIMEOUT = 120.0
HOOKS = Path(__file__).resolve().parent / "hooks"
OUTPUT_TAIL = 6000


@dataclass
class Interop:
    """What an interop test needs: the servers, the ports, and checks with the real openssl."""

    certyard: CertyardServer
    dns: TestDNSServer
    txt_dir: Path
    work_dir: Path
    openssl: str

    @property
    def http01_port(self) -> int:
        return self.certyard.http01_port

    @property
    def tlsalpn01_port(self) -> int:
        return self.certyard.tlsalpn01_port

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = CLIENT_TIMEOUT,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run a client; on failure (or timeout) the message shows its output and the server log."""
        full_env = {**os.environ, "CERTYARD_TEST_TXT_DIR": str(self.txt_dir), **(env or {})}
        try:
            result = subprocess.run(
                list(argv),
                env=full_env,
                cwd=self.work_dir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(
                self.report(
                    argv,
                    None,
                    _text(exc.stdout),
                    _text(exc.stderr),
                    f"timed out after {timeout:.0f} s",
                ),
                pytrace=False,
            )
        if check and result.returncode != 0:
            pytest.fail(
                self.report(argv, result.returncode, result.stdout, result.stderr, "failed"),
                pytrace=False,
            )
        return result

    def report(
        self, argv: Sequence[str], code: int | None, stdout: str, stderr: str, what: str
    ) -> str:
        return "\n".join(
            [
                f"{shlex.join(argv)} {what} (exit status {code})",
                "--- stdout ---",
                stdout[-OUTPUT_TAIL:],
                "--- stderr ---",
                stderr[-OUTPUT_TAIL:],
                self.certyard.log_tail(),
            ]
        )

    def check_certificate(
        self, leaf: Path, chain: Path | None, names: Sequence[str]
    ) -> x509.Certificate:
        """``openssl verify`` against certyard's root, and the SANs are exactly ``names``."""
        argv = [
            self.openssl,
            "verify",
            "-purpose",
            "sslserver",
            "-CAfile",
            str(self.certyard.root_pem_path),
        ]
        if chain is not None and chain.read_text().strip():
            argv += ["-untrusted", str(chain)]
        result = self.run([*argv, str(leaf)])
        assert result.stdout.strip() == f"{leaf}: OK", self.report(
            argv, result.returncode, result.stdout, result.stderr, "did not say OK"
        )
        cert = x509.load_pem_x509_certificate(leaf.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sorted(san.get_values_for_type(x509.DNSName)) == sorted(names)
        assert san.get_values_for_type(x509.IPAddress) == []
        return cert

    def check_bundle(self, bundle: Path, names: Sequence[str]) -> x509.Certificate:
        """Like check_certificate for a PEM bundle whose first certificate is the leaf."""
        pems = split_pem(bundle.read_text())
        assert pems, f"no certificate in {bundle}"
        leaf = bundle.with_name(bundle.name + ".leaf.pem")
        leaf.write_text(pems[0])
        chain = bundle.with_name(bundle.name + ".chain.pem")
        chain.write_text("".join(pems[1:]))
        return self.check_certificate(leaf, chain, names)


def split_pem(text: str) -> list[str]:
    end = "-----END CERTIFICATE-----"
    blocks = []
    for part in text.split(end)[:-1]:
        start = part.index("-----BEGIN CERTIFICATE-----")
        blocks.append(part[start:] + end + "\n")
    return blocks


def serial_of(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


@pytest.fixture(scope="module")
def interop_dir(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture(scope="module")
def dns_server(interop_dir: Path) -> Iterator[TestDNSServer]:
    server = TestDNSServer(txt_dir=interop_dir / "txt")
    (interop_dir / "txt").mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def certyard_server(interop_dir: Path, dns_server: TestDNSServer) -> Iterator[CertyardServer]:
    data_dir = interop_dir / "certyard"
    server = CertyardServer(
        data_dir,
        database_url=f"sqlite+aiosqlite:///{data_dir}/certyard.db",
        http01_port=free_port(),
        tlsalpn01_port=free_port(),
        dns_resolvers=[dns_server.address],
        validation_deny=[],
    )
    with server:
        yield server


@pytest.fixture(scope="module")
def interop(
    interop_dir: Path, dns_server: TestDNSServer, certyard_server: CertyardServer
) -> Interop:
    work_dir = interop_dir / "work"
    work_dir.mkdir(exist_ok=True)
    return Interop(
        certyard=certyard_server,
        dns=dns_server,
        txt_dir=interop_dir / "txt",
        work_dir=work_dir,
        openssl=require_tool("openssl"),
    )
