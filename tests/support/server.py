"""Run the real ``certyard serve`` as a subprocess for integration and interop tests.

Settings go through the environment (``CERTYARD__SECTION__KEY``, lists as JSON), the data dir is
a temporary directory, stdout/stderr go to files in it. ``start()`` returns once
``https://localhost:PORT/acme/directory`` answers 200 over TLS verified against the CA the server
wrote to ``<data_dir>/ca/root.pem``; ``stop()`` sends SIGTERM to the process it started and
SIGKILL after a deadline.

    with CertyardServer(database_url=url, dns_resolvers=[dns.address]) as server:
        run_client(server.directory_url, ca_bundle=server.root_pem_path)

Unless told otherwise it uses SQLite in the data dir, free ports for the listener and for
``acme.http01_port`` / ``acme.tlsalpn01_port`` (where the test's clients listen), and
``acme.validation_deny=[]`` so validation may connect to 127.0.0.1 (``validation_deny=None``
keeps the server's default deny list).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.tools import REPO_ROOT

START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
LOG_TAIL_LINES = 60


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def certyard_command() -> list[str]:
    """The console script next to this interpreter, else ``python -m certyard.cli``."""
    for bin_dir in (Path(sys.executable).parent, REPO_ROOT / ".venv" / "bin"):
        script = bin_dir / "certyard"
        if script.is_file() and os.access(script, os.X_OK):
            return [str(script)]
    return [sys.executable, "-m", "certyard.cli"]


class ServerError(RuntimeError):
    """The server did not start (or stop) as expected; the message carries its log tail."""


class CertyardServer:
    """One ``certyard serve`` process on 127.0.0.1."""

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        database_url: str | None = None,
        port: int | None = None,
        hostnames: Sequence[str] = ("localhost",),
        public_url: str | None = None,
        http01_port: int | None = None,
        tlsalpn01_port: int | None = None,
        dns_resolvers: Sequence[str] | None = None,
        validation_deny: Sequence[str] | None = (),
        extra_env: Mapping[str, str] | None = None,
        name: str = "certyard",
    ) -> None:
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="certyard-")).resolve()
        self.name = name
        self.port = port or free_port()
        self.hostnames = list(hostnames)
        self.http01_port = http01_port or free_port()
        self.tlsalpn01_port = tlsalpn01_port or free_port()
        self.http_port = free_port()  # plain HTTP: CRL, OCSP, issuer certificates
        self.admin_port = free_port()  # admin API, /metrics (plain HTTP on loopback)
        self.database_url = database_url
        self.public_url = public_url
        self.dns_resolvers = None if dns_resolvers is None else list(dns_resolvers)
        self.validation_deny = None if validation_deny is None else list(validation_deny)
        self.extra_env = dict(extra_env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.stdout_path = self.data_dir / f"{name}.{self.port}.stdout.log"
        self.stderr_path = self.data_dir / f"{name}.{self.port}.stderr.log"

    # -- addresses -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """Where this process listens (may differ from the public URL it advertises)."""
        return f"https://{self.hostnames[0]}:{self.port}"

    @property
    def http_url(self) -> str:
        """The plain-HTTP listener (CRL, OCSP)."""
        return f"http://{self.hostnames[0]}:{self.http_port}"

    @property
    def admin_url(self) -> str:
        """The admin listener (admin API, /metrics, health)."""
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def directory_url(self) -> str:
        return f"{self.base_url}/acme/directory"

    @property
    def root_pem_path(self) -> Path:
        return self.data_dir / "ca" / "root.pem"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    # -- environment ---------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CERTYARD__")}
        settings: dict[str, Any] = {
            "SERVER__LISTEN": f"127.0.0.1:{self.port}",
            "SERVER__DATA_DIR": str(self.data_dir),
            "SERVER__HOSTNAMES": json.dumps(self.hostnames),
            "SERVER__SHUTDOWN_GRACE_SECONDS": "5",
            "SERVER__HTTP_LISTEN": f"127.0.0.1:{self.http_port}",
            "ADMIN__LISTEN": f"127.0.0.1:{self.admin_port}",
            "ACME__HTTP01_PORT": str(self.http01_port),
            "ACME__TLSALPN01_PORT": str(self.tlsalpn01_port),
            "LOG__FORMAT": "json",
        }
        if self.public_url is not None:
            settings["SERVER__PUBLIC_URL"] = self.public_url
        if self.database_url is not None:
            settings["DATABASE__URL"] = self.database_url
        if self.dns_resolvers is not None:
            settings["ACME__DNS_RESOLVERS"] = json.dumps(self.dns_resolvers)
        if self.validation_deny is not None:
            settings["ACME__VALIDATION_DENY"] = json.dumps(self.validation_deny)
        env.update({f"CERTYARD__{key}": value for key, value in settings.items()})
        env.update(self.extra_env)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> CertyardServer:
        if self.process is not None:
            raise ServerError(f"{self.name} already started (pid {self.process.pid})")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self.process = subprocess.Popen(
                [*certyard_command(), "serve"],
                cwd=REPO_ROOT,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no attempt yet"
        while True:
            assert self.process is not None
            code = self.process.poll()
            if code is not None:
                raise ServerError(self.failure(f"exited with status {code} while starting"))
            if self.root_pem_path.is_file():
                try:
                    status = self.get_status("/acme/directory")
                    if status == 200:
                        return
                    last = f"HTTP {status}"
                except (OSError, ssl.SSLError, urllib.error.URLError) as exc:
                    last = f"{type(exc).__name__}: {exc}"
            else:
                last = f"{self.root_pem_path} not written yet"
            if time.monotonic() >= deadline:
                raise ServerError(self.failure(f"not ready after {timeout:.0f} s ({last})"))
            time.sleep(0.1)

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.root_pem_path))

    def get_status(self, path: str) -> int:
        request = urllib.request.Request(self.base_url + path, method="GET")
        try:
            with urllib.request.urlopen(request, timeout=5, context=self.ssl_context()) as resp:
                status: int = resp.status
                return status
        except urllib.error.HTTPError as exc:
            return exc.code

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait, SIGKILL after ``timeout``; returns the exit status."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                process.wait(10)
        return process.returncode

    def __enter__(self) -> CertyardServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- logs ----------------------------------------------------------------------------------

    def log_text(self) -> str:
        parts = []
        for label, path in (("stdout", self.stdout_path), ("stderr", self.stderr_path)):
            try:
                text = path.read_text(errors="replace")
            except FileNotFoundError:
                text = ""
            parts.append(f"--- {self.name} {label} ({path}) ---\n{text}")
        return "\n".join(parts)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        out = []
        for label, path in (("stdout", self.stdout_path), ("stderr", self.stderr_path)):
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except FileNotFoundError:
                text = []
            out.append(f"--- {self.name} {label} (last {lines} lines) ---")
            out.extend(text)
        return "\n".join(out)

    def failure(self, what: str) -> str:
        return f"{self.name} on port {self.port} {what}\n{self.log_tail()}"
