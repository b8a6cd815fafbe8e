"""Reports of recorded scans: ``certyard report --scan ID`` in every format, read back from the
inventory, with the diff against the previous scan; ``certyard scan diff A B``; the HTML report
rendered by headless Chromium (Debian ``chromium`` driven by Playwright)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from scanner.runner import ScanOptions
from scanner.scan import ScanRequest, scan
from storage.engine import create_engine, migrate, session_factory
from tests.integration.test_scan_fleet import TIMEOUT, Fleet, build_fleet, observed
from tests.support.server import certyard_command
from tests.support.tools import REPO_ROOT, require_tool

ARTIFACTS = REPO_ROOT / "var" / "test-artifacts"


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    built = await build_fleet(tmp_path)
    try:
        yield built
    finally:
        built.close()


async def _cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *certyard_command(),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_reports_of_recorded_scans(fleet: Fleet, tmp_path: Path) -> None:
    assert fleet.trust is not None
    data = tmp_path / "data"
    data.mkdir()
    db_url = f"sqlite+aiosqlite:///{data}/certyard.db"
    engine = create_engine(db_url)
    await migrate(engine)
    sessions = session_factory(engine)

    def request(targets: list[str]) -> ScanRequest:
        assert fleet.trust is not None
        return ScanRequest(
            targets=targets,
            trust=[fleet.trust],
            system_trust=None,
            options=ScanOptions(timeout=TIMEOUT, retries=0, concurrency=16),
            seed=3,
        )

    try:
        first = await scan(request(fleet.targets), sessions=sessions)
        # The second scan leaves out the first target: its endpoints vanish, and with them
        # their findings are "resolved" as far as the diff can tell.
        dropped = fleet.targets[0]
        second = await scan(request(fleet.targets[1:]), sessions=sessions)
    finally:
        await engine.dispose()
    assert first.scan_id and second.scan_id
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTYARD__")}
    env["CERTYARD__SERVER__DATA_DIR"] = str(data)

    # JSON from the inventory reports what the live scan reported, plus the diff.
    code, out, err = await _cli(env, "report", "--scan", second.scan_id)
    assert code == 0, err
    stored = json.loads(out)
    assert observed(stored["endpoints"]) == observed(second.document["endpoints"])
    changes = stored["diff"]
    assert changes["from_scan"] == first.scan_id and changes["to_scan"] == second.scan_id
    dropped_ip = dropped.split("@")[-1].split(":")[0]
    vanished = {(e["ip"], e["port"]) for e in changes["vanished_endpoints"]}
    assert vanished and all(ip == dropped_ip for ip, _ in vanished)
    assert changes["new_endpoints"] == [] and changes["changed_certificates"] == []
    assert changes["new_findings"] == []

    code, out, err = await _cli(env, "scan", "diff", first.scan_id, second.scan_id)
    assert code == 0, err
    assert json.loads(out) == changes

    # CSV: one row per endpoint, findings in one cell.
    code, out, err = await _cli(env, "report", "--scan", second.scan_id, "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == len(second.document["endpoints"])
    by_key = {(r["ip"], int(r["port"]), r["sni"] or None): r for r in rows}
    for e in second.document["endpoints"]:
        row = by_key[(e["ip"], e["port"], e["sni"])]
        assert row["status"] == e["status"]
        codes = sorted(x.split(":")[0] for x in row["findings"].split("; ") if x)
        assert codes == sorted(f["code"] for f in e["findings"])

    # SARIF from the inventory: one result per finding.
    code, out, err = await _cli(env, "report", "--scan", second.scan_id, "--format", "sarif")
    assert code == 0, err
    results = json.loads(out)["runs"][0]["results"]
    assert len(results) == sum(len(e["findings"]) for e in second.document["endpoints"])

    # Unknown scan: one line, exit 2.
    code, out, err = await _cli(env, "report", "--scan", "scan-nope")
    assert code == 2 and "no scan scan-nope" in err and "Traceback" not in err

    # A scan run from the command line carries the diff against the scan before it too.
    code, out, err = await _cli(
        env, "scan", *fleet.targets[1:], "--trust", str(fleet.trust), "--timeout", "1.5",
        "--retries", "0",
    )  # fmt: skip
    assert code == 0, err
    third = json.loads(out)
    assert third["diff"]["from_scan"] == second.scan_id
    assert third["diff"]["to_scan"] == third["scan"]["id"]
    assert third["diff"]["new_endpoints"] == third["diff"]["vanished_endpoints"] == []

    html = tmp_path / "report.html"
    code, _, err = await _cli(
        env, "report", "--scan", second.scan_id, "--format", "html", "--out", str(html)
    )
    assert code == 0, err
    await _check_html_in_chromium(html, len(second.document["endpoints"]))


async def _check_html_in_chromium(html: Path, endpoints: int) -> None:
    chromium = require_tool("chromium")
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = await browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            # Offline by construction: any request other than the file itself is a failure.
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            await page.goto(html.as_uri())
            chart = page.locator("#expiry-chart")
            assert await chart.is_visible()
            box = await chart.bounding_box()
            assert box is not None and box["width"] > 100 and box["height"] > 100
            assert await page.locator("#expiry-chart rect").count() == 6
            assert await page.locator("#endpoints ~ table tr").count() == endpoints + 1
            shot = await page.screenshot(path=str(ARTIFACTS / "scan-report.png"), full_page=True)
            assert len(shot) > 10_000
        finally:
            await browser.close()
    assert errors == []
    assert requests == [html.as_uri()]
