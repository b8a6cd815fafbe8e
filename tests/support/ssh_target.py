"""A real OpenSSH server (Debian ``openssh-server``) on a loopback port, for deployment tests.

Everything lives in a temporary directory: the config, the host key, the authorized_keys file
and the client key the tests log in with. sshd runs in the foreground (``-D``) as the user
running the tests and accepts only that user, by public key.

    target = SshTarget(tmp_path / "ssh")
    target.start()
    ...  # connect to 127.0.0.1:target.port as target.user with target.client_key_path
    target.rotate_host_key()  # same port, a different host key (the "changed host key" case)
    target.stop()

sshd needs its privilege-separation directory (/run/sshd) when started as root: it is created
if missing, as the openssh-server package's tmpfiles.d entry would at boot.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from tests.support.server import free_port
from tests.support.tools import find_tool, missing, require_tool

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def sshd_path() -> str:
    path = find_tool("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").is_file() else None)
    if path is None:
        missing("sshd not found (Debian package openssh-server; scripts/install-test-deps.sh)")
        raise AssertionError("unreachable")
    return path


class SshTarget:
    def __init__(self, root: Path, *, port: int | None = None) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.user = getpass.getuser()
        self.host = "127.0.0.1"
        self.host_key_path = self.root / "ssh_host_key"
        self.client_key_path = self.root / "client_key"
        self.authorized_keys = self.root / "authorized_keys"
        self.config_path = self.root / "sshd_config"
        self.log_path = self.root / "sshd.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._keygen = require_tool("ssh-keygen")
        self._sshd = sshd_path()
        self._new_host_key()
        self._new_client_key()
        self._write_config()

    # -- keys --------------------------------------------------------------------------------

    def _run_keygen(self, path: Path, comment: str, key_type: str = "ed25519") -> None:
        for stale in (path, path.with_name(path.name + ".pub")):
            stale.unlink(missing_ok=True)
        subprocess.run(
            [self._keygen, "-q", "-t", key_type, "-N", "", "-C", comment, "-f", str(path)],
            check=True,
            capture_output=True,
            timeout=30,
        )

    def _new_host_key(self, key_type: str = "ed25519") -> None:
        self._run_keygen(self.host_key_path, "certyard-test-host", key_type)

    def _new_client_key(self) -> None:
        self._run_keygen(self.client_key_path, "certyard-test-client")
        public = self.client_key_path.with_name(self.client_key_path.name + ".pub").read_text()
        self.authorized_keys.write_text(public)
        os.chmod(self.authorized_keys, 0o600)

    @property
    def host_key_line(self) -> str:
        """The host public key as an OpenSSH line ("ssh-ed25519 AAAA… comment")."""
        return self.host_key_path.with_name(self.host_key_path.name + ".pub").read_text().strip()

    @property
    def host_key_fingerprint(self) -> str:
        result = subprocess.run(
            [self._keygen, "-l", "-E", "sha256", "-f", str(self.host_key_path) + ".pub"],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return result.stdout.split()[1]  # "256 SHA256:… comment (ED25519)"

    # -- process -----------------------------------------------------------------------------

    def _write_config(self) -> None:
        self.config_path.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    f"ListenAddress {self.host}",
                    f"HostKey {self.host_key_path}",
                    f"PidFile {self.root / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    # The temporary directory is not laid out like a home directory.
                    "StrictModes no",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    f"AllowUsers {self.user}",
                    "UsePAM no",
                    "Subsystem sftp internal-sftp",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )

    def start(self) -> None:
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        with self.log_path.open("ab") as log:
            # sshd must be started by its absolute path (it re-executes itself).
            self.process = subprocess.Popen(
                [self._sshd, "-D", "-e", "-f", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.log_path.read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=1) as sock,
            ):
                if sock.recv(64).startswith(b"SSH-2.0-"):
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not answer within {START_TIMEOUT:g} s")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)

    def rotate_host_key(self, key_type: str = "ed25519") -> None:
        """The same server address with a different host key (re-installed machine, or an
        attacker in the middle); ``key_type`` as ssh-keygen -t takes it."""
        self.stop()
        self._new_host_key(key_type)
        self.start()

    def __enter__(self) -> SshTarget:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
