"""SSH endpoints: every host key the server offers, one key exchange per host-key algorithm
(issue 5 §4), with OpenSSH host certificates read whole (CA key, principals, validity).

asyncssh does the SSH transport. Its public ``get_server_host_key`` returns the key *inside* a
host certificate and drops the certificate, so the probe uses a client connection whose host-key
check records the raw key blob the server sent (``validate_server_host_key``); the connection is
aborted right after the key exchange, before any authentication.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from typing import Any

import asyncssh
from asyncssh import connection as ssh_connection
from asyncssh.public_key import (
    SSHOpenSSHCertificate,
    decode_ssh_certificate,
    decode_ssh_public_key,
)

from scanner.jobs import ProbeJob, ProbeResult, Status

# Plain key algorithms first, then their OpenSSH certificate forms (RFC 4253 §6.6, RFC 5656,
# RFC 8709, RFC 8332; PROTOCOL.certkeys). One key exchange each: a server picks one host key
# per connection, so asking for each in turn is the only way to see them all.
HOST_KEY_ALGORITHMS = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "ssh-dss",
    "ssh-ed25519-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "rsa-sha2-512-cert-v01@openssh.com",
    "ssh-dss-cert-v01@openssh.com",
)


class _RecordingConnection(ssh_connection.SSHClientConnection):
    """Keeps the host key blob the server sent; accepts it (the scanner judges, not trusts)."""

    key_data: bytes | None = None

    def validate_server_host_key(self, key_data: bytes) -> asyncssh.SSHKey:
        self.key_data = key_data
        return super().validate_server_host_key(key_data)


def _bits(key: asyncssh.SSHKey) -> int:
    pyca = getattr(key, "pyca_key", None)
    size = getattr(pyca, "key_size", None) if pyca is not None else None
    if isinstance(size, int):
        return size
    curve = getattr(getattr(pyca, "curve", None), "key_size", None)
    if isinstance(curve, int):
        return curve
    return 256 if "ed25519" in key.get_algorithm() else 0


def _kind(algorithm: str) -> str:
    if "ed25519" in algorithm:
        return "ed25519"
    if algorithm.startswith("ecdsa"):
        return "ecdsa"
    if "dss" in algorithm:
        return "dsa"
    return "rsa"


def describe(key_data: bytes) -> dict[str, Any]:
    """A JSON-ready description of one host key or host certificate blob."""
    try:
        cert = decode_ssh_certificate(key_data)
    except (asyncssh.KeyImportError, ValueError):
        cert = None
    if isinstance(cert, SSHOpenSSHCertificate):
        key = cert.key
        blob = key.public_data
        algorithm = key.get_algorithm()
        # asyncssh keeps the validity and key id as private attributes (no public accessor).
        after_ts, before_ts = int(cert._valid_after), int(cert._valid_before)
        valid_after = dt.datetime.fromtimestamp(after_ts, dt.UTC)
        # OpenSSH uses 2^64-1 for "forever"; clamp what datetime cannot hold.
        before_ts = min(before_ts, 253402300799)
        certificate: dict[str, Any] | None = {
            "sha256": hashlib.sha256(key_data).hexdigest(),
            "ca_sha256": hashlib.sha256(cert.signing_key.public_data).hexdigest(),
            "ca_fingerprint": cert.signing_key.get_fingerprint("sha256"),
            "key_id": str(cert._key_id),
            "principals": list(cert.principals),
            "valid_after": valid_after.isoformat(),
            "valid_before": dt.datetime.fromtimestamp(before_ts, dt.UTC).isoformat(),
        }
    else:
        key = decode_ssh_public_key(key_data)
        blob, algorithm, certificate = key_data, key.get_algorithm(), None
    return {
        "algorithm": algorithm,
        "type": _kind(algorithm),
        "bits": _bits(key),
        # Issue 5 §8: host_key.sha256 is the SHA-256 of the key blob (RFC 4253 §6.6 encoding).
        "sha256": hashlib.sha256(blob).hexdigest(),
        "fingerprint": key.get_fingerprint("sha256"),
        "certificate": certificate,
    }


async def _one(job: ProbeJob, algorithm: str, seconds: float) -> bytes | None:
    loop = asyncio.get_running_loop()
    options = await asyncssh.SSHClientConnectionOptions.construct(
        None,
        config=None,
        host=job.ip,
        port=job.port,
        known_hosts=None,
        server_host_key_algs=[algorithm],
        connect_timeout=seconds,
        x509_trusted_certs=None,
    )
    holder: list[_RecordingConnection] = []

    def factory() -> _RecordingConnection:
        conn = _RecordingConnection(loop, options, wait="kex")
        holder.append(conn)
        return conn

    # asyncssh.connection._connect is what asyncssh.get_server_host_key itself uses; there is
    # no public hook that keeps a host certificate (see the module docstring).
    conn = await asyncio.wait_for(
        ssh_connection._connect(options, None, loop, 0, None, factory, "Scanning host keys of"),
        timeout=seconds,
    )
    try:
        return holder[0].key_data if holder else None
    finally:
        conn.abort()
        await conn.wait_closed()


async def probe_ssh(job: ProbeJob, *, seconds: float) -> ProbeResult:
    """Every host key and certificate of one SSH endpoint; every outcome is a result."""
    seen: dict[str, dict[str, Any]] = {}
    last_error: str | None = None
    for index, algorithm in enumerate(HOST_KEY_ALGORITHMS):
        try:
            key_data = await _one(job, algorithm, seconds)
        except ConnectionRefusedError:
            return ProbeResult(job, Status.REFUSED, error="connection refused")
        except TimeoutError:
            if index == 0:
                return ProbeResult(job, Status.TIMEOUT, error=f"no SSH answer within {seconds:g} s")
            last_error = "timeout"
            continue
        except (asyncssh.KeyExchangeFailed, asyncssh.ProtocolNotSupported) as exc:
            last_error = str(exc)  # the server has no key of this algorithm: try the next
            continue
        except (asyncssh.Error, OSError, ValueError) as exc:
            if index == 0 and not seen:
                return ProbeResult(job, Status.ERROR, error=f"ssh: {exc}")
            last_error = str(exc)
            continue
        if key_data is None:
            continue
        described = describe(key_data)
        key = (
            described["certificate"]["sha256"] if described["certificate"] else described["sha256"]
        )
        seen.setdefault(key, described)
    if not seen:
        return ProbeResult(job, Status.ERROR, error=f"ssh: no host key ({last_error})")
    result = ProbeResult(job, Status.OK, tls_version=None, cipher=None)
    result.host_keys = list(seen.values())
    return result
