"""The CSV report: one row per (host, port, sni) endpoint, for spreadsheets.

Findings are joined into one cell ("code:severity; …") so a row is an endpoint, as in the JSON
report; the csv module does the quoting (RFC 4180).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any, TextIO

COLUMNS = (
    "host",
    "ip",
    "port",
    "protocol",
    "sni",
    "status",
    "tls_version",
    "certificate_sha256",
    "subject",
    "issuer",
    "not_after",
    "key_type",
    "names",
    "findings",
)


def render(document: dict[str, Any]) -> str:
    out = io.StringIO()
    write(out, document.get("endpoints", []))
    return out.getvalue()


def write(stream: TextIO, endpoints: Iterable[dict[str, Any]]) -> None:
    """One row per endpoint, written as it comes (the scan streams them from its spool)."""
    writer = csv.writer(stream, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for endpoint in endpoints:
        cert = endpoint.get("certificate") or {}
        writer.writerow(
            [
                endpoint.get("host") or "",
                endpoint["ip"],
                endpoint["port"],
                endpoint.get("protocol") or "",
                endpoint.get("sni") or "",
                endpoint.get("status") or "",
                endpoint.get("tls_version") or "",
                cert.get("sha256", ""),
                cert.get("subject", ""),
                cert.get("issuer", ""),
                cert.get("not_after", ""),
                cert.get("key_type", ""),
                " ".join(cert.get("names", [])),
                "; ".join(f"{f['code']}:{f['severity']}" for f in endpoint.get("findings", [])),
            ]
        )
