"""The admin API's CT, renewal and deployment resources over real HTTP on loopback, on SQLite
and PostgreSQL, with rows written by the real code (CTStore, RenewalRunner, deploy.repository)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from certyard.renew_commands import RUN_LEASE
from ct_monitor.state import CTStore, LogState, MatchRecord
from deploy import repository
from deploy.targets import Endpoint, Target
from renewal.config import PolicyConfig, PolicyMatch, RenewalSettings
from renewal.queue import load_queue
from renewal.runner import RenewalRunner
from storage.repositories import leases
from tests.support.admin_app import AdminHarness, admin_harness

V1 = "/api/v1"


@pytest.fixture
async def api(tmp_path: Path, db_url: str) -> AsyncIterator[AdminHarness]:
    async with admin_harness(tmp_path, db_url=db_url) as harness:
        yield harness


def assert_problem(status: int, body: Any, response: Any, expected: int) -> None:
    assert status == expected, body
    assert response.content_type == "application/problem+json"
    assert body["status"] == expected and body["title"] and body["detail"]


async def walk(api: AdminHarness, path: str, token: str, **params: str) -> list[Any]:
    """Every item of a list, one-item pages, following next_cursor."""
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(50):
        query = {**params, "limit": "1", **({"cursor": cursor} if cursor else {})}
        status, body, _ = await api.call("GET", V1 + path, token, params=query)
        assert status == 200, body
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination did not end")


def _match(index: int, names: list[str], finding: str | None, entry_type: str) -> MatchRecord:
    return MatchRecord(
        log_url="https://ct.example.test/log/",
        entry_index=index,
        entry_type=entry_type,
        names=names,
        issuer="CN=Some CA",
        not_before=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        not_after=dt.datetime(2026, 4, 1, tzinfo=dt.UTC),
        tbs_sha256=f"{index:064x}",
        cert_sha256=None,
        der=None,
        finding=finding,
        serial=f"{index:x}",
        notes=[],
    )


async def test_ct_watch_matches_and_logs(api: AdminHarness) -> None:
    operator = await api.token("operator")
    viewer = await api.token("viewer")
    team = await api.token("admin", namespace="team-a")

    # The watch list round trip, audited with the canonical pattern.
    status, body, _ = await api.call(
        "POST", V1 + "/ct/watch", operator, json={"pattern": "Shop.Example.TEST"}
    )
    assert (status, body) == (200, {"pattern": "shop.example.test", "added": True})
    status, body, _ = await api.call(
        "POST", V1 + "/ct/watch", operator, json={"pattern": "shop.example.test"}
    )
    assert (status, body["added"]) == (200, False)
    status, body, _ = await api.call(
        "POST", V1 + "/ct/watch", operator, json={"pattern": ".bücher.test"}
    )
    assert body["pattern"] == ".xn--bcher-kva.test"
    for bad in ("*.example.test", "a..b", "exa mple.test"):
        status, body, response = await api.call(
            "POST", V1 + "/ct/watch", operator, json={"pattern": bad}
        )
        assert_problem(status, body, response, 400)
    status, body, response = await api.call(
        "POST", V1 + "/ct/watch", viewer, json={"pattern": "x.test"}
    )
    assert_problem(status, body, response, 403)
    patterns = [i["pattern"] for i in await walk(api, "/ct/watch", viewer)]
    assert patterns == [".xn--bcher-kva.test", "shop.example.test"]
    assert await CTStore(api.services.sessions).watch_items() != []

    status, _, _ = await api.call("DELETE", V1 + "/ct/watch/shop.example.test", operator)
    assert status == 204
    status, body, response = await api.call("DELETE", V1 + "/ct/watch/shop.example.test", operator)
    assert_problem(status, body, response, 404)
    assert [i.pattern for i in await CTStore(api.services.sessions).watch_items()] == [
        ".xn--bcher-kva.test"
    ]
    audited = [
        (e.action, e.outcome, (e.details or {}).get("pattern")) for e in api.recorder.outcomes()
    ]
    assert ("ct.add_ct_watch", "success", "shop.example.test") in audited
    assert ("ct.remove_ct_watch", "success", "shop.example.test") in audited
    assert ("ct.remove_ct_watch", "failure", "shop.example.test") in audited
    assert ("ct.add_ct_watch", "failure", None) in audited  # the 400s
    assert ("ct.add_ct_watch", "denied", None) in audited

    # Matches and log state as the monitor writes them.
    store = CTStore(api.services.sessions)
    state = LogState("https://ct.example.test/log/", "rfc6962", tree_size_seen=120)
    await store.commit_batch(
        state,
        [
            _match(1, ["shop.example.test"], "ct_unknown_issuance", "precert"),
            _match(2, ["www.example.test", "example.test"], None, "x509"),
            _match(3, ["api.example.test"], "ct_unknown_issuance", "x509"),
        ],
    )
    await store.record_error(
        LogState("https://ct2.example.test/", "tiled", tree_size_seen=5), "HTTP 503 from the log"
    )
    status, body, _ = await api.call("GET", V1 + "/ct/logs", viewer)
    assert status == 200
    logs = {i["log_url"]: i for i in body["items"]}
    assert logs["https://ct.example.test/log/"]["lag"] == 120
    assert logs["https://ct.example.test/log/"]["tree_size"] == 120
    assert logs["https://ct2.example.test/"]["last_error"] == "HTTP 503 from the log"

    async def indexes(**params: str) -> list[int]:
        return [m["index"] for m in await walk(api, "/ct/matches", viewer, **params)]

    assert await indexes() == [3, 2, 1]  # newest first
    assert await indexes(sort="id") == [1, 2, 3]
    assert await indexes(name="SHOP") == [1]
    assert await indexes(name="example.test") == [3, 2, 1]
    assert await indexes(finding="ct_unknown_issuance") == [3, 1]
    assert await indexes(finding="none") == [2]
    assert await indexes(entry_type="precert") == [1]
    assert await indexes(since="2999-01-01T00:00:00Z") == []
    status, body, response = await api.call(
        "GET", V1 + "/ct/matches", viewer, params={"entry_type": "bogus"}
    )
    assert_problem(status, body, response, 400)
    status, body, response = await api.call(
        "GET", V1 + "/ct/matches", viewer, params={"cursor": "bm90LWEtY3Vyc29y"}
    )
    assert_problem(status, body, response, 400)

    # Global resources: a namespace-bound principal is refused.
    for method, path in (("GET", "/ct/watch"), ("GET", "/ct/matches"), ("GET", "/ct/logs")):
        status, body, response = await api.call(method, V1 + path, team)
        assert_problem(status, body, response, 403)


async def test_renewal_queue_policies_runs_and_dry_run(api: AdminHarness) -> None:
    assert api.admin.app_settings is not None
    renewal = RenewalSettings(
        policies=[
            PolicyConfig(
                name="urgent",
                match=PolicyMatch(names=["due*.renew.test"]),
                renew_days_before=3650,  # due from the day of issuance
                owner="pki-team",
            )
        ]
    )
    api.admin.app_settings = api.admin.app_settings.model_copy(update={"renewal": renewal})
    for name in ("due1.renew.test", "due2.renew.test", "fine.renew.test"):
        await api.issue(name)
    viewer = await api.token("viewer")
    operator = await api.token("operator")
    team = await api.token("admin", namespace="team-a")

    status, body, _ = await api.call("GET", V1 + "/renewal/policies", viewer)
    assert (status, body) == (200, {"items": []})  # nothing synced before the first pass

    # A real pass through the runner: it records the run and syncs the policies.
    now = dt.datetime.now(dt.UTC)
    queue = await load_queue(api.services.sessions, renewal, now)
    result = await RenewalRunner(api.services.sessions, renewal).run(queue, now, dry_run=False)
    assert result.run_id is not None

    status, body, _ = await api.call("GET", V1 + "/renewal/policies", viewer)
    assert [(p["name"], p["position"], p["owner"]) for p in body["items"]] == [
        ("urgent", 0, "pki-team"),
        ("default", 1, None),
    ]
    runs = await walk(api, "/renewal/runs", viewer)
    assert [(r["run"], r["status"]) for r in runs] == [(result.run_id, "done")]
    assert sorted(a["names"][0] for a in runs[0]["actions"]) == [
        "due1.renew.test",
        "due2.renew.test",
    ]
    assert await walk(api, "/renewal/runs", viewer, status="failed") == []

    entries = await walk(api, "/renewal/queue", viewer)
    assert [e["priority"] for e in entries] == sorted(
        (e["priority"] for e in entries), reverse=True
    )
    assert {e["names"][0] for e in entries} >= {
        "due1.renew.test",
        "due2.renew.test",
        "fine.renew.test",
    }
    due = await walk(api, "/renewal/queue", viewer, state="renew-due")
    assert sorted(e["names"][0] for e in due) == ["due1.renew.test", "due2.renew.test"]
    assert all(e["policy"] == "urgent" and e["needs_action"] for e in due)
    assert [e["key"] for e in await walk(api, "/renewal/queue", viewer, due="true")] == [
        e["key"] for e in due
    ]
    assert await walk(api, "/renewal/queue", viewer, source="scan") == []
    assert await walk(api, "/renewal/queue", viewer, method="ssh") == []
    status, body, response = await api.call(
        "GET", V1 + "/renewal/queue", viewer, params={"cursor": "bm9wZQ"}
    )
    assert_problem(status, body, response, 400)

    # A dry run through the API: the planned actions, nothing recorded.
    before = len(api.recorder.events)
    status, body, _ = await api.call("POST", V1 + "/renewal/runs", operator, json={"dry_run": True})
    assert status == 200, body
    assert body["run"] is None and body["dry_run"] is True
    assert sorted(a["names"][0] for a in body["actions"]) == ["due1.renew.test", "due2.renew.test"]
    assert {a["outcome"] for a in body["actions"]} == {"planned"}
    assert body["summary"]["actions"] == 2
    assert [r["run"] for r in await walk(api, "/renewal/runs", viewer)] == [result.run_id]
    audited = [(e.action, e.outcome, e.details) for e in api.recorder.events[before:]]
    assert audited[-1] == (
        "renewal.start_renewal_run",
        "success",
        {"dry_run": True, "run": None, "actions": 2},
    )

    status, body, response = await api.call(
        "POST", V1 + "/renewal/runs", viewer, json={"dry_run": True}
    )
    assert_problem(status, body, response, 403)
    status, body, response = await api.call(
        "POST", V1 + "/renewal/runs", operator, json={"dry_run": "x"}
    )
    assert_problem(status, body, response, 400)
    for path in ("/renewal/queue", "/renewal/policies", "/renewal/runs"):
        status, body, response = await api.call("GET", V1 + path, team)
        assert_problem(status, body, response, 403)

    # A real pass through the API, one at a time: while the lease is held elsewhere, 409.
    assert await leases.acquire(
        api.services.sessions, RUN_LEASE, "other-instance", api.clock(), dt.timedelta(minutes=5)
    )
    status, body, response = await api.call(
        "POST", V1 + "/renewal/runs", operator, json={"dry_run": False}
    )
    assert_problem(status, body, response, 409)
    await leases.release(api.services.sessions, RUN_LEASE, "other-instance")
    status, body, _ = await api.call(
        "POST", V1 + "/renewal/runs", operator, json={"dry_run": False}
    )
    assert status == 200 and body["run"] and body["dry_run"] is False, body
    assert {a["outcome"] for a in body["actions"]} == {"ok"}
    runs = await walk(api, "/renewal/runs", viewer)
    assert [r["run"] for r in runs] == [body["run"], result.run_id]

    # Without the full configuration (another embedding), a pass is 501, not a crash.
    api.admin.app_settings = None
    status, body, response = await api.call(
        "POST", V1 + "/renewal/runs", operator, json={"dry_run": True}
    )
    assert_problem(status, body, response, 501)


def _target(name: str) -> Target:
    host = f"{name}.deploy.test"
    return Target(
        name=name,
        host="127.0.0.1",
        port=22,
        username="deploy",
        key_file=None,
        # A pinned key as `certyard deploy target add` stores it (never contacted here).
        host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOfx1aM1y3UVwqUKu+F3JG0e5R5FJ6R5DT1q1k2vY5rJ",
        host_key_fingerprint="SHA256:" + "A" * 43,
        names=(host,),
        profile="tls-server",
        key_path="/etc/ssl/private/site.key",
        cert_path="/etc/ssl/certs/site.pem",
        verify=Endpoint("127.0.0.1", 443, host),
        reload_command="systemctl reload nginx",
    )


async def test_deploy_targets_and_runs(api: AdminHarness) -> None:
    sessions = api.services.sessions
    now = dt.datetime.now(dt.UTC)
    for name in ("web-2", "web-1"):
        await repository.add_target(sessions, _target(name), now)
    first = await repository.start_run(sessions, "web-1", dry_run=True, requester="cli", now=now)
    await repository.finish_run(
        sessions,
        first,
        status="dry_run",
        detail="would deploy",
        steps=[{"step": "connect", "ok": True, "detail": ""}],
        now=now,
    )
    later = now + dt.timedelta(minutes=1)
    second = await repository.start_run(
        sessions, "web-2", dry_run=False, requester="cli", now=later
    )
    await repository.finish_run(
        sessions,
        second,
        status="failed",
        detail="reload failed",
        steps=[],
        now=later,
        finding="deploy_failed",
    )
    viewer = await api.token("viewer")
    team = await api.token("admin", namespace="team-a")

    targets = await walk(api, "/deploy/targets", viewer)
    assert [t["name"] for t in targets] == ["web-1", "web-2"]
    status, body, _ = await api.call("GET", V1 + "/deploy/targets/web-1", viewer)
    assert status == 200
    assert body["key_mode"] == "0600" and body["cert_mode"] == "0644"
    assert body["credentials"] == "ssh-agent"
    assert body["verify"] == "127.0.0.1:443,web-1.deploy.test"
    assert body["last_status"] == "dry_run" and body["names"] == ["web-1.deploy.test"]
    assert "host_key" not in body and body["host_key_fingerprint"].startswith("SHA256:")
    status, body, response = await api.call("GET", V1 + "/deploy/targets/no-such-target", viewer)
    assert_problem(status, body, response, 404)

    runs = await walk(api, "/deploy/runs", viewer)
    assert [r["id"] for r in runs] == [second, first]
    assert runs[0]["finding"] == "deploy_failed" and runs[1]["steps"][0]["step"] == "connect"
    assert [r["id"] for r in await walk(api, "/deploy/runs", viewer, target="web-1")] == [first]
    assert [r["id"] for r in await walk(api, "/deploy/runs", viewer, status="failed")] == [second]
    assert [r["id"] for r in await walk(api, "/deploy/runs", viewer, sort="started_at")] == [
        first,
        second,
    ]
    # Creating targets stays with the CLI (host-key pinning): no such route.
    status, _, _ = await api.call("POST", V1 + "/deploy/targets", viewer, json={"name": "x"})
    assert status == 405
    for path in ("/deploy/targets", "/deploy/targets/web-1", "/deploy/runs"):
        status, body, response = await api.call("GET", V1 + path, team)
        assert_problem(status, body, response, 403)
