"""Live scan progress as metrics: a scanner ``Observer`` (scanner/jobs.py) that counts finished
endpoints and probes, for the scans this process runs (admin API scans in ``certyard serve``).

``rate(certyard_scan_endpoints_done_total[1m])`` is the scan rate in endpoints per second;
``certyard_scan_endpoints_pending`` what is left. The observer is also a context manager, because
the scanner has no "scan finished" callback: leaving the block (done, failed or cancelled) takes
the endpoints it never finished off the pending gauge.

    with ScanProgress() as progress:
        await scan(request, sessions=sessions, clock=clock, observer=progress, ...)
"""

from __future__ import annotations

from types import TracebackType

from certyard.metrics import SCAN_ENDPOINTS_DONE, SCAN_ENDPOINTS_PENDING, SCAN_PROBES, SCANS_ACTIVE
from scanner.jobs import ProbeJob, ProbeResult, Status

# Probe statuses are scanner.jobs.Status values: a bounded label set.
PROBE_STATUSES = tuple(status.value for status in Status)


class ScanProgress:
    """Implements scanner.jobs.Observer; one instance per scan."""

    def __init__(self) -> None:
        self._pending = 0

    def __enter__(self) -> ScanProgress:
        SCANS_ACTIVE.inc()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        SCAN_ENDPOINTS_PENDING.dec(self._pending)
        self._pending = 0
        SCANS_ACTIVE.dec()

    def scan_started(self, endpoints: int) -> None:
        self._pending += endpoints
        SCAN_ENDPOINTS_PENDING.inc(endpoints)

    def job_started(self, job: ProbeJob) -> None:
        return None

    def job_finished(self, result: ProbeResult) -> None:
        SCAN_PROBES.labels(result.status.value).inc()

    def endpoint_finished(self, ip: str, port: int) -> None:
        if self._pending > 0:
            self._pending -= 1
            SCAN_ENDPOINTS_PENDING.dec()
        SCAN_ENDPOINTS_DONE.inc()
