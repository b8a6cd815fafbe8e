"""What changed between two scans: ``certyard scan diff A B`` and a section of every report.

Endpoints are compared by (ip, port, sni); certificates by the SHA-256 of the leaf; findings by
(endpoint, code, certificate). Works on the JSON report documents, so a stored scan and a fresh
one diff the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

EndpointKey = tuple[str, int, str]


def _key(endpoint: dict[str, Any]) -> EndpointKey:
    return (str(endpoint["ip"]), int(endpoint["port"]), endpoint.get("sni") or "")


def _label(key: EndpointKey) -> dict[str, Any]:
    ip, port, sni = key
    return {"ip": ip, "port": port, "sni": sni or None}


def _leaf(endpoint: dict[str, Any]) -> str | None:
    cert = endpoint.get("certificate")
    return str(cert["sha256"]) if cert else None


def _findings(endpoint: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    leaf = _leaf(endpoint) or ""
    return {(str(f["code"]), leaf): f for f in endpoint.get("findings", [])}


def diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    before = {_key(e): e for e in old.get("endpoints", [])}
    after = {_key(e): e for e in new.get("endpoints", [])}
    result: dict[str, Any] = {
        "from_scan": old.get("scan", {}).get("id"),
        "to_scan": new.get("scan", {}).get("id"),
        "new_endpoints": [],
        "vanished_endpoints": [],
        "changed_certificates": [],
        "new_findings": [],
        "resolved_findings": [],
    }
    for key in sorted(after.keys() - before.keys()):
        result["new_endpoints"].append({**_label(key), "certificate": _leaf(after[key])})
    for key in sorted(before.keys() - after.keys()):
        result["vanished_endpoints"].append({**_label(key), "certificate": _leaf(before[key])})
    for key in sorted(before.keys() & after.keys()):
        was, now = _leaf(before[key]), _leaf(after[key])
        if was != now:
            result["changed_certificates"].append({**_label(key), "before": was, "after": now})
    for key in sorted(after.keys()):
        old_findings = _findings(before[key]) if key in before else {}
        new_findings = _findings(after[key])
        for code, leaf in sorted(new_findings.keys() - old_findings.keys()):
            finding = new_findings[(code, leaf)]
            result["new_findings"].append(
                {**_label(key), "code": code, "severity": finding["severity"]}
            )
    for key in sorted(before.keys()):
        old_findings = _findings(before[key])
        new_findings = _findings(after[key]) if key in after else {}
        for code, leaf in sorted(old_findings.keys() - new_findings.keys()):
            finding = old_findings[(code, leaf)]
            result["resolved_findings"].append(
                {**_label(key), "code": code, "severity": finding["severity"]}
            )
    return result


def is_empty(changes: dict[str, Any]) -> bool:
    return not any(
        changes[k]
        for k in (
            "new_endpoints",
            "vanished_endpoints",
            "changed_certificates",
            "new_findings",
            "resolved_findings",
        )
    )


def slim(endpoint: dict[str, Any]) -> dict[str, Any]:
    """What ``diff`` reads of an endpoint: its key, its leaf's digest and its findings (not the
    chain), so a diff of two large scans holds one small row per endpoint."""
    cert = endpoint.get("certificate")
    return {
        "ip": endpoint["ip"],
        "port": endpoint["port"],
        "sni": endpoint.get("sni"),
        "certificate": {"sha256": cert["sha256"]} if cert else None,
        "findings": [
            {"code": f["code"], "severity": f["severity"]} for f in endpoint.get("findings", [])
        ],
    }


def diff_streams(
    old_scan: dict[str, Any],
    old_endpoints: Iterable[dict[str, Any]],
    new_scan: dict[str, Any],
    new_endpoints: Iterable[dict[str, Any]],
) -> dict[str, Any]:
    """``diff`` of two reports read endpoint by endpoint (from their spools)."""
    return diff(
        {"scan": old_scan, "endpoints": [slim(e) for e in old_endpoints]},
        {"scan": new_scan, "endpoints": [slim(e) for e in new_endpoints]},
    )
