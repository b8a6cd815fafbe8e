"""The JSON report: one object per (host, port, sni), as issue 5 specifies.

``certificate.sha256`` is the lowercase hex SHA-256 of the leaf's DER; ``chain`` lists every
certificate the server sent, leaf first; ``findings`` are ``{code, severity, detail}``.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterable
from typing import Any, TextIO

from cryptography import x509

from scanner import json_stream
from scanner.findings import key_description, parse_der, sha256_hex
from scanner.runner import EndpointReport, ScanSummary
from scanner.spool import Record


@functools.lru_cache(maxsize=4096)
def _certificate_object(der: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {"sha256": sha256_hex(der)}
    try:
        cert = parse_der(der)
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


def certificate_object(der: bytes) -> dict[str, Any]:
    """A certificate of the report; cached (bounded), as the same one is met on many
    endpoints, and copied, so a caller may change its copy."""
    return dict(_certificate_object(der))


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


def record(report: EndpointReport) -> Record:
    """What the spool keeps of one report: its JSON object (no DER), and the certificate each
    finding is about (SARIF's fingerprints need it; the JSON report does not show it)."""
    return Record(endpoint_object(report), [f.cert_sha256 for f in report.findings])


def header(
    summary: ScanSummary,
    *,
    scan_id: str | None,
    started: dt.datetime,
    finished: dt.datetime,
    parameters: dict[str, Any],
) -> dict[str, Any]:
    return {
        "id": scan_id,
        "started": started.isoformat(),
        "finished": finished.isoformat(),
        "parameters": parameters,
        "by_status": dict(sorted(summary.by_status.items())),
        "by_finding": dict(sorted(summary.by_code.items())),
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
        "scan": header(
            summary, scan_id=scan_id, started=started, finished=finished, parameters=parameters
        ),
        "endpoints": list(summary.endpoints()),
    }


def write(
    stream: TextIO,
    scan: dict[str, Any],
    endpoints: Iterable[dict[str, Any]],
    changes: dict[str, Any] | None = None,
) -> None:
    """The report, as ``dumps`` of the whole document would write it, one endpoint at a time."""
    skeleton: dict[str, Any] = {"scan": scan, "endpoints": json_stream.PLACEHOLDER}
    if changes is not None:
        skeleton["diff"] = changes
    json_stream.write(stream, skeleton, endpoints)


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=False) + "\n"
