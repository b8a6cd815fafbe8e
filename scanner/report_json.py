"""The JSON report: one object per (host, port, sni), as issue 5 specifies.

``certificate.sha256`` is the lowercase hex SHA-256 of the leaf's DER; ``chain`` lists every
certificate the server sent, leaf first; ``findings`` are ``{code, severity, detail}``.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from cryptography import x509

from scanner.findings import key_description, sha256_hex
from scanner.runner import EndpointReport, ScanSummary


def certificate_object(der: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {"sha256": sha256_hex(der)}
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return out
    kind, bits = key_description(cert)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(v) for v in san.get_values_for_type(x509.DNSName)] + [
            str(v) for v in san.get_values_for_type(x509.IPAddress)
        ]
    except x509.ExtensionNotFound:
        names = []
    out.update(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc.isoformat(),
        not_after=cert.not_valid_after_utc.isoformat(),
        key_type=f"{kind}-{bits}",
        names=names,
    )
    return out


def endpoint_object(report: EndpointReport) -> dict[str, Any]:
    job, result = report.job, report.result
    chain = [certificate_object(der) for der in result.chain]
    return {
        "host": job.host,
        "ip": job.ip,
        "port": job.port,
        "protocol": job.protocol,
        "sni": job.sni,
        "status": result.status.value,
        "error": result.error,
        "tls_version": result.tls_version,
        "cipher": result.cipher,
        "certificate": chain[0] if chain else None,
        "ocsp_stapling": result.ocsp_stapling,
        "chain": chain,
        # SSH endpoints: the first host key offered, and all of them (issue 5 §8).
        **(
            {
                "host_key": result.host_keys[0] if result.host_keys else None,
                "host_keys": result.host_keys,
            }
            if job.protocol == "ssh"
            else {}
        ),
        "findings": [
            {"code": f.code, "severity": f.severity.value, "detail": f.detail}
            for f in report.findings
        ],
    }


def build(
    summary: ScanSummary,
    *,
    scan_id: str | None,
    started: dt.datetime,
    finished: dt.datetime,
    parameters: dict[str, Any],
) -> dict[str, Any]:
    return {
        "scan": {
            "id": scan_id,
            "started": started.isoformat(),
            "finished": finished.isoformat(),
            "parameters": parameters,
            "by_status": dict(sorted(summary.by_status.items())),
            "by_finding": dict(sorted(summary.by_code.items())),
        },
        "endpoints": [endpoint_object(r) for r in summary.reports],
    }


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=False) + "\n"
