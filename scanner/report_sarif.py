"""SARIF 2.1.0 (OASIS, sarif-v2.1.0-os): one result per finding, rule ids = finding codes.

Each result points at its endpoint twice: a physical location whose artifact URI is
``tls://ip:port`` (code-scanning tools require one) and a logical location naming the
(host, sni, ip, port).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from scanner import json_stream
from scanner.findings import DESCRIPTION, SEVERITY, Severity
from scanner.runner import ScanSummary
from scanner.spool import Record

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
# SARIF §3.27.10 result.level.
LEVEL = {Severity.HIGH: "error", Severity.MEDIUM: "warning", Severity.LOW: "note"}
# GitHub code scanning reads properties."security-severity" (a CVSS-like score).
SCORE = {Severity.HIGH: "7.5", Severity.MEDIUM: "5.0", Severity.LOW: "2.0"}


def _scheme(protocol: str) -> str:
    return "ssh" if protocol == "ssh" else "tls"


def _rule_name(code: str) -> str:
    """PascalCase of the code; SARIF1001 wants a rule's name to differ from its id, which a
    one-word code ("expired") would not, case aside."""
    name = "".join(part.capitalize() for part in code.split("_"))
    return name if name.lower() != code.lower() else name + "Finding"


def _results(records: Iterable[Record]) -> Iterator[dict[str, Any]]:
    index = {code: i for i, code in enumerate(sorted(SEVERITY))}
    for record in records:
        e = record.endpoint
        ip, port, sni, host = e["ip"], e["port"], e.get("sni"), e.get("host")
        where = f"{sni or host or ip} ({ip}:{port})"
        for finding, cert_sha256 in zip(e["findings"], record.finding_certs, strict=True):
            code, severity = finding["code"], Severity(finding["severity"])
            yield {
                "ruleId": code,
                "ruleIndex": index[code],
                "level": LEVEL[severity],
                "message": {"text": f"{where}: {finding['detail']}"},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {
                                "uri": f"{_scheme(e['protocol'])}://{_host(ip)}:{port}"
                            }
                        },
                        "logicalLocations": [
                            {
                                "name": sni or ip,
                                "fullyQualifiedName": f"{sni or ''}@{ip}:{port}",
                                "kind": "resource",
                            }
                        ],
                    }
                ],
                "partialFingerprints": {
                    "endpointFinding/v1": f"{ip}:{port}:{sni or ''}:{code}:{cert_sha256 or ''}"
                },
                "properties": {
                    "host": host,
                    "sni": sni,
                    "certificate_sha256": cert_sha256,
                    "severity": severity.value,
                },
            }


def _skeleton(results: Any, version: str) -> dict[str, Any]:
    rules = [
        {
            "id": code,
            "name": _rule_name(code),
            "shortDescription": {"text": DESCRIPTION[code]},
            "defaultConfiguration": {"level": LEVEL[SEVERITY[code]]},
            "properties": {"security-severity": SCORE[SEVERITY[code]], "tags": ["tls"]},
        }
        for code in sorted(SEVERITY)
    ]
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "certyard-scanner",
                        "version": version,
                        "rules": rules,
                    }
                },
                "results": results,
                "columnKind": "unicodeCodePoints",
            }
        ],
    }


def build(summary: ScanSummary, *, version: str = "0.1.0") -> dict[str, Any]:
    return _skeleton(list(_results(summary.records())), version)


def write(stream: TextIO, records: Iterable[Record], *, version: str = "0.1.0") -> None:
    """The SARIF log, as ``json.dumps(build(...), indent=2)`` writes it, one result at a time."""
    json_stream.write(stream, _skeleton(json_stream.PLACEHOLDER, version), _results(records))


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip
