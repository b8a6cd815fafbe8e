"""Pinned SSH host keys: parsing what the operator gives, and fetching what a server presents.

A target's host key is pinned when it is added and never learnt on first use (RFC 4251 §4.1:
without a verified host key a man in the middle reads everything, including the private key
sent to the host). The operator gives the public key ("ssh-ed25519 AAAA…", a known_hosts line)
or its SHA-256 fingerprint ("SHA256:…", what ``ssh-keygen -lf`` prints); a fingerprint is
turned into the full key by fetching the server's keys and keeping the one that matches.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncssh

from deploy.errors import DeployError

# Host key algorithms tried one by one when looking for the key a fingerprint names: a server
# presents one key per handshake, the first of the client's list it has (RFC 4253 §7.1).
HOST_KEY_ALGORITHMS = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "ssh-ed448",
)


@dataclass(frozen=True)
class PinnedKey:
    line: str  # "<algorithm> <base64>", no comment
    fingerprint: str  # "SHA256:…"
    algorithm: str


def fingerprint(key: asyncssh.SSHKey) -> str:
    return key.get_fingerprint("sha256")


def pinned(key: asyncssh.SSHKey) -> PinnedKey:
    line = key.export_public_key("openssh").decode().split()
    return PinnedKey(f"{line[0]} {line[1]}", fingerprint(key), line[0])


def is_fingerprint(text: str) -> bool:
    return text.strip().startswith("SHA256:")


def parse_key(text: str) -> PinnedKey:
    """A public key line, or a known_hosts line (host patterns and markers before the key)."""
    words = text.strip().split()
    for i in range(len(words) - 1):
        try:
            key = asyncssh.import_public_key(f"{words[i]} {words[i + 1]}")
        except (asyncssh.KeyImportError, ValueError):
            continue
        return pinned(key)
    raise DeployError(
        "malformed",
        "--host-key must be an SSH public key line ('ssh-ed25519 AAAA…'), a known_hosts line "
        "or a SHA256: fingerprint",
    )


def load_pin(line: str) -> asyncssh.SSHKey:
    """The stored pin as a key object (it was checked when stored)."""
    return asyncssh.import_public_key(line)


async def fetch_host_key(
    host: str, port: int, *, seconds: float, algorithm: str | None = None
) -> asyncssh.SSHKey:
    """The host key the server presents (for one algorithm when given); only the key
    exchange runs, no authentication."""
    try:
        options = asyncssh.SSHClientConnectionOptions(
            connect_timeout=seconds, config=None, known_hosts=None
        )
        async with asyncio.timeout(seconds + 1):
            key = await asyncssh.get_server_host_key(
                host, port, server_host_key_algs=[algorithm] if algorithm else (), options=options
            )
    except (OSError, TimeoutError, asyncssh.Error) as exc:
        raise DeployError("ssh", f"cannot reach SSH at {host}:{port}: {_reason(exc)}") from None
    if key is None:
        raise DeployError("ssh", f"{host}:{port} presented no host key")
    return key


async def find_by_fingerprint(
    host: str, port: int, wanted: str, *, seconds: float
) -> PinnedKey | None:
    """The server's host key whose fingerprint is ``wanted``, or None when it has none."""
    wanted = wanted.strip()
    # The first fetch lets an unreachable host raise (rather than read as "no such key").
    key = await fetch_host_key(host, port, seconds=seconds)
    if fingerprint(key) == wanted:
        return pinned(key)
    for algorithm in HOST_KEY_ALGORITHMS:
        try:
            key = await fetch_host_key(host, port, seconds=seconds, algorithm=algorithm)
        except DeployError:
            continue  # no key of that type (no common algorithm): try the next type
        if fingerprint(key) == wanted:
            return pinned(key)
    return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc) or type(exc).__name__
