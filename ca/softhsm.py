"""A SoftHSM2 token under certyard's data directory: the embedded default for ``make run``.

Layout (directories 0700, PIN files 0600)::

    <directory>/softhsm2.conf   directories.tokendir = <directory>/tokens, file backend
    <directory>/tokens/         SoftHSM2's object store
    <directory>/user-pin        the token's user PIN (what the key backend logs in with)
    <directory>/so-pin          the security officer PIN (to reset the user PIN)

The token is initialized by ``softhsm2-util --init-token --free``. python-pkcs11 has no
C_InitToken, and ``softhsm2-util --pin/--so-pin`` would show both PINs to every local user in
/proc/<pid>/cmdline, so the PINs are typed into softhsm2-util's prompts through a pseudo-terminal
instead (it reads them from a tty only). A file lock makes concurrent first starts create one
token; an existing token with the label is reused.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ca.errors import CAError
from ca.pkcs11_keys import Pkcs11Config

MODULE_PATHS: tuple[str, ...] = (
    "/usr/lib/softhsm/libsofthsm2.so",  # Debian / Ubuntu
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",  # Fedora / RHEL
    "/usr/local/lib/softhsm/libsofthsm2.so",  # built from source
)
_INSTALL_HINT = "SoftHSM2 is not installed: apt-get install softhsm2"
_INIT_TIMEOUT = 60.0


@dataclass(frozen=True)
class SoftHsmToken:
    module: str
    conf_path: Path
    token_label: str
    pin: str = field(repr=False)

    def backend_config(self, sessions: int = 4) -> Pkcs11Config:
        return Pkcs11Config(
            module=self.module,
            token_label=self.token_label,
            pin=self.pin,
            sessions=sessions,
            env={"SOFTHSM2_CONF": str(self.conf_path)},
        )


def find_softhsm_module(module: str | None = None) -> str:
    """``module`` if given and present, else the first SoftHSM2 library on the usual paths."""
    for candidate in (module,) if module else MODULE_PATHS:
        if Path(candidate).is_file():
            return candidate
    raise CAError("unavailable", f"{_INSTALL_HINT} (no {module or 'libsofthsm2.so'} found)")


def ensure_softhsm_token(
    directory: Path, label: str = "certyard", module: str | None = None
) -> SoftHsmToken:
    """Create (or reuse) the SoftHSM2 token ``label`` under ``directory``."""
    found_module = find_softhsm_module(module)
    util = shutil.which("softhsm2-util")
    if util is None:
        raise CAError("unavailable", f"{_INSTALL_HINT} (softhsm2-util not on PATH)")
    _private_dir(directory)
    _private_dir(directory / "tokens")
    conf_path = directory.resolve() / "softhsm2.conf"  # SOFTHSM2_CONF must not depend on the cwd
    _create_once(
        conf_path,
        f"directories.tokendir = {directory.resolve() / 'tokens'}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n",
    )
    pin = _create_once(directory / "user-pin", secrets.token_urlsafe(24) + "\n").strip()
    so_pin = _create_once(directory / "so-pin", secrets.token_urlsafe(24) + "\n").strip()
    env = {**os.environ, "SOFTHSM2_CONF": str(conf_path)}
    with _locked(directory / ".init.lock"):
        if label not in _token_labels(util, env):
            _init_token(util, env, label, so_pin, pin)
    return SoftHsmToken(found_module, conf_path, label, pin)


def _token_labels(util: str, env: dict[str, str]) -> set[str]:
    """Labels of the initialized tokens (``softhsm2-util --show-slots`` needs no PIN)."""
    result = subprocess.run(
        [util, "--show-slots"], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0:
        raise CAError("internal", f"softhsm2-util --show-slots failed: {result.stderr.strip()}")
    labels = set()
    for line in result.stdout.splitlines():
        name, _, value = line.strip().partition(":")
        if name == "Label" and value.strip():
            labels.add(value.strip())
    return labels


def _init_token(util: str, env: dict[str, str], label: str, so_pin: str, pin: str) -> None:
    """``softhsm2-util --init-token --free`` with the PINs answered on a pseudo-terminal."""
    controller, terminal = os.openpty()
    try:
        process = subprocess.Popen(
            [util, "--init-token", "--free", "--label", label],
            stdin=terminal, stdout=terminal, stderr=terminal, env=env, start_new_session=True,
        )  # fmt: skip
    finally:
        os.close(terminal)
    transcript = b""
    pending = b""
    deadline = time.monotonic() + _INIT_TIMEOUT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            transcript += chunk
            pending += chunk
            # Prompts: "Please enter SO PIN: ", "Please reenter SO PIN: ", then the same for
            # the user PIN. Input echo is off, so the PINs never come back in the transcript.
            if pending.rstrip().endswith(b"PIN:"):
                answer = so_pin if b"SO PIN" in pending.splitlines()[-1] else pin
                os.write(controller, answer.encode() + b"\n")
                pending = b""
        returncode = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        returncode = -1
    finally:
        os.close(controller)
    if returncode != 0:
        text = transcript.decode(errors="replace").strip()
        raise CAError("internal", f"softhsm2-util --init-token failed ({returncode}): {text}")


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)  # mkdir's mode is filtered by the umask


def _create_once(path: Path, content: str) -> str:
    """Write ``content`` to a new 0600 file at ``path``, or return what is already there.

    The content goes to a temporary file (mkstemp: O_CREAT|O_EXCL, mode 0600) that is then
    hard-linked into place; ``os.link`` fails if the name exists, so of two racing processes
    exactly one wins and both return the winner's content - never a half-written file.
    """
    with contextlib.suppress(FileNotFoundError):
        return path.read_text()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as tmp:
            tmp.write(content)
            tmp.flush()
            os.fsync(tmp.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp_name, path)
    finally:
        os.unlink(tmp_name)
    return path.read_text()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
