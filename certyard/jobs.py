"""The scheduler's job kinds for ``certyard serve`` (docs/scheduler.md): what each periodic job
does, given the running process's services.

* ``crl``: regenerate every issuer's CRL (RFC 5280 §5.1.2.5: before nextUpdate);
* ``renew``: one pass of the renewal queue (``certyard renew run``; params: ``dry_run``);
* ``scan``: a discovery scan into the inventory (params: ``targets`` (list), ``ports`` (list),
  the other ``[scan]`` keys as overrides);
* ``ct``: one pass over the CT logs until caught up (``certyard ct run --once``), when the CT
  monitor is installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from certyard.settings import Settings
from certyard.wiring import Services
from scheduler.registry import JobRegistry


class JobParameterError(ValueError):
    pass


def build_registry(settings: Settings, services: Services) -> JobRegistry:
    registry = JobRegistry()

    async def crl(_params: dict[str, Any]) -> dict[str, Any]:
        await services.crls.regenerate_all()
        return {"regenerated": True}

    async def renew(params: dict[str, Any]) -> dict[str, Any]:
        from certyard.renew_commands import renewal_pass

        # The server's own CA for deployments, not a second key backend session.
        result = await renewal_pass(
            settings,
            services.sessions,
            dry_run=bool(params.get("dry_run", False)),
            services=services,
        )
        return {"run_id": result.run_id, **result.summary()}

    async def scan_job(params: dict[str, Any]) -> dict[str, Any]:
        from scanner.config import ScanSettings
        from scanner.runner import ScanOptions
        from scanner.scan import ScanRequest, scan
        from scanner.targets import parse_ports

        targets = params.get("targets")
        if not isinstance(targets, list) or not targets:
            raise JobParameterError("a scan job needs params.targets, a list of targets")
        # Validated like the [scan] section itself (model_copy would take any value unchecked).
        overrides = {k: v for k, v in params.items() if k not in ("targets", "ports")}
        conf = ScanSettings.model_validate({**settings.scan.model_dump(), **overrides})
        ports = params.get("ports", conf.ports)
        request = ScanRequest(
            targets=[str(t) for t in targets],
            ports=parse_ports(",".join(map(str, ports)) if isinstance(ports, list) else ports),
            excludes=list(conf.exclude),
            trust=list(conf.trust),
            options=ScanOptions(
                timeout=conf.timeout_seconds,
                retries=conf.retries,
                concurrency=conf.concurrency,
                per_host=conf.per_host,
                expiring_days=conf.expiring_days,
                legacy_probe=conf.legacy_probe,
                ocsp_stapling=conf.ocsp_stapling,
            ),
            known_names=conf.known_names,
        )
        root = Path(settings.server.data_dir) / "ca" / "root.pem"
        outcome = await scan(
            request, sessions=services.sessions, extra_anchors=[root] if root.is_file() else []
        )
        return {
            "scan_id": outcome.scan_id,
            "by_status": dict(outcome.summary.by_status),
            "by_finding": dict(outcome.summary.by_code),
        }

    registry.register("crl", crl)
    registry.register("renew", renew)
    registry.register("scan", scan_job)
    _register_ct(registry, settings, services)
    return registry


def _register_ct(registry: JobRegistry, settings: Settings, services: Services) -> None:
    from ct_monitor.clients import open_client
    from ct_monitor.loglist import load_log_list
    from ct_monitor.monitor import Monitor
    from ct_monitor.state import CTStore
    from notify.dispatcher import build_notifier

    async def ct(params: dict[str, Any]) -> dict[str, Any]:
        cfg = settings.ct
        loglist = await load_log_list(cfg, params.get("logs"))
        clients = [open_client(d, cfg) for d in loglist.logs]
        sink = build_notifier(settings.notify, services.sessions)
        monitor = Monitor(CTStore(services.sessions), clients, cfg, sink=sink)
        try:
            results = await monitor.run(once=True)
        finally:
            for client in clients:
                await client.aclose()
        failed = {url: error for url, error in results.items() if error}
        if failed:
            raise RuntimeError(f"CT logs failed: {failed}")
        return {"logs": len(results)}

    registry.register("ct", ct)
