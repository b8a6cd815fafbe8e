"""One scan from start to finish: targets → endpoints → runner → inventory → report document.

The command line (certyard/scan_commands.py) and the tests call ``scan()``; it knows nothing
of argparse or terminals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scanner import report_json, report_sarif
from scanner.findings import SYSTEM_BUNDLE, TrustStore
from scanner.jobs import Observer, Status
from scanner.runner import Clock, EndpointReport, Runner, ScanOptions, ScanSummary, utc_now
from scanner.spool import Spool
from scanner.targets import expand, iter_specs, parse_excludes

# The database side (SQLAlchemy, the ORM models) is imported only when the scan uses the
# inventory: a ``--no-inventory`` scan does not pay for it in start-up time and memory.
if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from scanner.inventory import Inventory
    from scanner.stored_scan import StoredScan

DEFAULT_PORTS = [443]


@dataclass
class ScanRequest:
    targets: list[str]
    ports: list[int] = field(default_factory=lambda: list(DEFAULT_PORTS))
    excludes: list[str] = field(default_factory=list)
    trust: list[Path] = field(default_factory=list)  # extra roots (and known intermediates)
    system_trust: Path | None = SYSTEM_BUNDLE
    options: ScanOptions = field(default_factory=ScanOptions)
    seed: int | None = None
    syn: bool = False  # raw SYN pre-scan (scanner/syn.py), root only
    syn_rate: int = 10_000  # SYN packets per second, at most
    known_names: bool = True  # also try SNI names the inventory and CT know for each address

    def parameters(self) -> dict[str, Any]:
        return {
            "targets": self.targets,
            "ports": self.ports,
            "excludes": self.excludes,
            "trust": [str(p) for p in self.trust],
            "timeout": self.options.timeout,
            "retries": self.options.retries,
            "concurrency": self.options.concurrency,
            "per_host": self.options.per_host,
            "expiring_days": self.options.expiring_days,
            "legacy_probe": self.options.legacy_probe,
            "ocsp_stapling": self.options.ocsp_stapling,
            "seed": self.seed,
            "syn": self.syn,
            "syn_rate": self.syn_rate,
            "known_names": self.known_names,
        }

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any]) -> ScanRequest:
        """The request a recorded scan was started with (``certyard scan --resume``)."""
        return cls(
            targets=list(parameters["targets"]),
            ports=list(parameters["ports"]),
            excludes=list(parameters.get("excludes", [])),
            trust=[Path(p) for p in parameters.get("trust", [])],
            options=ScanOptions(
                timeout=float(parameters.get("timeout", 5.0)),
                retries=int(parameters.get("retries", 1)),
                concurrency=int(parameters.get("concurrency", 256)),
                per_host=int(parameters.get("per_host", 4)),
                expiring_days=float(parameters.get("expiring_days", 30.0)),
                legacy_probe=bool(parameters.get("legacy_probe", True)),
                ocsp_stapling=bool(parameters.get("ocsp_stapling", True)),
            ),
            seed=parameters.get("seed"),
            syn=bool(parameters.get("syn", False)),
            syn_rate=int(parameters.get("syn_rate", 10_000)),
            known_names=bool(parameters.get("known_names", True)),
        )


@dataclass
class ScanOutcome:
    scan_id: str | None
    summary: ScanSummary  # counts, and the reports spooled on disk in report order
    unresolved: list[str]
    header: dict[str, Any]  # the JSON report's "scan" object

    @property
    def document(self) -> dict[str, Any]:
        """The whole JSON report in memory (tests, diffs); ``scanner.reports.write`` streams it
        to a file instead."""
        return {"scan": self.header, "endpoints": list(self.summary.endpoints())}

    def render(self, fmt: str) -> dict[str, Any]:
        return report_sarif.build(self.summary) if fmt == "sarif" else self.document


class _SpoolingSink:
    """Each report to the spool (for the report file) and then to the inventory, if any."""

    def __init__(self, spool: Spool, inventory: Inventory | None) -> None:
        self.spool = spool
        self.inventory = inventory

    async def record(self, report: EndpointReport) -> None:
        self.spool.add(report_json.record(report))
        if self.inventory is not None:
            await self.inventory.record(report)


async def scan(
    request: ScanRequest,
    *,
    sessions: async_sessionmaker[AsyncSession] | None = None,
    observer: Observer | None = None,
    clock: Clock = utc_now,
    extra_anchors: Sequence[Path] = (),
    resume_id: str | None = None,
) -> ScanOutcome:
    """Run the scan; with ``sessions``, record it in the inventory as results arrive.

    Raises ``TargetError`` for targets that do not parse (before anything is probed); names
    that do not resolve are reported in ``unresolved`` and the rest is scanned. ``resume_id``
    (with ``sessions``) continues that recorded scan: finished endpoints are not probed again,
    and the report covers the whole scan.
    """
    specs = list(iter_specs(request.targets))
    excludes = parse_excludes(request.excludes)
    endpoints, unresolved = await expand(specs, request.ports, excludes, seed=request.seed)
    del specs  # the endpoints are what the scan needs from here on
    if sessions is not None and request.known_names:
        from scanner.known_names import add_known_names

        await add_known_names(sessions, endpoints)
    store = TrustStore.load(system=request.system_trust)
    for path in extra_anchors:
        store.add(TrustStore.load([path], system=None).anchors, roots_only=True)
    for path in request.trust:
        loaded = TrustStore.load([path], system=None)
        store.anchors += loaded.anchors
        store.intermediates += loaded.intermediates
    issued = inventory = None
    if sessions is not None:
        from scanner.inventory import Inventory
        from scanner.issued import IssuedLookup

        issued = IssuedLookup(sessions)
        inventory = Inventory(sessions, clock, issued)
    started = clock()
    if resume_id is not None:
        if inventory is None or sessions is None:
            raise ValueError("resuming a scan needs the inventory")
        scan_id: str | None = await inventory.resume(resume_id)
        from scanner.resume import remaining_endpoints

        endpoints = await remaining_endpoints(sessions, resume_id, endpoints)
    else:
        scan_id = await inventory.start(request.parameters()) if inventory else None
    presence: dict[tuple[str, int], Status] = {}
    if request.syn:
        # Issue 5 §2: TLS only on ports that answered the SYN; IPv6 endpoints are connected to.
        from scanner.syn import SynScanner

        syn = SynScanner(
            rate=request.syn_rate, timeout=request.options.timeout, retries=request.options.retries
        )
        states = await syn.scan([e.key for e in endpoints if e.ip.version == 4])
        presence = {key: state for key, state in states.items() if state is not Status.OK}
    spool = Spool()
    runner = Runner(
        request.options,
        store,
        observer=observer,
        sink=_SpoolingSink(spool, inventory),
        clock=clock,
        issued=issued,
    )
    status = "interrupted"
    try:
        summary = await runner.run(endpoints, presence)
        status = "done"
    except BaseException:
        spool.close()
        raise
    finally:
        if inventory is not None:
            counts = runner.partial_counts()
            await inventory.finish(status, counts)
    if resume_id is not None and sessions is not None:
        spool.close()  # the report covers the whole scan: read it back from the inventory
        from scanner.stored_scan import load_scan

        stored = await load_scan(sessions, resume_id)
        await inventory_counts(sessions, stored)
        header = stored.header()
        header["unresolved"] = unresolved
        return ScanOutcome(resume_id, stored.summary, unresolved, header)
    summary.spool = spool
    header = report_json.header(
        summary,
        scan_id=scan_id,
        started=started,
        finished=clock(),
        parameters=request.parameters(),
    )
    header["unresolved"] = unresolved
    return ScanOutcome(scan_id, summary, unresolved, header)


async def inventory_counts(sessions: async_sessionmaker[AsyncSession], stored: StoredScan) -> None:
    """A resumed scan's record counts every endpoint, not only those of its last part."""
    from storage.models import ScanRun

    async with sessions.begin() as session:
        run = await session.get(ScanRun, stored.scan_id)
        if run is not None:
            run.summary = {
                "by_status": dict(stored.summary.by_status),
                "by_finding": dict(stored.summary.by_code),
            }
