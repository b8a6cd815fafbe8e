"""``scanner.diff``: what changed between two scans, endpoint by endpoint."""

from __future__ import annotations

from typing import Any

from scanner.diff import diff, is_empty


def endpoint(ip: str, port: int, sni: str | None, leaf: str | None, *codes: str) -> dict[str, Any]:
    return {
        "ip": ip,
        "port": port,
        "sni": sni,
        "certificate": {"sha256": leaf} if leaf else None,
        "findings": [{"code": c, "severity": "high", "detail": c} for c in codes],
    }


def doc(scan_id: str, *endpoints: dict[str, Any]) -> dict[str, Any]:
    return {"scan": {"id": scan_id}, "endpoints": list(endpoints)}


def test_every_kind_of_change_is_reported() -> None:
    old = doc(
        "a",
        endpoint("10.0.0.1", 443, None, "aa", "expired"),
        endpoint("10.0.0.1", 443, "x.test", "bb", "weak_key"),
        endpoint("10.0.0.2", 443, None, "cc"),
    )
    new = doc(
        "b",
        endpoint("10.0.0.1", 443, None, "dd"),  # renewed: certificate changed, expired resolved
        endpoint("10.0.0.1", 443, "x.test", "bb", "weak_key", "sha1_signature"),
        endpoint("10.0.0.3", 8443, None, "ee"),  # new endpoint
    )
    changes = diff(old, new)
    assert changes["from_scan"] == "a" and changes["to_scan"] == "b"
    assert changes["new_endpoints"] == [
        {"ip": "10.0.0.3", "port": 8443, "sni": None, "certificate": "ee"}
    ]
    assert changes["vanished_endpoints"] == [
        {"ip": "10.0.0.2", "port": 443, "sni": None, "certificate": "cc"}
    ]
    assert changes["changed_certificates"] == [
        {"ip": "10.0.0.1", "port": 443, "sni": None, "before": "aa", "after": "dd"}
    ]
    assert [(f["sni"], f["code"]) for f in changes["new_findings"]] == [
        ("x.test", "sha1_signature")
    ]
    assert [(f["sni"], f["code"]) for f in changes["resolved_findings"]] == [(None, "expired")]


def test_a_scan_diffed_with_itself_is_empty() -> None:
    same = doc("a", endpoint("10.0.0.1", 443, None, "aa", "expired"))
    assert is_empty(diff(same, same))
