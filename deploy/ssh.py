"""SSH connections to a target (asyncssh): only the pinned host key is accepted.

``known_hosts`` is given as the one trusted key, so asyncssh offers only that key's algorithm
and refuses any other key (``HostKeyNotVerifiable``): a changed host key stops everything
before a byte is written. ``config=None`` keeps ~/.ssh/config of the user running certyard out
of it: the target definition says everything.
"""

from __future__ import annotations

import asyncio
import shlex
from dataclasses import dataclass

import asyncssh

from deploy.config import DeploySettings
from deploy.errors import DeployError
from deploy.hostkeys import fetch_host_key, fingerprint, load_pin
from deploy.targets import Target

MAX_OUTPUT = 64 * 1024  # what is kept of a command's output (a CSR is ~1 KiB)


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: str
    stderr: str

    def brief(self) -> str:
        """One line for logs and run details: the exit status and the first stderr line."""
        first = next((line for line in self.stderr.splitlines() if line.strip()), "")
        return f"exit {self.exit_status}" + (f": {first[:200]}" if first else "")


async def connect(target: Target, settings: DeploySettings) -> asyncssh.SSHClientConnection:
    """Log in to the target; DeployError "host_key" when it presents another host key."""
    pin = load_pin(target.host_key)
    try:
        async with asyncio.timeout(settings.connect_timeout_seconds + 1):
            return await asyncssh.connect(
                target.host,
                target.port,
                username=target.username,
                known_hosts=([pin], [], []),
                client_keys=[target.key_file] if target.key_file else (),
                # No key file: the agent ($SSH_AUTH_SOCK) holds the key.
                agent_path=None if target.key_file else (),
                preferred_auth="publickey",
                password=None,
                config=None,
                connect_timeout=settings.connect_timeout_seconds,
            )
    except asyncssh.HostKeyNotVerifiable:
        presented = await _presented(target, settings, pin.get_algorithm())
        raise DeployError(
            "host_key",
            f"host key of {target.host}:{target.port} changed: pinned "
            f"{target.host_key_fingerprint}, presented {presented}; nothing was written",
        ) from None
    except asyncssh.PermissionDenied:
        how = f"key file {target.key_file}" if target.key_file else "the SSH agent"
        raise DeployError(
            "ssh", f"{target.username}@{target.host}:{target.port} refused {how}"
        ) from None
    except (OSError, TimeoutError, asyncssh.Error) as exc:
        lost = isinstance(exc, asyncssh.DisconnectError | ConnectionError)
        if lost and await _lost_key_type(target, settings, pin.get_algorithm()):
            # OpenSSH hangs up (or resets) when no host key algorithm matches: the host no
            # longer has a key of the pinned type at all, which is a changed host key too.
            raise DeployError(
                "host_key",
                f"host key of {target.host}:{target.port} changed: pinned "
                f"{target.host_key_fingerprint}, the host offers no {pin.get_algorithm()} key; "
                "nothing was written",
            ) from None
        reason = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        raise DeployError(
            "ssh", f"cannot connect to {target.host}:{target.port}: {reason}"
        ) from None


async def _lost_key_type(target: Target, settings: DeploySettings, algorithm: str) -> bool:
    """True when the host answers SSH but has no host key of ``algorithm``."""
    seconds = settings.connect_timeout_seconds
    try:
        await fetch_host_key(target.host, target.port, seconds=seconds, algorithm=algorithm)
    except DeployError:
        try:
            await fetch_host_key(target.host, target.port, seconds=seconds)
        except DeployError:
            return False  # not reachable at all: an ordinary connection failure
        return True
    return False


async def _presented(target: Target, settings: DeploySettings, algorithm: str) -> str:
    try:
        key = await fetch_host_key(
            target.host, target.port, seconds=settings.connect_timeout_seconds, algorithm=algorithm
        )
    except DeployError:
        return f"no {algorithm} key"
    return fingerprint(key)


async def run(conn: asyncssh.SSHClientConnection, command: str, *, seconds: float) -> CommandResult:
    """Run one command (through the login shell, as ssh does) and collect its output."""
    try:
        result = await conn.run(command, check=False, timeout=seconds, stdin=asyncssh.DEVNULL)
    except asyncssh.TimeoutError:
        return CommandResult(124, "", f"timed out after {seconds:g} s")
    except (asyncssh.Error, OSError) as exc:
        raise DeployError("remote", f"running a command failed: {exc}") from None
    status = result.exit_status if result.exit_status is not None else 255
    return CommandResult(status, _text(result.stdout), _text(result.stderr))


def _text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return str(value or "")[:MAX_OUTPUT]


def quote(path: str) -> str:
    return shlex.quote(path)
