"""One entry point for every report format: json, csv, html, sarif (text out)."""

from __future__ import annotations

import json
from typing import Any

from scanner import report_csv, report_html, report_sarif
from scanner.runner import ScanSummary

FORMATS = ("json", "csv", "html", "sarif")


def render(
    fmt: str,
    document: dict[str, Any],
    summary: ScanSummary,
    changes: dict[str, Any] | None = None,
) -> str:
    if fmt == "sarif":
        return json.dumps(report_sarif.build(summary), indent=2) + "\n"
    if fmt == "csv":
        return report_csv.render(document)
    if fmt == "html":
        return report_html.render(document, changes)
    if fmt == "json":
        if changes is not None:
            document = {**document, "diff": changes}
        return json.dumps(document, indent=2) + "\n"
    raise ValueError(f"unknown report format {fmt!r}")
