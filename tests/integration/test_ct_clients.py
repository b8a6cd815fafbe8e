"""Both CT clients (RFC 6962 and static-ct-api) against the suite's test log on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509

from ct_monitor.clients import open_client
from ct_monitor.config import CTLogOverride, CTSettings
from ct_monitor.loglist import load_log_list
from ct_monitor.merkle import CompactRange, ProofError, verify_consistency, verify_inclusion
from ct_monitor.rfc6962 import RFC6962Client
from ct_monitor.static_ct import StaticCTClient
from ct_monitor.types import LogClient, LogEntry, LogMisbehaviour, RateLimited, TreeHead
from tests.support.ctlog import CTTestLog
from tests.support.tools import require_tool

KINDS = ["rfc6962", "tiled"]


@pytest.fixture
async def ctlog() -> AsyncIterator[CTTestLog]:
    async with CTTestLog() as log:
        yield log


def client_for(log: CTTestLog, kind: str, contact: str = "ct-tests@example.test") -> LogClient:
    settings = CTSettings(user_agent_contact=contact, max_retry_wait_seconds=5)
    return open_client(log.description(kind), settings)


async def read_all(client: LogClient, start: int, end: int) -> list[LogEntry]:
    """What a monitor does: ask for the rest, continue after whatever came back."""
    out: list[LogEntry] = []
    while start <= end:
        batch = await client.get_entries(start, end)
        assert batch, "a client returned no entries"
        assert [e.index for e in batch] == list(range(start, start + len(batch)))
        out += batch
        start += len(batch)
    return out


def root_of(entries: list[LogEntry], base: CompactRange | None = None) -> bytes:
    cr = base.copy() if base else CompactRange()
    cr.extend(e.leaf_hash for e in entries)
    return cr.root()


@pytest.mark.parametrize("kind", KINDS)
async def test_tree_head_verified_and_entries_recompute_its_root(
    ctlog: CTTestLog, kind: str
) -> None:
    pre_i, final_i, pair = ctlog.add_pair(["www.example.com", "example.com"])
    ctlog.add_synthetic(700)
    ctlog.publish()
    client = client_for(ctlog, kind)
    try:
        head = await client.get_tree_head()
        assert head.tree_size == 702
        entries = await read_all(client, 0, head.tree_size - 1)
        assert root_of(entries) == head.root_hash
        pre, final = entries[pre_i], entries[final_i]
        assert pre.entry_type == "precert" and final.entry_type == "x509"
        assert pre.tbs_der == pair.tbs_der and pre.cert_der == pair.precert_der
        assert pre.issuer_key_hash == pair.issuer.key_hash
        assert final.cert_der == pair.final_der and final.chain_der == [pair.issuer.der]
        assert x509.load_der_x509_certificate(entries[500].cert_der).subject.rfc4514_string() == (
            "CN=n00000500.synthetic.test"
        )
        assert all(not e.parse_error for e in entries)
        assert any("certyard-ct/0.1 (+ct-tests@example.test)" == ua for ua in ctlog.user_agents)
    finally:
        await client.aclose()


@pytest.mark.parametrize("kind", KINDS)
async def test_bad_signature_is_rejected(ctlog: CTTestLog, kind: str) -> None:
    ctlog.add_synthetic(10)
    ctlog.publish()
    ctlog.bad_signature = True
    client = client_for(ctlog, kind)
    try:
        with pytest.raises(LogMisbehaviour, match="signature") as info:
            await client.get_tree_head()
        assert info.value.log_url == client.url
    finally:
        await client.aclose()


async def test_short_get_entries_responses_are_continued(ctlog: CTTestLog) -> None:
    ctlog.add_synthetic(95)
    ctlog.publish()
    ctlog.max_get_entries = 7
    client = client_for(ctlog, "rfc6962")
    try:
        head = await client.get_tree_head()
        first = await client.get_entries(0, 94)
        assert len(first) == 7
        entries = await read_all(client, 0, 94)
        assert len(entries) == 95 and root_of(entries) == head.root_hash
    finally:
        await client.aclose()


@pytest.mark.parametrize("kind", KINDS)
async def test_429_with_retry_after_is_waited_out(ctlog: CTTestLog, kind: str) -> None:
    ctlog.add_synthetic(20)
    ctlog.publish()
    client = client_for(ctlog, kind)
    try:
        ctlog.rate_limit(2, retry_after=1)
        started = time.monotonic()
        head = await client.get_tree_head()
        # Retry-After was honoured: two refusals of one second each were waited out.
        assert time.monotonic() - started >= 1.9
        assert ctlog.rate_limited_served == 2 and head.tree_size == 20
        # A Retry-After longer than the client will wait goes to the caller.
        ctlog.rate_limit(1, retry_after=3600)
        with pytest.raises(RateLimited) as info:
            await client.get_entries(0, 5)
        assert info.value.retry_after_s == pytest.approx(3600)
    finally:
        await client.aclose()


async def test_503_without_retry_after_backs_off_and_retries(ctlog: CTTestLog) -> None:
    ctlog.add_synthetic(3)
    ctlog.publish()
    client = client_for(ctlog, "rfc6962")
    try:
        ctlog.rate_limit(1, retry_after=None, status=503)
        started = time.monotonic()
        assert len(await client.get_entries(0, 2)) == 3
        assert time.monotonic() - started >= 0.9  # the first backoff step is one second
        assert ctlog.rate_limited_served == 1
    finally:
        await client.aclose()


async def test_requests_per_second_budget_spaces_requests(ctlog: CTTestLog) -> None:
    ctlog.add_synthetic(10)
    ctlog.publish()
    client = RFC6962Client(ctlog.description("rfc6962", requests_per_second=5.0))
    try:
        started = time.monotonic()
        for _ in range(8):
            await client.get_tree_head()
        # Budget 5/s with a burst of 5: the last three requests wait for tokens.
        assert time.monotonic() - started >= 0.5
    finally:
        await client.aclose()


async def test_partial_data_tiles_and_fallback_to_full_tile(ctlog: CTTestLog) -> None:
    ctlog.add_synthetic(300)  # one full data tile and a partial one of width 44
    ctlog.publish()
    client = client_for(ctlog, "tiled")
    assert isinstance(client, StaticCTClient)
    try:
        head = await client.get_tree_head()
        entries = await read_all(client, 0, 299)
        assert root_of(entries) == head.root_hash
        # The log fills the tile and drops partial tiles: a client still at size 300 reads
        # the full tile and keeps the 44 entries it needs.
        ctlog.add_synthetic(300)
        ctlog.publish()
        ctlog.drop_partial_tiles = True
        again = await client.get_entries(256, 299)
        assert [e.leaf_hash for e in again] == [e.leaf_hash for e in entries[256:]]
        # And a partial tile that does not exist at all is an error, never silent.
        assert ctlog.requests["tile"] >= 3
    finally:
        await client.aclose()


@pytest.mark.parametrize("kind", KINDS)
async def test_consistency_proof_verified(ctlog: CTTestLog, kind: str) -> None:
    ctlog.add_synthetic(1000)
    ctlog.publish()
    client = client_for(ctlog, kind)
    try:
        old = await client.get_tree_head()
        ctlog.add_pair(["shop.example.com"])
        ctlog.add_synthetic(70_000 - ctlog.size)  # reaches level-1 and level-2 hash tiles
        ctlog.publish()
        new = await client.get_tree_head()
        for first in (1, 256, 777, old.tree_size, 65_536):
            second = new.tree_size
            proof = await client.get_consistency_proof(first, second)
            verify_consistency(first, second, ctlog.main.tree.root(first), new.root_hash, proof)
        proof = await client.get_consistency_proof(old.tree_size, new.tree_size)
        with pytest.raises(ProofError):
            verify_consistency(old.tree_size, new.tree_size, b"\x00" * 32, new.root_hash, proof)
    finally:
        await client.aclose()


async def test_inclusion_proof_by_hash(ctlog: CTTestLog) -> None:
    index = ctlog.add_cert(["mail.example.com"])
    ctlog.add_synthetic(40)
    ctlog.publish()
    client = RFC6962Client(ctlog.description("rfc6962"))
    try:
        head = await client.get_tree_head()
        [entry] = await client.get_entries(index, index)
        found, path = await client.get_proof_by_hash(entry.leaf_hash, head.tree_size)
        assert found == index
        verify_inclusion(index, head.tree_size, entry.leaf_hash, path, head.root_hash)
    finally:
        await client.aclose()


@pytest.mark.parametrize("kind", KINDS)
async def test_wrong_root_detected_by_recomputation(ctlog: CTTestLog, kind: str) -> None:
    ctlog.add_synthetic(300)
    ctlog.publish()
    ctlog.wrong_root = True  # validly signed, but over a root that is not the tree's
    client = client_for(ctlog, kind)
    try:
        head = await client.get_tree_head()
        entries = await read_all(client, 0, head.tree_size - 1)
        assert root_of(entries) != head.root_hash
    finally:
        await client.aclose()


@pytest.mark.parametrize("kind", KINDS)
async def test_split_view_is_visible_as_inconsistent_heads(ctlog: CTTestLog, kind: str) -> None:
    ctlog.add_synthetic(500)
    ctlog.publish()
    ctlog.fork(at=400, extra=150)
    ctlog.split_view_for_user_agent("victim@")
    honest = client_for(ctlog, kind, "honest@example.test")
    victim = client_for(ctlog, kind, "victim@example.test")
    try:
        h1: TreeHead = await honest.get_tree_head()
        h2: TreeHead = await victim.get_tree_head()
        assert (h1.tree_size, h2.tree_size) == (500, 550)
        # Both heads are validly signed, yet no consistency proof can join them: a monitor
        # keeping the honest view's compact range sees the victim's root does not extend it.
        entries = await read_all(victim, 0, h2.tree_size - 1)
        assert root_of(entries) == h2.root_hash
        honest_entries = await read_all(honest, 0, h1.tree_size - 1)
        assert root_of(honest_entries) == h1.root_hash
        assert entries[399].leaf_hash == honest_entries[399].leaf_hash
        assert entries[400].leaf_hash != honest_entries[400].leaf_hash
    finally:
        await honest.aclose()
        await victim.aclose()


async def test_log_list_written_by_the_test_log_loads_both_kinds(
    ctlog: CTTestLog, tmp_path: Path
) -> None:
    path = ctlog.write_log_list(tmp_path / "logs.json")
    settings = CTSettings(
        log_list=str(path),
        overrides={ctlog.monitoring_url: CTLogOverride(batch_size=256, parallel_downloads=2)},
    )
    loaded = await load_log_list(settings)
    kinds = {d.kind: d for d in loaded.logs}
    assert set(kinds) == {"rfc6962", "tiled"}
    assert kinds["tiled"].origin == ctlog.origin
    assert kinds["tiled"].parallel_downloads == 2
    assert kinds["rfc6962"].key_der == ctlog.key_der
    assert base64.b64encode(kinds["rfc6962"].log_id) == base64.b64encode(ctlog.log_id)
    ctlog.add_synthetic(3)
    ctlog.publish()
    for d in loaded.logs:
        client = open_client(d, settings)
        try:
            assert (await client.get_tree_head()).tree_size == 3
        finally:
            await client.aclose()


async def test_certspotter_verifies_the_test_log(ctlog: CTTestLog, tmp_path: Path) -> None:
    """An independent monitor (SSLMate certspotter, Debian package) accepts the test log's
    signatures and tree, so the suite's log is a real RFC 6962 log, not one that only agrees
    with our own client."""
    certspotter = require_tool("certspotter")
    ctlog.add_pair(["www.watched.example"])
    ctlog.add_synthetic(2000)
    ctlog.add_cert(["api.watched.example"])
    ctlog.publish()
    logs = ctlog.write_log_list(tmp_path / "logs.json", kinds=["rfc6962"])
    (tmp_path / "watch").write_text(".watched.example\n")
    state = tmp_path / "state"
    proc = await asyncio.create_subprocess_exec(
        certspotter, "-logs", str(logs), "-watchlist", str(tmp_path / "watch"),
        "-state_dir", str(state), "-no_save", "-stdout",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        verified = -1
        while time.monotonic() < deadline:
            for path in state.glob("logs/*/state.json"):
                data = json.loads(path.read_text() or "{}")
                verified = data.get("verified_position", {}).get("size", -1)
            if verified == ctlog.size:
                break
            await asyncio.sleep(0.2)
        assert verified == ctlog.size == 2003
    finally:
        proc.terminate()
        await proc.wait()
