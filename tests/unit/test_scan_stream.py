"""Streamed reports: the spool gives endpoints back in report order, and the streamed JSON and
SARIF writers write exactly what dumping the whole document would."""

from __future__ import annotations

import io
import json
from collections import Counter
from typing import Any

import pytest

from scanner import json_stream, report_json, report_sarif
from scanner.runner import ScanSummary
from scanner.spool import Record, Spool


def _endpoint(ip: str, port: int, sni: str | None, findings: list[str]) -> dict[str, Any]:
    return {
        "host": sni or ip,
        "ip": ip,
        "port": port,
        "protocol": "tls",
        "sni": sni,
        "status": "ok",
        "error": None,
        "certificate": {"sha256": "ab" * 32, "names": ["a.test", "é.test"]},
        "chain": [],
        "findings": [{"code": c, "severity": "medium", "detail": f"{c}\nline"} for c in findings],
    }


def _spool() -> Spool:
    spool = Spool()
    for ip, port, sni, codes in (
        ("10.0.0.2", 443, "b.test", ["self_signed"]),
        ("10.0.0.10", 443, None, []),
        ("10.0.0.2", 443, None, ["expired", "weak_key"]),
        ("10.0.0.2", 80, "a.test", []),
    ):
        spool.add(Record(_endpoint(ip, port, sni, codes), ["cd" * 32] * len(codes)))
    return spool


def test_spool_reads_back_in_report_order_and_counts() -> None:
    spool = _spool()
    keys = [(e["ip"], e["port"], e["sni"]) for e in spool.endpoints()]
    # As the runner always sorted: ip as text, then port, then SNI with "no SNI" first.
    assert keys == [
        ("10.0.0.10", 443, None),
        ("10.0.0.2", 80, "a.test"),
        ("10.0.0.2", 443, None),
        ("10.0.0.2", 443, "b.test"),
    ]
    assert spool.by_status == Counter(ok=4)
    assert spool.by_code == Counter(self_signed=1, expired=1, weak_key=1)
    spool.close()


@pytest.mark.parametrize("count", [0, 1, 4])
def test_streamed_json_is_the_dumped_document(count: int) -> None:
    endpoints = list(_spool().endpoints())[:count]
    scan = {"id": "scan-1", "parameters": {"ports": [443], "trust": []}, "by_status": {}}
    changes = {"from_scan": "scan-0", "new_endpoints": []}
    for diff in (None, changes):
        out = io.StringIO()
        report_json.write(out, scan, iter(endpoints), diff)
        document: dict[str, Any] = {"scan": scan, "endpoints": endpoints}
        if diff is not None:
            document["diff"] = diff
        assert out.getvalue() == json.dumps(document, indent=2) + "\n"


def test_streamed_sarif_is_the_dumped_log() -> None:
    summary = ScanSummary(Counter(), Counter(), _spool())
    out = io.StringIO()
    report_sarif.write(out, summary.records())
    log = report_sarif.build(summary)
    assert out.getvalue() == json.dumps(log, indent=2) + "\n"
    assert len(log["runs"][0]["results"]) == 3


def test_placeholder_must_be_in_the_skeleton() -> None:
    with pytest.raises(ValueError):
        json_stream.write(io.StringIO(), {"endpoints": []}, [])
