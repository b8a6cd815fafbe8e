"""The admin web pages (/ui/) against the real admin app on a loopback port (a software-key CA
on SQLite, and PostgreSQL for the plain HTTP tests): Playwright driving Debian chromium signs in
with the keyboard, filters the inventory, opens a certificate, reads a scan report and approves a
pending EST enrollment; plain aiohttp tests for redirects, CSRF and a viewer's denied approval."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from admin_api.web.session import ABSOLUTE, IDLE, SessionStore
from scanner.runner import ScanOptions
from scanner.scan import ScanRequest, scan
from storage.models import EstPending
from storage.models_ct import CTMatch
from tests.integration.test_admin_oidc import AUDIENCE, ISSUER, Idp, idp  # noqa: F401
from tests.support.admin_app import AdminHarness, admin_harness
from tests.support.server import free_port
from tests.support.tools import REPO_ROOT, require_tool

ARTIFACTS = REPO_ROOT / "var" / "test-artifacts"
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Seeded:
    api: AdminHarness
    www_id: str
    pending_id: str
    scan_id: str | None
    tls_port: int | None


def _csr(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.CertificateSigningRequest]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .sign(key, hashes.SHA256())
    )
    return key, csr


async def _add_pending(api: AdminHarness, pending_id: str, name: str) -> None:
    """An enrollment held for approval, as est_server/approval.py records it on a first post."""
    _, csr = _csr(name)
    der = csr.public_bytes(serialization.Encoding.DER)
    async with api.services.sessions.begin() as session:
        session.add(
            EstPending(
                id=pending_id,
                label="meters",
                identity="basic:meter-7",
                subject=csr.subject.rfc4514_string(),
                csr_der=der,
                csr_sha256=hashlib.sha256(der).hexdigest(),
                source_address="127.0.0.1",
                state="pending",
                certificate_id=None,
                created_at=api.clock(),
                decided_at=None,
            )
        )


async def _add_ct_alert(api: AdminHarness) -> None:
    """A match as the CT monitor stores it (ct_monitor/state.py) for a certificate another CA
    issued for a watched name: the dashboard's CT alert."""
    now = api.clock()
    async with api.services.sessions.begin() as session:
        session.add(
            CTMatch(
                log_url="https://ct.example.test/log/",
                entry_index=4711,
                entry_type="x509",
                names=["login.example.test"],
                issuer="CN=Elsewhere CA,O=Elsewhere,C=XX",
                not_before=now - dt.timedelta(hours=1),
                not_after=now + dt.timedelta(days=90),
                tbs_sha256="ab" * 32,
                cert_sha256="cd" * 32,
                der=None,
                finding="ct_unknown_issuance",
                created_at=now,
                serial="0A1B",
                notes=None,
                notified_at=None,
            )
        )


