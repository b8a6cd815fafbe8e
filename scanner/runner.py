"""The scan runner: endpoints in, one ``EndpointReport`` per (ip, port, sni) out.

Concurrency: ``concurrency`` workers each hold at most one connection, so that is the global
limit; a semaphore per IP caps the connections to one host (``per_host``). Each endpoint is
probed first without SNI (then, when that worked, once more capped at TLS 1.1 for
``deprecated_tls_version``); when that reaches TLS or fails inside TLS, once more per known name.
When the transport itself fails (refused, timeout, no TLS) the named probes are skipped: they
would meet the same port, and the endpoint is reported once, without SNI.

Results are streamed to a sink (the report spool and the inventory, scanner/scan.py) and an
observer (progress) as they arrive; the runner itself keeps counts only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from scanner.findings import Finding, TrustStore, evaluate, evaluate_ssh, sha256_hex
from scanner.jobs import NullObserver, Observer, ProbeJob, ProbeResult, Status
from scanner.spool import Record, Spool
from scanner.targets import Endpoint
from scanner.tls_probe import client_context, probe

if TYPE_CHECKING:  # scanner.issued needs SQLAlchemy, which a --no-inventory scan never loads
    from scanner.issued import IssuedRecord

Clock = Callable[[], dt.datetime]
_TRANSPORT_FAILURES = (Status.REFUSED, Status.TIMEOUT, Status.NO_TLS)
_RETRIED = (Status.TIMEOUT, Status.ERROR)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class ScanOptions:
    timeout: float = 5.0  # per phase: TCP connect, then STARTTLS + handshake
    retries: int = 1  # extra attempts after a timeout or an error (not refused / no_tls)
    concurrency: int = 256
    per_host: int = 4
    expiring_days: float = 30.0
    legacy_probe: bool = True  # one more handshake per ip:port limited to TLS 1.1
    ocsp_stapling: bool = True  # one more handshake per direct-TLS ip:port asking for OCSP


@dataclass
class EndpointReport:
    job: ProbeJob
    result: ProbeResult
    findings: list[Finding] = field(default_factory=list)


class RevocationOracle(Protocol):
    """Tells whether a leaf is one certyard issued and then revoked (scanner/issued.py)."""

    async def find(self, der: bytes) -> IssuedRecord | None: ...


class Sink(Protocol):
    async def record(self, report: EndpointReport) -> None: ...


@dataclass
class ScanSummary:
    """Counts of a scan, and its reports on disk (``spool``), read back in report order."""

    by_status: Counter[str]
    by_code: Counter[str]
    spool: Spool | None = None

    def records(self) -> Iterator[Record]:
        return self.spool.records() if self.spool is not None else iter(())

    def endpoints(self) -> Iterator[dict[str, Any]]:
        return (record.endpoint for record in self.records())


class Runner:
    def __init__(
        self,
        options: ScanOptions,
        store: TrustStore,
        *,
        observer: Observer | None = None,
        sink: Sink | None = None,
        clock: Clock = utc_now,
        context: ssl.SSLContext | None = None,
        issued: RevocationOracle | None = None,
    ) -> None:
        self.options = options
        self.store = store
        self.observer: Observer = observer or NullObserver()
        self.sink = sink
        self.clock = clock
        self.issued = issued
        self.context = context or client_context()
        self.legacy_context = client_context(maximum=ssl.TLSVersion.TLSv1_1)
        self._per_host: dict[str, asyncio.Semaphore] = {}
        self._host_users: dict[str, int] = {}
        # Counts only: the reports themselves go to the sink as they arrive (issue 5: memory
        # that does not grow with the size of the range).
        self._by_status: Counter[str] = Counter()
        self._by_code: Counter[str] = Counter()
        self._presence: dict[tuple[str, int], Status] = {}

    async def run(
        self,
        endpoints: Sequence[Endpoint],
        presence: dict[tuple[str, int], Status] | None = None,
    ) -> ScanSummary:
        """Probe every endpoint; ``presence`` (from a SYN pre-scan) marks the ones already
        known closed or silent, which are reported as such without a connection."""
        self._presence = presence or {}
        self.observer.scan_started(len(endpoints))
        queue: asyncio.Queue[Endpoint] = asyncio.Queue()
        for endpoint in endpoints:
            queue.put_nowait(endpoint)
        workers = [
            asyncio.create_task(self._worker(queue))
            for _ in range(max(1, min(self.options.concurrency, len(endpoints))))
        ]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
        return ScanSummary(Counter(self._by_status), Counter(self._by_code))

    def partial_counts(self) -> dict[str, dict[str, int]]:
        """Counts of what finished so far (for the scan record, even when interrupted)."""
        return {"by_status": dict(self._by_status), "by_finding": dict(self._by_code)}

    async def _worker(self, queue: asyncio.Queue[Endpoint]) -> None:
        while True:
            try:
                endpoint = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await self._endpoint(endpoint)
            self.observer.endpoint_finished(str(endpoint.ip), endpoint.port)

    async def _endpoint(self, endpoint: Endpoint) -> None:
        ip = str(endpoint.ip)
        default_host = endpoint.names[0] if endpoint.names else ip
        base = ProbeJob(ip, endpoint.port, endpoint.protocol, None, default_host)
        known = self._presence.get(endpoint.key)
        if known is not None:
            error = "RST to SYN" if known is Status.REFUSED else "no answer to SYN"
            await self._report(base, ProbeResult(base, known, error=error), [])
            return
        first = await self._attempt(base)
        if endpoint.protocol == "ssh":
            # SSH has no SNI and no TLS versions: one probe reads every host key.
            await self._report(base, first, [])
            return
        extra: list[Finding] = []
        if first.status is Status.OK and self.options.legacy_probe:
            legacy = await self._attempt(
                ProbeJob(ip, endpoint.port, endpoint.protocol, None, default_host, legacy=True)
            )
            if legacy.status is Status.OK:
                # RFC 8996: TLS 1.0 and 1.1 are deprecated; the endpoint still negotiates one.
                extra.append(
                    Finding("deprecated_tls_version", f"accepts {legacy.tls_version}", None)
                )
        if first.status is Status.OK and self.options.ocsp_stapling:
            # Stapling often depends on the name: ask with the first known one.
            staple_job = ProbeJob(
                ip,
                endpoint.port,
                endpoint.protocol,
                endpoint.names[0] if endpoint.names else None,
                default_host,
            )
            from scanner.ocsp_staple import check_stapling  # pyOpenSSL: only when asked for

            first.ocsp_stapling = await check_stapling(staple_job, seconds=self.options.timeout)
        await self._report(base, first, extra)
        if first.status in _TRANSPORT_FAILURES:
            return
        for name in endpoint.names:
            job = ProbeJob(ip, endpoint.port, endpoint.protocol, name, name)
            await self._report(job, await self._attempt(job), [])

    async def _attempt(self, job: ProbeJob) -> ProbeResult:
        """One job, retried after a timeout or an error; always a result."""
        self.observer.job_started(job)
        semaphore = self._per_host.get(job.ip)
        if semaphore is None:
            semaphore = self._per_host[job.ip] = asyncio.Semaphore(self.options.per_host)
        self._host_users[job.ip] = self._host_users.get(job.ip, 0) + 1
        ctx = self.legacy_context if job.legacy else self.context
        attempts = 0
        try:
            while True:
                attempts += 1
                async with semaphore:
                    try:
                        if job.protocol == "ssh":
                            from scanner.ssh_probe import probe_ssh  # asyncssh: only for SSH

                            result = await probe_ssh(job, seconds=self.options.timeout)
                        else:
                            result = await probe(job, ctx, seconds=self.options.timeout)
                    except Exception as exc:  # a bug in one probe must not end the scan
                        result = ProbeResult(job, Status.ERROR, error=f"internal: {exc!r}")
                if result.status not in _RETRIED or attempts > self.options.retries:
                    break
        finally:
            # A host nobody is probing any more gives its semaphore back (a fresh one is the
            # same), so the table holds the hosts in flight, not every host of the range.
            self._host_users[job.ip] -= 1
            if not self._host_users[job.ip]:
                del self._host_users[job.ip], self._per_host[job.ip]
        result.attempts = attempts
        self.observer.job_finished(result)
        return result

    async def _report(self, job: ProbeJob, result: ProbeResult, extra: list[Finding]) -> None:
        findings: list[Finding] = []
        if result.status is Status.OK and job.protocol == "ssh":
            findings = evaluate_ssh(result.host_keys, self.clock())
        elif result.status is Status.OK:
            findings = evaluate(
                result.chain, job.sni, self.store, self.clock(), self.options.expiring_days
            )
            if self.issued is not None and result.chain:
                record = await self.issued.find(result.chain[0])
                if record is not None and record.status == "revoked":
                    findings.append(
                        Finding(
                            "revoked",
                            f"leaf revoked by certyard (record {record.certificate_id}, "
                            f"reason {record.revocation_reason or 0})",
                            sha256_hex(result.chain[0]),
                        )
                    )
        report = EndpointReport(job, result, findings + extra)
        self._by_status[result.status.value] += 1
        self._by_code.update(f.code for f in report.findings)
        if self.sink is not None:
            await self.sink.record(report)
