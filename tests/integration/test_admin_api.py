"""The admin API over real HTTP on loopback (a software-key CA on SQLite and PostgreSQL):
the role × endpoint table, tokens, OIDC with a test issuer, pagination, filters, exports,
problem documents, namespaces, revocation and EST approvals."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import secrets
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from admin_api.app import all_routes
from storage.models import Certificate, EstPending
from tests.support.admin_app import AdminHarness, admin_harness
from tests.support.server import free_port

ALL = {"admin", "operator", "auditor", "viewer"}
OPS = {"admin", "operator"}
ADMIN = {"admin"}
MISSING = "no-such-id"

# (method, path, JSON body or None, the roles allowed). "{cert}" is a real certificate's id.
TABLE: list[tuple[str, str, dict[str, Any] | None, set[str]]] = [
    ("GET", "/certificates", None, ALL),
    ("GET", "/certificates/export", None, ALL),
    ("GET", "/certificates/{cert}", None, ALL),
    ("POST", f"/certificates/{MISSING}/revoke", {"reason": "superseded"}, OPS),
    ("GET", "/scans", None, ALL),
    ("GET", f"/scans/{MISSING}", None, ALL),
    ("GET", f"/scans/{MISSING}/report", None, ALL),
    # A scan of one closed loopback port ({closed}): allowed roles start a real, harmless scan.
    ("POST", "/scans", {"targets": ["127.0.0.1"], "ports": ["{closed}"], "timeout": 1}, OPS),
    ("POST", f"/scans/{MISSING}/cancel", None, OPS),
    ("GET", "/endpoints", None, ALL),
    ("GET", "/findings", None, ALL),
    ("GET", "/findings/export", None, ALL),
    ("GET", "/acme/accounts", None, ALL),
    ("GET", f"/acme/accounts/{MISSING}", None, ALL),
    ("GET", "/acme/eab-keys", None, ALL),
    ("POST", "/acme/eab-keys", {"allowed_domains": ["*.example.test"]}, OPS),
    ("POST", f"/acme/eab-keys/{MISSING}/revoke", None, OPS),
    ("GET", "/est/users", None, ALL),
    ("POST", "/est/users", {"name": "meter-{role}", "password": "long enough 1"}, OPS),
    ("DELETE", f"/est/users/{MISSING}", None, OPS),
    ("GET", "/est/pending", None, ALL),
    ("POST", f"/est/pending/{MISSING}/approve", None, OPS),
    ("POST", f"/est/pending/{MISSING}/reject", None, OPS),
    ("GET", "/issuers", None, ALL),
    ("GET", "/issuers/int-1", None, ALL),
    ("GET", "/ca/status", None, ALL),
    ("GET", "/whoami", None, ALL),
    ("GET", "/tokens", None, {"admin", "auditor"}),
    ("POST", "/tokens", {"name": "made", "role": "viewer"}, ADMIN),
    ("POST", f"/tokens/{MISSING}/revoke", None, ADMIN),
    ("GET", "/namespaces/bindings", None, ADMIN),
    ("PUT", "/namespaces/bindings/acme:xyz", {"namespace": "team-z"}, ADMIN),
    ("DELETE", f"/namespaces/bindings/{MISSING}", None, ADMIN),
    ("GET", "/audit/events", None, {"admin", "auditor"}),
    ("GET", f"/audit/events/{MISSING}", None, {"admin", "auditor"}),
    ("GET", "/audit/export", None, {"admin", "auditor"}),
    ("GET", "/audit/verify", None, {"admin", "auditor"}),
    ("GET", "/ct/watch", None, ALL),
    ("POST", "/ct/watch", {"pattern": "table-{role}.example.test"}, OPS),
    ("DELETE", f"/ct/watch/{MISSING}", None, OPS),
    ("GET", "/ct/matches", None, ALL),
    ("GET", "/ct/logs", None, ALL),
    ("GET", "/renewal/queue", None, ALL),
    ("GET", "/renewal/policies", None, ALL),
    ("GET", "/renewal/runs", None, ALL),
    ("POST", "/renewal/runs", {"dry_run": True}, OPS),
    ("GET", "/deploy/targets", None, ALL),
    ("GET", f"/deploy/targets/{MISSING}", None, ALL),
    ("GET", "/deploy/runs", None, ALL),
]


@pytest.fixture
async def api(tmp_path: Path, db_url: str) -> AsyncIterator[AdminHarness]:
    """On SQLite and PostgreSQL: for the tests whose queries differ between them."""
    async with admin_harness(tmp_path, db_url=db_url) as harness:
        yield harness


@pytest.fixture
async def lite(tmp_path: Path) -> AsyncIterator[AdminHarness]:
    """On SQLite only: for the tests of HTTP behaviour."""
    async with admin_harness(tmp_path) as harness:
        yield harness


def _template(path: str) -> str:
    parts = []
    for part in path.split("/"):
        known = {"int-1", "acme:xyz", "{cert}", MISSING}
        parts.append("{x}" if part in known else part)
    return "/".join(parts)


def assert_problem(status: int, body: Any, response: Any, expected: int) -> None:
    assert status == expected, body
    assert response.content_type == "application/problem+json"
    assert body["status"] == expected and body["title"] and body["type"].startswith("https://")


async def test_role_endpoint_table(api: AdminHarness) -> None:
    # Every declared route has a row: a new route needs its line in the table.
    declared = {
        (r.method, _template("/api/v1" + r.path).replace("/api/v1", "")) for r in all_routes()
    }
    declared = {
        (m, "/".join("{x}" if p.startswith("{") else p for p in path.split("/")))
        for m, path in declared
    }
    tabled = {(m, _template(p)) for m, p, _, _ in TABLE}
    assert declared == tabled
    cert = await api.issue("table.example.test")
    closed = free_port()
    for role in sorted(ALL):
        token = await api.token(role)
        for method, path, body, allowed in TABLE:
            path = path.replace("{cert}", cert.id)
            if body is not None:
                body = {
                    k: (v.replace("{role}", role) if isinstance(v, str) else v)
                    for k, v in body.items()
                }
                if "ports" in body:
                    body["ports"] = [closed]
            before = len(api.recorder.events)
            status, answer, response = await api.call(method, "/api/v1" + path, token, json=body)
            where = f"{role} {method} {path}"
            if role in allowed:
                assert status not in (401, 403), (where, answer)
                assert status < 500 or status == 501, (where, answer)
            else:
                assert_problem(status, answer, response, 403)
                denied = api.recorder.events[before:]
                assert [(e.outcome, e.target) for e in denied] == [("denied", "/api/v1" + path)], (
                    where
                )
                assert denied[0].actor.startswith("token:")


async def test_no_or_bad_token_is_401(lite: AdminHarness) -> None:
    api = lite
    status, body, response = await api.call("GET", "/api/v1/certificates")
    assert_problem(status, body, response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    for header in ("Bearer cyt_" + secrets.token_urlsafe(32), "Basic abc", "Bearer "):
        status, body, response = await api.call(
            "GET", "/api/v1/certificates", headers={"Authorization": header}
        )
        assert_problem(status, body, response, 401)
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


async def test_token_expiry_and_revocation(lite: AdminHarness) -> None:
    api = lite
    admin = await api.token("admin", lifetime=dt.timedelta(days=30))
    short = await api.token("viewer", lifetime=dt.timedelta(hours=1))
    assert (await api.call("GET", "/api/v1/whoami", short))[0] == 200
    api.clock.offset = dt.timedelta(hours=2)
    status, body, response = await api.call("GET", "/api/v1/whoami", short)
    assert_problem(status, body, response, 401)
    api.clock.offset = dt.timedelta(0)
    # Created through the API: shown once, then listed without its value, then revoked.
    status, created, _ = await api.call(
        "POST",
        "/api/v1/tokens",
        admin,
        json={"name": "ci", "role": "operator", "expires_in_days": 7},
    )
    assert status == 201 and created["token"].startswith("cyt_")
    assert (await api.call("GET", "/api/v1/whoami", created["token"]))[1]["role"] == "operator"
    status, listing, _ = await api.call("GET", "/api/v1/tokens", admin)
    assert created["id"] in {t["id"] for t in listing["items"]}
    assert all("token" not in t for t in listing["items"])
    status, revoked, _ = await api.call("POST", f"/api/v1/tokens/{created['id']}/revoke", admin)
    assert status == 200 and revoked["state"] == "revoked"
    assert (await api.call("GET", "/api/v1/whoami", created["token"]))[0] == 401
    assert (await api.call("POST", f"/api/v1/tokens/{created['id']}/revoke", admin))[0] == 409
    audited = [(e.action, e.outcome) for e in api.recorder.events]
    assert ("tokens.create_token", "success") in audited
    assert ("tokens.revoke_token", "success") in audited


async def test_scoped_token_cannot_escalate(lite: AdminHarness) -> None:
    api = lite
    scoped = await api.token("admin", scopes=("tokens:manage", "certificates:read"))
    assert (await api.call("GET", "/api/v1/issuers", scoped))[0] == 403
    status, body, _ = await api.call(
        "POST", "/api/v1/tokens", scoped, json={"name": "more", "role": "operator"}
    )
    assert status == 403, body
    status, body, _ = await api.call(
        "POST",
        "/api/v1/tokens",
        scoped,
        json={"name": "less", "role": "viewer", "scopes": ["certificates:read"]},
    )
    assert status == 201, body


async def test_pagination_filter_sort_and_export(api: AdminHarness) -> None:
    token = await api.token("viewer")
    issued = [await api.issue(f"host{i}.page.test") for i in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"name": ".page.test", "limit": "2", "sort": "not_after"}
        if cursor:
            params["cursor"] = cursor
        status, body, _ = await api.call("GET", "/api/v1/certificates", token, params=params)
        assert status == 200, body
        assert len(body["items"]) <= 2
        seen.extend(item["id"] for item in body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(c.id for c in issued) and len(seen) == 5
    by_id = {c.id: c for c in issued}
    afters = [by_id[i].not_after for i in seen]
    assert afters == sorted(afters)
    # A cursor belongs to its sort order.
    status, body, response = await api.call(
        "GET",
        "/api/v1/certificates",
        token,
        params={"name": ".page.test", "limit": "2", "sort": "-serial"},
    )
    first_cursor = body["next_cursor"]
    serials = [i["serial"] for i in body["items"]]
    assert serials == sorted(serials, reverse=True)
    status, body, response = await api.call(
        "GET", "/api/v1/certificates", token, params={"sort": "not_after", "cursor": first_cursor}
    )
    assert_problem(status, body, response, 400)
    # Filters: serial (with colons), host name, status, expiry window.
    one = issued[2]
    colons = ":".join(one.serial_hex[i : i + 2] for i in range(0, len(one.serial_hex), 2))
    status, body, _ = await api.call(
        "GET", "/api/v1/certificates", token, params={"serial": colons}
    )
    assert [i["id"] for i in body["items"]] == [one.id]
    status, body, _ = await api.call(
        "GET", "/api/v1/certificates", token, params={"name": "host3.page.test"}
    )
    assert [i["names"] for i in body["items"]] == [["host3.page.test"]]
    status, body, _ = await api.call(
        "GET",
        "/api/v1/certificates",
        token,
        params={"expiring_within_days": "1", "name": ".page.test"},
    )
    assert body["items"] == []
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=400)).isoformat()
    status, body, _ = await api.call(
        "GET",
        "/api/v1/certificates",
        token,
        params={"expires_before": later, "name": ".page.test", "limit": "500"},
    )
    assert len(body["items"]) == 5
    # CSV export: a header row, one row per certificate, RFC 4180 line ends.
    status, raw, response = await api.call(
        "GET", "/api/v1/certificates/export", token, params={"format": "csv", "name": ".page.test"}
    )
    assert status == 200 and response.content_type == "text/csv"
    assert b"\r\n" in raw
    rows = list(csv.DictReader(io.StringIO(raw.decode())))
    assert {r["id"] for r in rows} == set(by_id) and rows[0]["status"] == "valid"
    status, data, response = await api.call(
        "GET", "/api/v1/certificates/export", token, params={"format": "json", "name": ".page.test"}
    )
    assert status == 200 and {d["id"] for d in data} == set(by_id)
    status, raw, response = await api.call(
        "GET", "/api/v1/findings/export", token, params={"format": "csv"}
    )
    assert status == 200 and raw.decode().startswith("id,scan_id,code,severity")


async def test_problem_documents_for_bad_input(lite: AdminHarness) -> None:
    api = lite
    token = await api.token("admin")
    cert = await api.issue("bad.input.test")
    cases: list[tuple[str, str, dict[str, Any], int]] = [
        ("GET", "/api/v1/nothing-here", {}, 404),
        ("GET", "/api/v1/certificates/unknown", {}, 404),
        ("PATCH", "/api/v1/certificates", {}, 405),
        ("GET", "/api/v1/certificates", {"params": {"limit": "0"}}, 400),
        ("GET", "/api/v1/certificates", {"params": {"limit": "9999"}}, 400),
        ("GET", "/api/v1/certificates", {"params": {"colour": "red"}}, 400),
        ("GET", "/api/v1/certificates", {"params": {"status": "sleepy"}}, 400),
        ("GET", "/api/v1/certificates", {"params": {"cursor": "bm90LWEtY3Vyc29y"}}, 400),
        ("GET", "/api/v1/certificates", {"params": {"expires_after": "yesterday"}}, 400),
        (
            "POST",
            f"/api/v1/certificates/{cert.id}/revoke",
            {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
        ),
        ("POST", f"/api/v1/certificates/{cert.id}/revoke", {"json": {"reason": "bored"}}, 400),
        ("POST", f"/api/v1/certificates/{cert.id}/revoke", {"json": {"why": 1}}, 400),
        ("POST", "/api/v1/tokens", {"json": {"name": "x", "role": "emperor"}}, 400),
        ("POST", "/api/v1/est/users", {"json": {"name": "a:b", "password": "long enough"}}, 400),
        ("POST", "/api/v1/est/users", {"json": {"name": "ok", "password": "short"}}, 400),
        (
            "POST",
            "/api/v1/est/users",
            {"json": {"name": "ok", "password": "long enough", "label": "nolabel"}},
            400,
        ),
        (
            "POST",
            "/api/v1/acme/eab-keys",
            {"data": b"x" * 70000, "headers": {"Content-Type": "application/json"}},
            413,
        ),
        (
            "POST",
            "/api/v1/acme/eab-keys",
            {"data": b"{}", "headers": {"Content-Type": "text/plain"}},
            415,
        ),
        ("POST", "/api/v1/scans", {"json": {"targets": ["300.1.2.3/99"]}}, 400),
        ("POST", "/api/v1/scans", {"json": {"targets": []}}, 400),
        ("POST", "/api/v1/scans", {"json": {"targets": ["127.0.0.1"], "ports": [0]}}, 400),
    ]
    for method, path, kwargs, expected in cases:
        status, body, response = await api.call(method, path, token, **kwargs)
        assert_problem(status, body, response, expected)
        assert "Traceback" not in str(body)
    # The certificate was never revoked by any of the bad requests.
    async with api.services.sessions() as session:
        row = await session.get(Certificate, cert.id)
    assert row is not None and row.status == "valid"


async def test_revoke_through_the_ca_and_audit(lite: AdminHarness) -> None:
    api = lite
    operator = await api.token("operator")
    cert = await api.issue("revoke.me.test")
    status, body, _ = await api.call(
        "POST", f"/api/v1/certificates/{cert.id}/revoke", operator, json={"reason": "keyCompromise"}
    )
    assert status == 200 and body["status"] == "revoked" and body["revocation_reason"] == 1
    stored = await api.services.issuance.get_certificate(cert.id)
    assert stored is not None and stored.status == "revoked"
    status, body, response = await api.call(
        "POST", f"/api/v1/certificates/{cert.id}/revoke", operator, json={}
    )
    assert_problem(status, body, response, 409)
    assert [e.outcome for e in api.recorder.events] == [
        "requested",
        "success",
        "requested",
        "failure",
    ]
    events = [
        (e.action, e.outcome, (e.details or {}).get("serial")) for e in api.recorder.outcomes()
    ]
    assert events == [
        ("certificates.revoke_certificate", "success", cert.serial_hex),
        ("certificates.revoke_certificate", "failure", cert.serial_hex),
    ]
    status, body, _ = await api.call(
        "GET", "/api/v1/certificates", operator, params={"status": "revoked"}
    )
    assert [i["id"] for i in body["items"]] == [cert.id]


async def test_namespaces(api: AdminHarness) -> None:
    ours = await api.issue("ours.team-a.test", requester="est:meters")
    theirs = await api.issue("theirs.team-b.test", requester="acme:acct-b")
    await api.bind("est:meters", "team-a")
    await api.bind("acme:acct-b", "team-b")
    team_a = await api.token("operator", namespace="team-a")
    status, body, _ = await api.call("GET", "/api/v1/certificates", team_a, params={"limit": "500"})
    assert [i["id"] for i in body["items"]] == [ours.id]
    assert body["items"][0]["namespace"] == "team-a"
    assert (await api.call("GET", f"/api/v1/certificates/{theirs.id}", team_a))[0] == 404
    status, _, _ = await api.call(
        "POST", f"/api/v1/certificates/{theirs.id}/revoke", team_a, json={}
    )
    assert status == 404
    stored = await api.services.issuance.get_certificate(theirs.id)
    assert stored is not None and stored.status == "valid"
    status, raw, _ = await api.call(
        "GET", "/api/v1/certificates/export", team_a, params={"format": "csv"}
    )
    assert ours.id in raw.decode() and theirs.id not in raw.decode()
    # Global resources: EAB keys are not a team's to manage.
    status, body, _ = await api.call("POST", "/api/v1/acme/eab-keys", team_a, json={})
    assert status == 403
    admin = await api.token("admin")
    status, body, _ = await api.call("GET", "/api/v1/certificates", admin, params={"limit": "500"})
    assert {ours.id, theirs.id} <= {i["id"] for i in body["items"]}


async def test_eab_and_est_management(api: AdminHarness) -> None:
    operator = await api.token("operator")
    status, key, _ = await api.call(
        "POST",
        "/api/v1/acme/eab-keys",
        operator,
        json={"allowed_domains": ["*.corp.test"], "max_validity_days": 30},
    )
    assert status == 201 and key["hmac_key"] and key["state"] == "unused"
    status, listing, _ = await api.call("GET", "/api/v1/acme/eab-keys", operator)
    assert [k["kid"] for k in listing["items"]] == [key["kid"]]
    assert "hmac_key" not in listing["items"][0]
    status, body, _ = await api.call("POST", f"/api/v1/acme/eab-keys/{key['kid']}/revoke", operator)
    assert status == 200 and body["state"] == "revoked"
    # EST users.
    status, user, _ = await api.call(
        "POST",
        "/api/v1/est/users",
        operator,
        json={"name": "meter-1", "password": "correct horse", "label": "meters"},
    )
    assert status == 201 and user == {**user, "name": "meter-1", "label": "meters"}
    assert (
        await api.call(
            "POST",
            "/api/v1/est/users",
            operator,
            json={"name": "meter-1", "password": "correct horse"},
        )
    )[0] == 409
    status, users, _ = await api.call("GET", "/api/v1/est/users", operator)
    assert [u["name"] for u in users["items"]] == ["meter-1"]
    assert (await api.call("DELETE", "/api/v1/est/users/meter-1", operator))[0] == 204
    assert (await api.call("DELETE", "/api/v1/est/users/meter-1", operator))[0] == 404
    # Pending approvals: approve one, reject another, deciding twice is 409.
    now = dt.datetime.now(dt.UTC)
    async with api.services.sessions.begin() as session:
        for pid in ("p1", "p2"):
            session.add(
                EstPending(
                    id=pid,
                    label="meters",
                    identity="basic:meter-1",
                    subject=f"CN={pid}",
                    csr_der=b"\x30\x00",
                    csr_sha256=pid * 32,
                    source_address="127.0.0.1",
                    state="pending",
                    certificate_id=None,
                    created_at=now,
                    decided_at=None,
                )
            )
    status, pending, _ = await api.call("GET", "/api/v1/est/pending", operator)
    assert [p["id"] for p in pending["items"]] == ["p1", "p2"]
    status, body, _ = await api.call("POST", "/api/v1/est/pending/p1/approve", operator)
    assert status == 200 and body["state"] == "approved"
    status, body, _ = await api.call("POST", "/api/v1/est/pending/p2/reject", operator)
    assert status == 200 and body["state"] == "rejected"
    status, body, response = await api.call("POST", "/api/v1/est/pending/p1/reject", operator)
    assert_problem(status, body, response, 409)
    async with api.services.sessions() as session:
        states = dict((await session.execute(select(EstPending.id, EstPending.state))).all())
    assert states == {"p1": "approved", "p2": "rejected"}
    actions = [(e.action, e.outcome) for e in api.recorder.events]
    assert ("est.approve_est_enrollment", "success") in actions
    assert ("est.reject_est_enrollment", "failure") in actions


async def test_openapi_docs_health_metrics(lite: AdminHarness) -> None:
    api = lite
    status, spec, _ = await api.call("GET", "/api/openapi.json")
    assert status == 200 and spec["openapi"] == "3.1.0"
    assert spec["paths"]["/api/v1/certificates/{id}/revoke"]["post"]["x-permission"] == (
        "certificates:revoke"
    )
    status, html, response = await api.call("GET", "/api/docs")
    assert status == 200 and response.content_type == "text/html"
    assert b"/api/v1/certificates/{id}/revoke" in html and b"<script" not in html
    assert (await api.call("GET", "/healthz"))[0] == 200
    status, ready, _ = await api.call("GET", "/readyz")
    assert status == 200 and ready["status"] == "ready"
    status, _, response = await api.call("GET", "/metrics")
    assert status == 200 and response.content_type == "text/plain"


async def _wait_scan(api: AdminHarness, token: str, scan_id: str) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        status, body, _ = await api.call("GET", f"/api/v1/scans/{scan_id}", token)
        assert status == 200, body
        if body["status"] != "running":
            return dict(body)
        assert asyncio.get_running_loop().time() < deadline, "the scan did not finish"
        await asyncio.sleep(0.1)


async def test_start_report_and_cancel_scans(lite: AdminHarness, tmp_path: Path) -> None:
    api = lite
    operator = await api.token("operator")
    # A real TLS endpoint on loopback, with a certificate from certyard's CA.
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    issued = await api.services.issuance.issue(
        csr,
        profile="tls-server",
        dns_names=["localhost"],
        ip_addresses=["127.0.0.1"],
        requester="cli",
    )
    (tmp_path / "tls.pem").write_text(issued.chain_pem)
    (tmp_path / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "tls.pem", tmp_path / "tls.key")
    tls_port = free_port()
    tls_server = await asyncio.start_server(
        lambda r, w: w.close(), "127.0.0.1", tls_port, ssl=context
    )
    # A port that accepts and never says a word: a scan of it runs until its timeout.
    silent_port = free_port()
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", silent_port)
    try:
        status, started, _ = await api.call(
            "POST",
            "/api/v1/scans",
            operator,
            json={"targets": ["127.0.0.1"], "ports": [tls_port], "timeout": 5, "retries": 0},
        )
        assert status == 202 and started["status"] == "running", started
        done = await _wait_scan(api, operator, started["id"])
        assert done["status"] == "done"
        status, report, _ = await api.call("GET", f"/api/v1/scans/{started['id']}/report", operator)
        assert status == 200 and report["scan"]["id"] == started["id"]
        status, endpoints, _ = await api.call(
            "GET", "/api/v1/endpoints", operator, params={"port": str(tls_port)}
        )
        assert [(e["ip"], e["port"]) for e in endpoints["items"]] == [("127.0.0.1", tls_port)]
        status, body, response = await api.call(
            "POST", f"/api/v1/scans/{started['id']}/cancel", operator
        )
        assert_problem(status, body, response, 409)
        # Cancel a scan stuck on the silent port: it ends as interrupted.
        status, slow, _ = await api.call(
            "POST",
            "/api/v1/scans",
            operator,
            json={"targets": ["127.0.0.1"], "ports": [silent_port], "timeout": 30, "retries": 0},
        )
        assert status == 202
        status, cancelled, _ = await api.call(
            "POST", f"/api/v1/scans/{slow['id']}/cancel", operator
        )
        assert status == 200 and cancelled["status"] == "interrupted", cancelled
        actions = [(e.action, e.outcome) for e in api.recorder.events]
        assert actions.count(("scans.start_scan", "success")) == 2
        assert ("scans.cancel_scan", "success") in actions
    finally:
        tls_server.close()
        silent.close()


async def test_database_outage_is_503_not_a_stack(lite: AdminHarness, tmp_path: Path) -> None:
    api = lite
    token = await api.token("viewer")
    assert (await api.call("GET", "/api/v1/certificates", token))[0] == 200
    # A real outage: the database file is gone; new connections find no tables.
    (tmp_path / "certyard.db").rename(tmp_path / "moved.db")
    await api.services.engine.dispose()
    status, body, response = await api.call("GET", "/api/v1/certificates", token)
    assert_problem(status, body, response, 503)
    assert response.headers["Retry-After"] and "sqlite" not in str(body).lower()


async def test_no_change_without_its_audit_entry(lite: AdminHarness) -> None:
    api = lite
    operator = await api.token("operator")
    viewer = await api.token("viewer")
    cert = await api.issue("audited.test")
    api.recorder.failing = True
    status, body, response = await api.call(
        "POST", f"/api/v1/certificates/{cert.id}/revoke", operator, json={}
    )
    assert_problem(status, body, response, 503)
    stored = await api.services.issuance.get_certificate(cert.id)
    assert stored is not None and stored.status == "valid"
    # Reads go on; a denial stays a denial.
    assert (await api.call("GET", f"/api/v1/certificates/{cert.id}", operator))[0] == 200
    assert (await api.call("POST", f"/api/v1/certificates/{cert.id}/revoke", viewer))[0] == 403
