"""The HTML report: one self-contained file (inline CSS and SVG, no script, no network) that a
security team opens in a browser: summary, expiry timeline, issuers and key types, findings by
severity with the endpoints behind each, and the diff against the previous scan.

The charts are SVG computed here rather than drawn by a JavaScript chart library, so the file
renders offline, prints, and needs no content-security exceptions.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from jinja2 import Environment, PackageLoader, select_autoescape

SEVERITY_ORDER = ("high", "medium", "low")

# Expiry timeline buckets: (label, upper bound in days from the report's time; None = beyond).
BUCKETS: tuple[tuple[str, float | None], ...] = (
    ("expired", 0.0),
    ("< 7 days", 7.0),
    ("< 30 days", 30.0),
    ("< 90 days", 90.0),
    ("< 1 year", 365.0),
    ("later", None),
)


@dataclass(frozen=True)
class Bar:
    label: str
    count: int
    x: float
    width: float
    height: float
    y: float
    css: str


def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("scanner", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _parse_time(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _unique_leaves(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    leaves: dict[str, dict[str, Any]] = {}
    for endpoint in document.get("endpoints", []):
        cert = endpoint.get("certificate")
        if cert and "not_after" in cert:
            leaves.setdefault(cert["sha256"], cert)
    return leaves


def expiry_bars(leaves: dict[str, dict[str, Any]], now: dt.datetime) -> list[Bar]:
    counts = [0] * len(BUCKETS)
    for cert in leaves.values():
        days = (_parse_time(cert["not_after"]) - now).total_seconds() / 86400
        for i, (_, bound) in enumerate(BUCKETS):
            if bound is None or days < bound:
                counts[i] += 1
                break
    peak = max(counts) or 1
    bars = []
    for i, ((label, _), count) in enumerate(zip(BUCKETS, counts, strict=True)):
        height = 140.0 * count / peak
        css = "bad" if i == 0 else "warn" if i <= 2 else "ok"
        bars.append(Bar(label, count, 20.0 + i * 95.0, 70.0, height, 160.0 - height, css))
    return bars


def build_context(
    document: dict[str, Any], changes: dict[str, Any] | None, now: dt.datetime
) -> dict[str, Any]:
    endpoints = document.get("endpoints", [])
    leaves = _unique_leaves(document)
    findings: dict[str, dict[str, list[dict[str, Any]]]] = {s: {} for s in SEVERITY_ORDER}
    for endpoint in endpoints:
        sni = endpoint.get("sni")
        where = f"{endpoint.get('host') or endpoint['ip']} ({endpoint['ip']}:{endpoint['port']})"
        where += f", SNI {sni}" if sni else ", no SNI"
        for finding in endpoint.get("findings", []):
            by_code = findings.setdefault(finding["severity"], {})
            by_code.setdefault(finding["code"], []).append(
                {"where": where, "detail": finding["detail"]}
            )
    return {
        "scan": document.get("scan", {}),
        "generated": now.isoformat(timespec="seconds"),
        "endpoint_count": len(endpoints),
        "certificate_count": len(leaves),
        "by_status": Counter(e.get("status", "?") for e in endpoints),
        "severity_counts": {
            s: sum(len(v) for v in findings.get(s, {}).values()) for s in SEVERITY_ORDER
        },
        "findings": findings,
        "bars": expiry_bars(leaves, now),
        "issuers": Counter(c.get("issuer", "?") for c in leaves.values()).most_common(),
        "key_types": Counter(c.get("key_type", "?") for c in leaves.values()).most_common(),
        "endpoints": endpoints,
        "changes": changes,
    }


def render(
    document: dict[str, Any], changes: dict[str, Any] | None = None, now: dt.datetime | None = None
) -> str:
    context = build_context(document, changes, now or dt.datetime.now(dt.UTC))
    return _environment().get_template("report.html.j2").render(**context)


def row(endpoint: dict[str, Any]) -> dict[str, Any]:
    """What the HTML report shows of an endpoint: everything but the chain and host keys."""
    return {k: v for k, v in endpoint.items() if k not in ("chain", "host_keys", "host_key")}


def write(
    stream: TextIO,
    scan: dict[str, Any],
    endpoints: Iterable[dict[str, Any]],
    changes: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> None:
    """The report from streamed endpoints: one table row each is kept, not their chains."""
    document = {"scan": scan, "endpoints": [row(e) for e in endpoints]}
    context = build_context(document, changes, now or dt.datetime.now(dt.UTC))
    stream.writelines(_environment().get_template("report.html.j2").generate(**context))
