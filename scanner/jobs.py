"""Scanner jobs and their results: plain data, as sslyze's scan commands are.

A job is at most one connection. Its result always comes back as a ``ProbeResult`` with a
status; a refused port, a timeout or a server that never speaks TLS is data, never an exception
that ends the scan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class Status(StrEnum):
    OK = "ok"
    REFUSED = "refused"  # TCP RST: nothing listens there
    TIMEOUT = "timeout"  # no TCP answer within the timeout
    NO_TLS = "no_tls"  # TCP accepted, but no TLS handshake (silence, or another protocol)
    ERROR = "error"  # anything else (a reset mid-handshake, a STARTTLS refusal ...)


@dataclass(frozen=True)
class ProbeJob:
    """One handshake: ``sni`` None means no server_name extension (RFC 6066 §3)."""

    ip: str
    port: int
    protocol: str  # "tls", "smtp", "imap"
    sni: str | None
    host: str | None  # the name the operator knows the endpoint by (the SNI name, or the target)
    legacy: bool = False  # offer TLS 1.1 at most (RFC 8996 deprecation probe)


@dataclass
class ProbeResult:
    job: ProbeJob
    status: Status
    chain: list[bytes] = field(default_factory=list)  # DER, in the order the server sent it
    tls_version: str | None = None
    cipher: str | None = None
    error: str | None = None
    attempts: int = 1
    # SSH endpoints (scanner/ssh_probe.py): one JSON-ready description per host key/certificate.
    host_keys: list[dict[str, Any]] = field(default_factory=list)
    # RFC 6066 §8: the stapled OCSP response (scanner/ocsp_staple.py); None = not checked.
    ocsp_stapling: dict[str, Any] | None = None


class Observer(Protocol):
    """Progress reporting: the runner calls it; a progress bar or a log implements it."""

    def scan_started(self, endpoints: int) -> None: ...

    def job_started(self, job: ProbeJob) -> None: ...

    def job_finished(self, result: ProbeResult) -> None: ...

    def endpoint_finished(self, ip: str, port: int) -> None: ...


class NullObserver:
    def scan_started(self, endpoints: int) -> None:
        return None

    def job_started(self, job: ProbeJob) -> None:
        return None

    def job_finished(self, result: ProbeResult) -> None:
        return None

    def endpoint_finished(self, ip: str, port: int) -> None:
        return None