async def _serve_and_scan(api: AdminHarness, tmp_path: Path) -> tuple[str | None, int, str]:
    """Serve www.example.test's certificate on a loopback TLS port and scan it for real, so the
    certificate page has an endpoint and the dashboard a scan with findings."""
    key, csr = _csr("www.example.test")
    issued = await api.services.issuance.issue(
        csr, profile="tls-server", dns_names=["www.example.test"], requester="cli"
    )
    key_file = tmp_path / "www.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    chain_file = tmp_path / "www.pem"
    chain_file.write_text(issued.chain_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain_file, key_file)
    # A second endpoint with a self-signed certificate: the scan reports a real finding.
    rogue_key, _ = _csr("legacy.example.test")
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "legacy.example.test")])
    rogue = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(rogue_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=5))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("legacy.example.test")]), critical=False
        )
        .sign(rogue_key, hashes.SHA256())
    )
    (tmp_path / "rogue.pem").write_bytes(rogue.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "rogue.key").write_bytes(
        rogue_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    rogue_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    rogue_context.load_cert_chain(tmp_path / "rogue.pem", tmp_path / "rogue.key")

    async def answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    port, rogue_port = free_port(), free_port()
    server = await asyncio.start_server(answer, "127.0.0.1", port, ssl=context)
    rogue_server = await asyncio.start_server(answer, "127.0.0.1", rogue_port, ssl=rogue_context)
    try:
        root = Path(api.services.settings.server.data_dir) / "ca" / "root.pem"
        outcome = await scan(
            ScanRequest(
                targets=["127.0.0.1"],
                ports=[port, rogue_port],
                trust=[root],
                system_trust=None,
                options=ScanOptions(timeout=3, retries=0, legacy_probe=False, ocsp_stapling=False),
                known_names=False,
            ),
            sessions=api.services.sessions,
        )
    finally:
        for running in (server, rogue_server):
            running.close()
            await running.wait_closed()
    return outcome.scan_id, port, issued.id


@pytest.fixture
async def seeded(tmp_path: Path) -> AsyncIterator[Seeded]:
    async with admin_harness(tmp_path) as api:
        scan_id, port, www_id = await _serve_and_scan(api, tmp_path)
        await api.issue("api.example.test")
        await api.issue("mail.example.test", requester="est:meters")
        await _add_pending(api, "pend0001", "meter-7")
        await _add_ct_alert(api)
        yield Seeded(api, www_id, "pend0001", scan_id, port)


async def _state(api: AdminHarness, pending_id: str) -> str:
    async with api.services.sessions() as session:
        return (
            await session.execute(select(EstPending.state).where(EstPending.id == pending_id))
        ).scalar_one()


# -- in chromium ---------------------------------------------------------------------------


async def test_browser_sign_in_inventory_certificate_scan_and_approval(seeded: Seeded) -> None:
    chromium = require_tool("chromium")
    from playwright.async_api import async_playwright

    api = seeded.api
    token = await api.token("operator")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    outside: list[str] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on(
                "request",
                lambda r: None if r.url.startswith(api.url) else outside.append(r.url),
            )
            await page.goto(api.url + "/ui/")
            assert "/ui/sign-in" in page.url
            await page.screenshot(path=str(ARTIFACTS / "admin-sign-in.png"))

            # Keyboard only: Tab to the token field, type, Tab to the button, Enter.
            await page.locator("body").focus()
            for _ in range(10):
                if await page.evaluate("document.activeElement && document.activeElement.id"):
                    if await page.evaluate("document.activeElement.id") == "token":
                        break
                await page.keyboard.press("Tab")
            assert await page.evaluate("document.activeElement.id") == "token"
            await page.keyboard.insert_text(token)
            await page.keyboard.press("Tab")
            assert await page.evaluate("document.activeElement.textContent") == "Sign in"
            async with page.expect_navigation():
                await page.keyboard.press("Enter")
            assert page.url == api.url + "/ui/"
            await page.get_by_role("heading", name="Dashboard").wait_for()
            assert "operator" in await page.locator("header.top").inner_text()
            findings = page.locator("#findings ~ ul .card")
            assert await findings.count() == 3
            # self_signed and expiring_soon (medium) for the self-signed 5-day certificate.
            assert await page.locator("#findings ~ ul .sev-medium strong").inner_text() == "2"
            assert "login.example.test" in await page.locator("#ct ~ table").inner_text()
            await page.screenshot(path=str(ARTIFACTS / "admin-dashboard.png"), full_page=True)
            # The dark theme: the toggle overrides the system preference.
            await page.get_by_role("button", name=re.compile("Switch to the dark theme")).click()
            assert await page.evaluate("document.documentElement.dataset.theme") == "dark"
            await page.screenshot(path=str(ARTIFACTS / "admin-dashboard-dark.png"), full_page=True)
            await page.get_by_role("button", name=re.compile("Switch to the light theme")).click()

            # The inventory, filtered on the server by name and state.
            async with page.expect_navigation():
                await page.get_by_role("link", name="Inventory").click()
            rows = page.locator("#inventory tbody tr")
            # Ours, and the certificates the CA issued for itself (e.g. the listener's).
            assert await rows.count() >= 3
            await page.get_by_label("Name contains").fill("www")
            await page.get_by_label("State").select_option("valid")
            async with page.expect_navigation():
                await page.get_by_role("button", name="Filter").click()
            assert "name=www" in page.url and "state=valid" in page.url
            assert await rows.count() == 1
            await page.get_by_label("State").select_option("revoked")
            async with page.expect_navigation():
                await page.get_by_role("button", name="Filter").click()
            assert "No certificate matches" in await rows.first.inner_text()
            await page.get_by_label("State").select_option("valid")
            async with page.expect_navigation():
                await page.get_by_role("button", name="Filter").click()
            await page.screenshot(path=str(ARTIFACTS / "admin-inventory.png"), full_page=True)

            # One certificate: details, chain, where it is served, history.
            async with page.expect_navigation():
                await page.get_by_role("link", name="www.example.test").click()
            assert page.url == f"{api.url}/ui/certificates/{seeded.www_id}"
            assert await page.locator("#chain ~ table tbody tr").count() == 2
            where = await page.locator("#where ~ table").first.inner_text()
            assert f"127.0.0.1:{seeded.tls_port}" in where
            assert "issued (tls-server)" in await page.locator("#history ~ table").inner_text()
            await page.screenshot(path=str(ARTIFACTS / "admin-certificate.png"), full_page=True)

            # The scan report with the HTML report's expiry chart.
            async with page.expect_navigation():
                await page.get_by_role("link", name="Scans").click()
            async with page.expect_navigation():
                await page.get_by_role("link", name=str(seeded.scan_id)).click()
            assert await page.locator("#expiry-chart rect").count() == 6
            assert "self_signed" in await page.locator("#findings").locator("..").inner_text()
            await page.screenshot(path=str(ARTIFACTS / "admin-scan.png"), full_page=True)

            # The pending EST enrollment: approve it.
            async with page.expect_navigation():
                await page.get_by_role("link", name="EST approvals").click()
            assert "CN=meter-7" in await page.locator("#pending").inner_text()
            async with page.expect_navigation():
                await page.get_by_role("button", name="Approve CN=meter-7").click()
            assert await page.locator("#notice").inner_text() == "Enrollment pend0001 approved."
            assert "No enrollment is waiting" in await page.locator("#pending").inner_text()
            await page.screenshot(path=str(ARTIFACTS / "admin-est-approved.png"), full_page=True)

            async with page.expect_navigation():
                await page.get_by_role("button", name="Sign out").click()
            assert "/ui/sign-in" in page.url
        finally:
            await browser.close()
    assert errors == []
    assert outside == []
    assert await _state(api, seeded.pending_id) == "approved"
    outcomes = [(e.action, e.outcome) for e in api.recorder.events]
    assert ("est.approve_est_enrollment", "requested") in outcomes
    assert ("est.approve_est_enrollment", "success") in outcomes


# -- plain HTTP ----------------------------------------------------------------------------


def _client() -> aiohttp.ClientSession:
    # unsafe=True: keep cookies set by an IP-address host (127.0.0.1).
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def _sign_in(http: aiohttp.ClientSession, url: str, token: str) -> str:
    """Sign in; the session's CSRF token (from a page's forms)."""
    async with http.post(
        url + "/ui/sign-in", data={"token": token, "next": "/ui/est/pending"}, allow_redirects=False
    ) as response:
        assert response.status == 303, await response.text()
        assert response.headers["Location"] == "/ui/est/pending"
        cookie = response.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui/" in cookie
        assert token not in cookie
    async with http.get(url + "/ui/est/pending") as response:
        assert response.status == 200
        match = CSRF_RE.search(await response.text())
    assert match is not None
    return match.group(1)


async def test_unauthenticated_redirects_to_sign_in(tmp_path: Path) -> None:
    async with admin_harness(tmp_path) as api, _client() as http:
        for path in ("/ui/", "/ui/certificates?name=www", "/ui/est/pending"):
            async with http.get(api.url + path, allow_redirects=False) as response:
                assert response.status == 303
                assert response.headers["Location"].startswith("/ui/sign-in?next=")
        async with http.post(
            api.url + "/ui/est/pending/x/approve", data={"csrf": "x"}, allow_redirects=False
        ) as response:
            assert response.status == 401
        async with http.post(api.url + "/ui/sign-in", data={"token": "cy_nope"}) as response:
            assert response.status == 401
            assert "Sign-in failed" in await response.text()
            assert "Set-Cookie" not in response.headers
        # An open redirect is not possible through ?next=.
        token = await api.token("viewer")
        async with http.post(
            api.url + "/ui/sign-in",
            data={"token": token, "next": "//evil.example/"},
            allow_redirects=False,
        ) as response:
            assert response.headers["Location"] == "/ui/"
        async with http.get(api.url + "/ui/") as response:
            assert response.status == 200
            assert "default-src 'none'" in response.headers["Content-Security-Policy"]


async def test_csrf_missing_or_wrong_403(seeded: Seeded) -> None:
    api = seeded.api
    async with _client() as http:
        csrf = await _sign_in(http, api.url, await api.token("operator"))
        target = f"{api.url}/ui/est/pending/{seeded.pending_id}/approve"
        for form in ({}, {"csrf": "wrong" + csrf}):
            async with http.post(target, data=form, allow_redirects=False) as response:
                assert response.status == 403
                assert "CSRF" in await response.text()
        assert await _state(api, seeded.pending_id) == "pending"
        # With the token: approved, through the API's handler and audit.
        async with http.post(target, data={"csrf": csrf}, allow_redirects=False) as response:
            assert response.status == 303
        assert await _state(api, seeded.pending_id) == "approved"
        # Deciding twice: the API's 409, as a page.
        async with http.post(target, data={"csrf": csrf}) as response:
            assert response.status == 409
        # Signing out ends the session on the server.
        async with http.post(api.url + "/ui/sign-out", data={"csrf": csrf}) as response:
            assert response.status == 200
        async with http.get(api.url + "/ui/", allow_redirects=False) as response:
            assert response.status == 303


async def test_viewer_cannot_approve_403_audited(seeded: Seeded) -> None:
    api = seeded.api
    async with _client() as http:
        csrf = await _sign_in(http, api.url, await api.token("viewer"))
        async with http.get(api.url + "/ui/est/pending") as response:
            page = await response.text()
            assert "CN=meter-7" in page and "Approve" not in page
        target = f"/ui/est/pending/{seeded.pending_id}/approve"
        async with http.post(api.url + target, data={"csrf": csrf}) as response:
            assert response.status == 403
            assert "est:approve" in await response.text()
    assert await _state(api, seeded.pending_id) == "pending"
    denied = [e for e in api.recorder.events if e.outcome == "denied"]
    assert len(denied) == 1
    assert denied[0].action == "est.approve_est_enrollment" and denied[0].target == target
    assert denied[0].actor.startswith("token:") and denied[0].details is not None
    assert denied[0].details["permission"] == "est:approve"


async def test_pages_on_each_database(tmp_path: Path, db_url: str) -> None:
    """The dashboard's grouped counts and the filters on SQLite and PostgreSQL; bad input is a
    400 page, an unknown certificate a 404 page, a revoked token ends the session."""
    async with admin_harness(tmp_path, db_url=db_url) as api, _client() as http:
        issued = await api.issue("shop.example.test")
        await api.issue("old.example.test")
        token = await api.token("auditor")
        await _sign_in(http, api.url, token)
        # The CA also issues for itself: the dashboard agrees with the API's count.
        _, valid, _ = await api.call(
            "GET", "/api/v1/certificates", token, params={"status": "valid", "limit": "500"}
        )
        assert len(valid["items"]) >= 2
        async with http.get(api.url + "/ui/") as response:
            assert response.status == 200
            text = await response.text()
            assert f"<strong>{len(valid['items'])}</strong><span>valid" in text
        async with http.get(api.url + "/ui/certificates", params={"name": "shop"}) as response:
            text = await response.text()
            assert "shop.example.test" in text and "old.example.test" not in text
        async with http.get(api.url + "/ui/certificates", params={"expires": "soon"}) as response:
            assert response.status == 400
            assert "expiring_within_days" in await response.text()
        async with http.get(f"{api.url}/ui/certificates/{issued.id}") as response:
            assert response.status == 200
            assert "shop.example.test" in await response.text()
        async with http.get(api.url + "/ui/certificates/nope") as response:
            assert response.status == 404
        async with http.get(api.url + "/ui/scans") as response:
            assert response.status == 200
        # 70 days on, the 90-day certificates expire within 30 days (a fresh token and session:
        # the old ones have expired by then).
        api.clock.offset = dt.timedelta(days=70)
        later = await api.token("viewer")
        _, soon, _ = await api.call(
            "GET", "/api/v1/certificates", later, params={"expiring_within_days": "30"}
        )
        assert len(soon["items"]) >= 2
        async with _client() as fresh:
            await _sign_in(fresh, api.url, later)
            async with fresh.get(api.url + "/ui/") as response:
                text = await response.text()
            assert f"<strong>{len(soon['items'])}</strong><span>expiring" in text
            assert "shop.example.test" in text  # in the "expiring soon" table
        api.clock.offset = dt.timedelta(0)
        # The auditor's token revoked through the API: the next page asks to sign in again.
        admin = await api.token("admin")
        status, listed, _ = await api.call("GET", "/api/v1/tokens", admin)
        assert status == 200
        (mine,) = [t for t in listed["items"] if t["role"] == "auditor"]
        status, _, _ = await api.call("POST", f"/api/v1/tokens/{mine['id']}/revoke", admin)
        assert status == 200
        async with http.get(api.url + "/ui/", allow_redirects=False) as response:
            assert response.status == 303


async def test_namespaced_viewer_sees_its_own(seeded: Seeded) -> None:
    """A team's viewer: its certificates only (as the API filters them), no CT alerts."""
    api = seeded.api
    await api.bind("est:meters", "team-a")
    async with _client() as http:
        await _sign_in(http, api.url, await api.token("viewer", namespace="team-a"))
        async with http.get(api.url + "/ui/certificates") as response:
            text = await response.text()
            assert "mail.example.test" in text and "www.example.test" not in text
        async with http.get(f"{api.url}/ui/certificates/{seeded.www_id}") as response:
            assert response.status == 404
        async with http.get(api.url + "/ui/") as response:
            text = await response.text()
            assert "<strong>1</strong><span>valid" in text and "login.example.test" not in text
        async with http.get(api.url + "/ui/est/pending") as response:
            assert "CN=meter-7" in await response.text()  # label "meters" is team-a's


async def test_oidc_token_sign_in(tmp_path: Path, idp: Idp) -> None:  # noqa: F811
    """An OIDC token pasted into the sign-in form: the same verification as the API's bearer
    token (test issuer with its JWKS on loopback, tests/integration/test_admin_oidc.py)."""
    oidc = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks_url": idp.url,
        "role_claim": "groups",
        "role_map": {"pki-readers": "viewer"},
    }
    async with admin_harness(tmp_path, admin={"oidc": oidc}) as api, _client() as http:
        good = idp.token("ec-1", groups=["pki-readers"])
        await _sign_in(http, api.url, good)
        async with http.get(api.url + "/ui/") as response:
            text = await response.text()
            assert "oidc:alice" in text and ">viewer<" in text
        async with _client() as other:
            wrong = idp.token("ec-1", groups=["pki-readers"], aud="someone-else")
            async with other.post(api.url + "/ui/sign-in", data={"token": wrong}) as response:
                assert response.status == 401
                assert "Set-Cookie" not in response.headers


def test_session_store_idle_and_absolute_expiry() -> None:
    store = SessionStore()
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    sid, session = store.create("cyt_secret", start)
    assert store.get(sid, start + dt.timedelta(minutes=90)) is session
    # Idle past 2 hours: gone.
    assert store.get(sid, start + dt.timedelta(minutes=90) + IDLE + dt.timedelta(seconds=1)) is None
    # Kept busy, it still ends 12 hours after sign-in.
    sid, _ = store.create("cyt_secret", start)
    for hours in range(1, 12):
        assert store.get(sid, start + dt.timedelta(hours=hours)) is not None
    assert store.get(sid, start + ABSOLUTE + dt.timedelta(seconds=1)) is None
    assert store.get("forged", start) is None and store.get(None, start) is None
