"""schemathesis against the admin API's own OpenAPI document (/api/openapi.json) on a running
admin app: generated requests, valid and invalid, with an admin token, must never get a 5xx or
a response the document does not describe (status, content type, body schema).

The app runs in a thread with its own event loop: schemathesis' Python API calls it over real
HTTP with requests, synchronously. Examples per operation are bounded (well under 60 s).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from tests.support.admin_app import admin_harness

# Examples per operation and mode (ADMIN_FUZZ_EXAMPLES=50 for a longer local run).
EXAMPLES = int(os.environ.get("ADMIN_FUZZ_EXAMPLES", "3"))
# Schema-valid but refused by design with 400: an opaque ?cursor= this API never handed out, an
# EST label the settings do not define. Every other check (no 5xx, status codes, content types,
# response schemas, negative data rejected, auth enforced) runs.
NOT_FUZZED = {"POST /api/v1/scans"}
EXCLUDED = [schemathesis.checks.positive_data_acceptance]


@dataclass
class Running:
    url: str
    token: str


@pytest.fixture
def running_admin(tmp_path: Path, db_url: str) -> Iterator[Running]:
    ready = threading.Event()
    box: dict[str, object] = {}
    loop = asyncio.new_event_loop()

    async def main() -> None:
        stop = asyncio.Event()
        box["stop"] = stop
        try:
            async with admin_harness(tmp_path, db_url=db_url) as harness:
                token = await harness.token("admin")
                cert = await harness.issue("fuzz.example.test", requester="est:meters")
                await harness.bind("est:meters", "team-a")
                box["running"] = Running(harness.url, token)
                box["cert"] = cert.id
                ready.set()
                await stop.wait()
        except BaseException as exc:
            box["error"] = exc
            ready.set()
            raise

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    assert ready.wait(60), "the admin app did not start"
    if "error" in box:
        raise AssertionError(f"the admin app did not start: {box['error']!r}")
    try:
        running = box["running"]
        assert isinstance(running, Running)
        yield running
    finally:
        stop = box["stop"]
        assert isinstance(stop, asyncio.Event)
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


def test_no_5xx_and_responses_match_schema(running_admin: Running) -> None:
    schema = schemathesis.openapi.from_url(running_admin.url + "/api/openapi.json")
    headers = {"Authorization": f"Bearer {running_admin.token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    # Starting a scan is left out: the fuzzer would scan whatever hosts it invents, and tests
    # never contact a non-loopback address (test_admin_api starts scans of loopback ports).
    operations = [op for op in operations if op.label not in NOT_FUZZED]
    for operation, mode in [
        (op, mode)
        for op in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    ]:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,  # the same cases every run: a failure is reproducible, never flaky
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, excluded_checks=EXCLUDED)

        check()
