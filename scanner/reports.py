"""One entry point for every report format: json, csv, html, sarif.

``write`` streams the endpoints from the scan's spool to the output file one at a time (issue 5:
memory that does not grow with the range); ``render`` is the same report as one string.
"""

from __future__ import annotations

import io
import json
from typing import Any, TextIO

from scanner import report_csv, report_json, report_sarif
from scanner.runner import ScanSummary

FORMATS = ("json", "csv", "html", "sarif")


def write(
    fmt: str,
    stream: TextIO,
    scan: dict[str, Any],
    summary: ScanSummary,
    changes: dict[str, Any] | None = None,
) -> None:
    """``scan`` is the report's "scan" object (scanner/report_json.py ``header``)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}")
    if fmt == "sarif":
        report_sarif.write(stream, summary.records())
    elif fmt == "csv":
        report_csv.write(stream, summary.endpoints())
    elif fmt == "html":
        from scanner import report_html  # jinja2: only for this format

        report_html.write(stream, scan, summary.endpoints(), changes)
    else:
        report_json.write(stream, scan, summary.endpoints(), changes)


def render(
    fmt: str,
    document: dict[str, Any],
    summary: ScanSummary,
    changes: dict[str, Any] | None = None,
) -> str:
    out = io.StringIO()
    if fmt == "csv":
        report_csv.write(out, document.get("endpoints", []))
    elif fmt == "html":
        from scanner import report_html

        out.write(report_html.render(document, changes))
    elif fmt == "json":
        if changes is not None:
            document = {**document, "diff": changes}
        out.write(json.dumps(document, indent=2) + "\n")
    else:
        write(fmt, out, document.get("scan", {}), summary, changes)
    return out.getvalue()
