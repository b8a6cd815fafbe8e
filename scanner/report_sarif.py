"""SARIF 2.1.0 (OASIS, sarif-v2.1.0-os): one result per finding, rule ids = finding codes.

Each result points at its endpoint twice: a physical location whose artifact URI is
``tls://ip:port`` (code-scanning tools require one) and a logical location naming the
(host, sni, ip, port).
"""

from __future__ import annotations

from typing import Any

from scanner.findings import DESCRIPTION, SEVERITY, Severity
from scanner.runner import ScanSummary

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


def build(summary: ScanSummary, *, version: str = "0.1.0") -> dict[str, Any]:
    codes = sorted(SEVERITY)
    index = {code: i for i, code in enumerate(codes)}
    rules = [
        {
            "id": code,
            "name": _rule_name(code),
            "shortDescription": {"text": DESCRIPTION[code]},
            "defaultConfiguration": {"level": LEVEL[SEVERITY[code]]},
            "properties": {"security-severity": SCORE[SEVERITY[code]], "tags": ["tls"]},
        }
        for code in codes
    ]
    results = []
    for report in summary.reports:
        job = report.job
        where = f"{job.sni or job.host or job.ip} ({job.ip}:{job.port})"
        for finding in report.findings:
            results.append(
                {
                    "ruleId": finding.code,
                    "ruleIndex": index[finding.code],
                    "level": LEVEL[finding.severity],
                    "message": {"text": f"{where}: {finding.detail}"},
                    "locations": [
                        {
                            "physicalLocation": {
                                "artifactLocation": {
                                    "uri": f"{_scheme(job.protocol)}://{_host(job.ip)}:{job.port}"
                                }
                            },
                            "logicalLocations": [
                                {
                                    "name": job.sni or job.ip,
                                    "fullyQualifiedName": f"{job.sni or ''}@{job.ip}:{job.port}",
                                    "kind": "resource",
                                }
                            ],
                        }
                    ],
                    "partialFingerprints": {
                        "endpointFinding/v1": f"{job.ip}:{job.port}:{job.sni or ''}:"
                        f"{finding.code}:{finding.cert_sha256 or ''}"
                    },
                    "properties": {
                        "host": job.host,
                        "sni": job.sni,
                        "certificate_sha256": finding.cert_sha256,
                        "severity": finding.severity.value,
                    },
                }
            )
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


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip
