"""The audit trail through the admin API over real HTTP on loopback (a software-key CA on SQLite
and PostgreSQL): filters, cursor pagination, the JSON-lines export, verification of a tampered
trail, and the request id from X-Request-Id carried into the audit entries."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from audit.trail import AuditTrail, iter_entries
from certyard.request_ids import HEADER
from storage.models_audit import AuditEntryRow
from tests.support.admin_app import AdminHarness, admin_harness

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
async def api(tmp_path: Path, db_url: str) -> AsyncIterator[AdminHarness]:
    async with admin_harness(tmp_path, db_url=db_url) as harness:
        yield harness


@pytest.fixture
async def lite(tmp_path: Path) -> AsyncIterator[AdminHarness]:
    async with admin_harness(tmp_path) as harness:
        yield harness


async def _seed(api: AdminHarness) -> list[int]:
    """Seven entries an hour apart (the trail may hold entries of the start-up already)."""
    hour = [0]

    def clock() -> dt.datetime:
        return T0 + dt.timedelta(hours=hour[0])

    trail = AuditTrail(api.services.sessions, clock=clock)
    made = []
    for i, (actor, action, target, outcome) in enumerate(
        [
            ("token:alice", "tokens.create_token", "/api/v1/tokens", "success"),
            ("token:bob", "tokens.revoke_token", "/api/v1/tokens/x/revoke", "denied"),
            ("token:alice", "certificates.revoke", "/api/v1/certificates/c1/revoke", "success"),
            ("token:carol", "tokens.create_token", "/api/v1/tokens", "failure"),
            ("token:alice", "est.approve", "/api/v1/est/pending/p1/approve", "success"),
            ("token:bob", "tokens.create_token", "/api/v1/tokens", "success"),
            ("token:alice", "scans.start", "/api/v1/scans", "success"),
        ]
    ):
        hour[0] = i
        entry = await trail.record_entry(
            actor=actor, action=action, target=target, outcome=outcome, details={"i": i}
        )
        made.append(entry.seq)
    return made


async def _all_pages(api: AdminHarness, token: str, params: dict[str, str]) -> list[Any]:
    items: list[Any] = []
    cursor: str | None = None
    while True:
        query = dict(params)
        if cursor:
            query["cursor"] = cursor
        status, body, _ = await api.call("GET", "/api/v1/audit/events", token, params=query)
        assert status == 200, body
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items


async def test_filters_and_pagination(api: AdminHarness) -> None:
    seqs = await _seed(api)
    token = await api.token("auditor")
    first = str(seqs[0])

    def seq_of(items: list[Any]) -> list[int]:
        return [item["seq"] for item in items]

    # Pages of 3 walk every entry once, in seq order; -seq walks them backwards.
    got = await _all_pages(api, token, {"limit": "3", "seq_from": first})
    assert seq_of(got) == seqs
    assert got[0]["actor"] == "token:alice" and got[0]["details"] == {"i": 0}
    assert got[1]["prev_hash"] == got[0]["entry_hash"]
    back = await _all_pages(api, token, {"limit": "2", "seq_from": first, "sort": "-seq"})
    assert seq_of(back) == seqs[::-1]

    async def only(**params: str) -> list[int]:
        return seq_of(await _all_pages(api, token, {"seq_from": first, **params}))

    assert await only(actor="token:bob") == [seqs[1], seqs[5]]
    assert await only(action="tokens.create_token") == [seqs[0], seqs[3], seqs[5]]
    assert await only(action="tokens.*") == [seqs[0], seqs[1], seqs[3], seqs[5]]
    assert await only(action="tokens_*") == []  # "_" is not a wildcard
    assert await only(target="/api/v1/tokens/*") == [seqs[1]]
    assert await only(outcome="denied") == [seqs[1]]
    assert await only(actor="token:alice", outcome="success", action="est.*") == [seqs[4]]
    since = (T0 + dt.timedelta(hours=2)).isoformat()
    until = (T0 + dt.timedelta(hours=4)).isoformat()
    assert await only(since=since, until=until) == [seqs[2], seqs[3]]
    # No zone: UTC.
    assert await only(since="2026-03-01T18:00:00") == [seqs[6]]
    assert seq_of(
        await _all_pages(api, token, {"seq_from": str(seqs[2]), "seq_to": str(seqs[3])})
    ) == [seqs[2], seqs[3]]

    # One entry; unknown or malformed ones are 404.
    status, one, _ = await api.call("GET", f"/api/v1/audit/events/{seqs[2]}", token)
    assert status == 200 and one["action"] == "certificates.revoke"
    for missing in ("999999", "abc", str(2**63)):
        status, body, response = await api.call("GET", f"/api/v1/audit/events/{missing}", token)
        assert status == 404 and response.content_type == "application/problem+json", body

    # Bad input is a precise 400.
    for params in ({"seq_from": "-1"}, {"since": "yesterday"}, {"cursor": "nope"}, {"x": "1"}):
        status, body, _ = await api.call("GET", "/api/v1/audit/events", token, params=params)
        assert status == 400, (params, body)
    status, body, _ = await api.call(
        "GET", "/api/v1/audit/events", token, params={"limit": "2", "sort": "seq"}
    )
    status, body, _ = await api.call(
        "GET",
        "/api/v1/audit/events",
        token,
        params={"sort": "-seq", "cursor": body["next_cursor"]},
    )
    assert status == 400 and "sort" in body["detail"]


async def test_export_json_lines_like_the_cli(api: AdminHarness) -> None:
    seqs = await _seed(api)
    token = await api.token("admin")
    after = str(seqs[0] - 1)
    status, raw, response = await api.call(
        "GET",
        "/api/v1/audit/export",
        token,
        params={"after": after},
        headers={"Accept": "application/x-ndjson"},
    )
    assert status == 200 and response.content_type == "application/x-ndjson"
    assert response.headers[HEADER]  # a streamed answer carries the request id too
    lines = raw.decode().splitlines()
    # Exactly what `certyard audit export --since` writes.
    wanted = [
        json.dumps(e.to_json(), ensure_ascii=False, sort_keys=True)
        async for e in iter_entries(api.services.sessions, int(after))
    ]
    assert lines == wanted and len(lines) == len(seqs)
    assert [json.loads(line)["seq"] for line in lines] == seqs
    # Filters apply to the export too.
    status, raw, _ = await api.call(
        "GET",
        "/api/v1/audit/export",
        token,
        params={"after": after, "actor": "token:bob"},
        headers={"Accept": "application/x-ndjson"},
    )
    assert [json.loads(line)["seq"] for line in raw.decode().splitlines()] == [seqs[1], seqs[5]]
    # Without asking for JSON lines: a JSON array, or CSV.
    status, rows, response = await api.call(
        "GET", "/api/v1/audit/export", token, params={"after": str(seqs[5])}
    )
    assert status == 200 and [r["seq"] for r in rows] == [seqs[6]]
    status, raw, response = await api.call(
        "GET", "/api/v1/audit/export", token, params={"after": str(seqs[5]), "format": "csv"}
    )
    assert status == 200 and response.content_type == "text/csv"
    header, row = raw.decode().splitlines()
    assert header.startswith("seq,time,actor,action") and row.startswith(f"{seqs[6]},")


async def test_tampered_row_shows_in_verify(api: AdminHarness) -> None:
    seqs = await _seed(api)
    token = await api.token("auditor")
    status, body, _ = await api.call("GET", "/api/v1/audit/verify", token)
    assert status == 200 and body["ok"] is True and body["broken"] is None, body
    assert body["entries"] >= len(seqs)
    # An attacker with database access rewrites who did it.
    async with api.services.sessions.begin() as session:
        await session.execute(
            update(AuditEntryRow).where(AuditEntryRow.seq == seqs[3]).values(actor="token:eve")
        )
    status, body, _ = await api.call("GET", "/api/v1/audit/verify", token)
    assert status == 200 and body["ok"] is False, body
    assert body["broken"]["seq"] == seqs[3] and body["broken"]["problem"]


async def test_request_id_reaches_the_audit_entry(lite: AdminHarness) -> None:
    api = lite
    # The real trail instead of the harness' recording one.
    api.admin.recorder = AuditTrail(api.services.sessions)
    admin = await api.token("admin")
    auditor = await api.token("auditor")

    async def entries_of(request_id: str) -> list[Any]:
        status, body, _ = await api.call(
            "GET", "/api/v1/audit/events", auditor, params={"request_id": request_id}
        )
        assert status == 200, body
        return list(body["items"])

    # A well-formed incoming id is kept, answered, and stored with the entries it caused.
    status, _, response = await api.call(
        "POST",
        "/api/v1/tokens",
        admin,
        json={"name": "ci", "role": "viewer"},
        headers={HEADER: "proxy-7f3a.42"},
    )
    assert status == 201 and response.headers[HEADER] == "proxy-7f3a.42"
    got = await entries_of("proxy-7f3a.42")
    assert [(e["action"], e["outcome"]) for e in got] == [
        ("tokens.create_token", "requested"),
        ("tokens.create_token", "success"),
    ]
    # Without one (or with a malformed one) the server makes one up and answers it.
    for sent in (None, "has space", "x" * 129, "ünïcode", "-leading-dash"):
        headers = {HEADER: sent} if sent is not None else {}
        status, _, response = await api.call(
            "POST", "/api/v1/tokens", admin, json={"name": "ci", "role": "viewer"}, headers=headers
        )
        made = response.headers[HEADER]
        assert status == 201 and made != sent and len(made) == 32
        assert [e["outcome"] for e in await entries_of(made)] == ["requested", "success"]
    # A denied request is audited under its id too; errors carry the header as well.
    viewer = await api.token("viewer")
    status, _, response = await api.call("GET", "/api/v1/audit/events", viewer)
    assert status == 403
    assert [e["outcome"] for e in await entries_of(response.headers[HEADER])] == ["denied"]
    status, _, response = await api.call("GET", "/api/v1/no-such-thing", admin)
    assert status == 404 and response.headers[HEADER]


async def test_namespace_bound_principal_cannot_read_the_trail(lite: AdminHarness) -> None:
    token = await lite.token("auditor", namespace="team-a")
    for path in ("/audit/events", "/audit/events/1", "/audit/export", "/audit/verify"):
        status, body, _ = await lite.call("GET", "/api/v1" + path, token)
        assert status == 403 and "namespace" in body["detail"], (path, body)
