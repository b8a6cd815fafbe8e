"""The renewal queue end to end, on SQLite and PostgreSQL.

The inventory is built for real: a certificate issued by certyard's CA, and two certificates of
another hierarchy (an RSA-1024 one and an expired one), each served by a TLS server on loopback
and found by a real scan. Then ``certyard renew plan | run [--dry-run] | history`` run, and the
at-risk certyard certificate's renewalInfo (RFC 9773), fetched over HTTP from the running ACME
application, shows a window that has started.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from acme_server.ari import cert_id_of
from certyard import renew_commands
from certyard.settings import Settings, load_settings
from renewal.config import RenewalSettings
from renewal.inventory import certificate_names
from renewal.queue import load_queue
from renewal.runner import RenewalRunner
from scanner.runner import ScanOptions
from scanner.scan import ScanRequest, scan
from storage.models import Certificate
from storage.models_ct import CTMatch
from storage.models_renewal import RenewalAction, RenewalItem, RenewalRun
from tests.support.acme_app import RunningAcme, running_acme
from tests.support.renewal_tls import TlsServers, WebhookReceiver, pem, webhook_receiver
from tests.support.server import certyard_command
from tests.unit.test_scan_findings import Pki, ec_key, make_cert, rsa_key


@dataclass
class World:
    acme: RunningAcme
    settings: Settings
    config: Path
    hook: WebhookReceiver
    at_risk: x509.Certificate  # certyard-issued, served, covered by an at-risk policy
    quiet: x509.Certificate  # certyard-issued, not served, healthy
    mismatch: x509.Certificate  # certyard-issued, served under a name it lacks (scan finding)
    weak_sha: str
    expired_sha: str
    rogue_key: str  # a CT precertificate with an unknown issuance finding

    async def renewal_info(self, cert: x509.Certificate) -> dict[str, dt.datetime]:
        client = await self.acme.client()
        url = f"{client.directory['renewalInfo']}/{cert_id_of(cert).encode()}"
        async with self.acme.http.get(url) as resp:
            assert resp.status == 200
            window = (await resp.json())["suggestedWindow"]
        return {k: dt.datetime.fromisoformat(v) for k, v in window.items()}


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def sha(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


async def issue(
    acme: RunningAcme, name: str
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    issued = await acme.services.issuance.issue_tls_server(
        csr, dns_names=[name], account_id="acct-renewal-test"
    )
    return x509.load_der_x509_certificate(issued.der), key, issued.chain_pem


@pytest.fixture
async def world(db_url: str, tmp_path: Path) -> AsyncIterator[World]:
    data = tmp_path / "data"
    servers = TlsServers(tmp_path)
    async with running_acme(db_url, data) as acme, webhook_receiver() as hook:
        try:
            at_risk, key, chain_pem = await issue(acme, "app.renew.test")
            quiet, _, _ = await issue(acme, "quiet.renew.test")
            mismatch, mismatch_key, mismatch_chain = await issue(acme, "old.renew.test")
            pki = Pki(dt.datetime.now(dt.UTC))
            weak_key = rsa_key(1024)
            weak = pki.leaf("weak.renew.test", weak_key)
            expired_key = ec_key()
            expired = pki.leaf(
                "expired.renew.test",
                expired_key,
                not_after=pki.now - dt.timedelta(days=2),
                not_before=pki.now - dt.timedelta(days=92),
            )
            ports = {
                "app.renew.test": await servers.serve("app", chain_pem.encode(), key),
                # The endpoint was renamed; its certificate was not: hostname_mismatch.
                "new.renew.test": await servers.serve("new", mismatch_chain.encode(), mismatch_key),
                "weak.renew.test": await servers.serve(
                    "weak", pem(weak, pki.intermediate), weak_key
                ),
                "expired.renew.test": await servers.serve(
                    "expired", pem(expired, pki.intermediate), expired_key
                ),
            }
            trust = tmp_path / "trust.pem"
            trust.write_bytes(
                pem(pki.root, pki.intermediate) + acme.services.issuance.root_pem().encode()
            )
            outcome = await scan(
                ScanRequest(
                    targets=[f"{name}@127.0.0.1:{port}" for name, port in ports.items()],
                    trust=[trust],
                    system_trust=None,
                    options=ScanOptions(timeout=5, retries=0, legacy_probe=False),
                ),
                sessions=acme.services.sessions,
            )
            assert outcome.summary.by_code["weak_key"] >= 1, outcome.summary.by_code
            # What the CT monitor records (ct_monitor/): the certyard certificate seen in a
            # log, and a precertificate for one of our names that nobody here asked for.
            rogue_key = ec_key()
            rogue = make_cert(
                "rogue.renew.test", rogue_key, names=["rogue.renew.test"], now=pki.now
            )
            rogue_tbs = hashlib.sha256(rogue.tbs_certificate_bytes).hexdigest()
            async with acme.services.sessions.begin() as session:
                for index, (cert, finding) in enumerate(
                    [(at_risk, None), (rogue, "ct_unknown_issuance")]
                ):
                    session.add(
                        CTMatch(
                            log_url="https://ct.example.test/log/",
                            entry_index=index,
                            entry_type="x509" if finding is None else "precert",
                            names=certificate_names(cert),
                            issuer=cert.issuer.rfc4514_string(),
                            not_before=cert.not_valid_before_utc,
                            not_after=cert.not_valid_after_utc,
                            tbs_sha256=hashlib.sha256(cert.tbs_certificate_bytes).hexdigest(),
                            cert_sha256=sha(cert) if finding is None else None,
                            der=cert.public_bytes(serialization.Encoding.DER),
                            finding=finding,
                            created_at=pki.now,
                        )
                    )
            renewal = {
                "policies": [
                    {
                        "name": "compromised-host",
                        "match": {"names": ["app.renew.test"], "sources": ["certyard"]},
                        "method": "ari",
                        "at_risk": True,
                    },
                    {"name": "fleet", "match": {"sources": ["scan"]}, "owner": "ops@example.test"},
                ]
            }
            notify = {
                "hooks": [{"name": "ops", "type": "webhook", "url": hook.url}],
                "retry": {"attempts": 1},
            }
            settings = load_settings(
                server={"data_dir": data, "http_listen": ""},
                database={"url": db_url},
                ca={"backend": "software"},
                renewal=renewal,
                notify=notify,
            )
            config = tmp_path / "certyard.toml"
            config.write_text(
                f'[server]\ndata_dir = "{data}"\nhttp_listen = ""\n'
                f'[database]\nurl = "{db_url}"\n[ca]\nbackend = "software"\n'
            )
            yield World(
                acme,
                settings,
                config,
                hook,
                at_risk,
                quiet,
                mismatch,
                sha(weak),
                sha(expired),
                f"tbs:{rogue_tbs}",
            )
        finally:
            await servers.close()


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    renew_commands.add_parsers(parser.add_subparsers(dest="command"))
    return parser.parse_args(["renew", *argv])


async def cli(world: World, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = await renew_commands.run(world.settings, parse(*argv))
    out = capsys.readouterr().out
    if "--json" not in argv:
        return code, out
    # In process, structlog writes to stdout too: the document is the indented JSON object.
    start = out.index("{\n") if not out.startswith("{") else 0
    document, _ = json.JSONDecoder().raw_decode(out[start:])
    return code, document


async def counts(world: World) -> tuple[int, int, int, list[Any]]:
    async with world.acme.services.sessions() as session:
        runs = await session.scalar(select(func.count()).select_from(RenewalRun))
        actions = await session.scalar(select(func.count()).select_from(RenewalAction))
        items = await session.scalar(select(func.count()).select_from(RenewalItem))
        windows = (await session.execute(select(Certificate.ari_window_start))).scalars().all()
    return int(runs or 0), int(actions or 0), int(items or 0), list(windows)


async def test_plan_run_and_ari(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    now = dt.datetime.now(dt.UTC)
    code, plan = await cli(world, capsys, "plan", "--json")
    assert code == 0
    queue = plan["queue"]
    by_key = {e["key"]: e for e in queue}
    at_risk, quiet = by_key[sha(world.at_risk)], by_key[sha(world.quiet)]
    weak, expired = by_key[world.weak_sha], by_key[world.expired_sha]
    # The certyard certificate the scanner saw (and a CT log) is one item with every source.
    assert at_risk["sources"] == ["certyard", "ct", "scan"] and at_risk["exposure"] == 1
    rogue = by_key[world.rogue_key]
    assert rogue["names"] == ["rogue.renew.test"] and rogue["sources"] == ["ct"]
    assert (rogue["state"], rogue["findings"]) == ("at-risk", ["ct_unknown_issuance"])
    assert at_risk["requester"] == "acme:acct-renewal-test"
    assert quiet["sources"] == ["certyard"] and quiet["exposure"] == 0
    assert (expired["state"], weak["state"]) == ("expired", "at-risk")
    assert "weak_key" in weak["findings"] and weak["policy"] == "fleet"
    assert (at_risk["state"], at_risk["policy"], at_risk["method"]) == (
        "at-risk", "compromised-host", "ari"
    )  # fmt: skip
    assert (quiet["state"], quiet["policy"]) == ("healthy", "default")
    # The scanner's finding makes a certyard certificate at risk too.
    mismatch = by_key[sha(world.mismatch)]
    assert (mismatch["state"], mismatch["policy"]) == ("at-risk", "fleet")
    assert mismatch["at_risk_reasons"] == ["finding:hostname_mismatch"]
    # Expired first, the healthy certificate last; the weak and the at-risk one before it.
    order = [e["key"] for e in queue]
    assert order[0] == world.expired_sha and order[-1] == sha(world.quiet)
    assert [e["priority"] for e in queue] == sorted((e["priority"] for e in queue), reverse=True)

    before = await world.renewal_info(world.at_risk)
    assert before["start"] > now  # the default window: two thirds into the lifetime

    # --dry-run says what it would do and changes nothing.
    snapshot = await counts(world)
    code, dry = await cli(world, capsys, "run", "--dry-run", "--json")
    assert code == 0 and dry["dry_run"] and dry["run"] is None
    planned = {(a["certificate"], a["action"]) for a in dry["actions"]}
    assert planned == {
        (sha(world.at_risk), "ari_advanced"),
        (sha(world.mismatch), "ari_advanced"),
        (sha(world.mismatch), "notified"),
        (world.weak_sha, "notified"),
        (world.expired_sha, "notified"),
        (world.rogue_key, "notified"),
    }
    assert {a["outcome"] for a in dry["actions"]} == {"planned"}
    assert await counts(world) == snapshot
    assert snapshot[:3] == (0, 0, 0) and set(snapshot[3]) == {None}
    assert await world.renewal_info(world.at_risk) == before
    assert world.hook.events == []

    # The real run: the at-risk certyard certificate's ARI window starts now.
    code, run = await cli(world, capsys, "run", "--json")
    assert code == 0, run
    done = {(a["certificate"], a["action"], a["outcome"]) for a in run["actions"]}
    assert done == {
        (sha(world.at_risk), "ari_advanced", "ok"),
        (sha(world.mismatch), "ari_advanced", "ok"),
        (sha(world.mismatch), "notified", "ok"),
        (world.weak_sha, "notified", "ok"),
        (world.expired_sha, "notified", "ok"),
        (world.rogue_key, "notified", "ok"),
    }
    window = await world.renewal_info(world.at_risk)
    served_at = dt.datetime.now(dt.UTC)
    assert window["start"] <= served_at < window["end"]  # RFC 9773 §4.2: renew now
    assert window["end"] <= world.at_risk.not_valid_after_utc
    scanned_window = await world.renewal_info(world.mismatch)
    assert scanned_window["start"] <= served_at < scanned_window["end"]
    # The healthy one keeps its default window.
    assert (await world.renewal_info(world.quiet))["start"] > served_at

    # The owner of each notify-method certificate got one renewal_due event; the expired one
    # also crossed the expiry thresholds (notify/expiry.py).
    renewal_due = [e for e in world.hook.events if e["kind"] == "renewal_due"]
    assert sorted(e["details"]["certificate"] for e in renewal_due) == sorted(
        [world.weak_sha, world.expired_sha, sha(world.mismatch), world.rogue_key]
    )
    owners = {e["details"]["certificate"]: e["details"]["owner"] for e in renewal_due}
    assert owners[world.weak_sha] == "ops@example.test" and owners[world.rogue_key] is None
    expiry = [e for e in world.hook.events if e["kind"] == "expiry"]
    assert [e["details"]["certificate"] for e in expiry] == [world.expired_sha]

    async with world.acme.services.sessions() as session:
        item = await session.get(RenewalItem, sha(world.at_risk))
        assert item is not None and item.at_risk and item.ari_advanced_at is not None
        assert item.at_risk_reasons == ["policy:compromised-host"]

    # A second run does not move the window again or notify twice.
    code, again = await cli(world, capsys, "run", "--json")
    assert code == 0
    assert (sha(world.at_risk), "ari_advanced", "skipped") in {
        (a["certificate"], a["action"], a["outcome"]) for a in again["actions"]
    }
    assert await world.renewal_info(world.at_risk) == window
    assert len([e for e in world.hook.events if e["kind"] == "renewal_due"]) == 4

    # History lists both runs, newest first, with their actions.
    code, hist = await cli(world, capsys, "history", "--json")
    assert code == 0
    assert [r["run"] for r in hist["runs"]] == [again["run"], run["run"]]
    first = hist["runs"][1]
    assert first["status"] == "done" and len(first["actions"]) == 6
    assert {a["action"] for a in first["actions"]} == {"ari_advanced", "notified"}


async def test_mark_and_bad_input(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = await cli(world, capsys, "history")
    assert (code, out.strip()) == (0, "no renewal runs yet")
    serial = "serial:" + format(world.quiet.serial_number, "x")
    code, out = await cli(world, capsys, "mark", serial, "--reason", "key copied to a laptop")
    assert code == 0 and sha(world.quiet) in out
    code, due = await cli(world, capsys, "plan", "--due", "--json")
    entry = {e["key"]: e for e in due["queue"]}[sha(world.quiet)]
    assert entry["state"] == "at-risk"
    assert entry["at_risk_reasons"] == ["operator:key copied to a laptop"]
    await cli(world, capsys, "mark", serial, "--clear")
    code, plan = await cli(world, capsys, "plan", "--json")
    assert {e["key"]: e for e in plan["queue"]}[sha(world.quiet)]["state"] == "healthy"
    for argv, message in [
        (("mark", "nonsense", "--reason", "x"), "give the hex SHA-256 of its DER, or serial:HEX"),
        (("mark", "serial:zz", "--reason", "x"), "positive hexadecimal serial"),
        (("mark", serial, "--reason", " "), "--reason must not be empty"),
        (("plan", "--limit", "-1"), "--limit must be >= 0"),
    ]:
        with pytest.raises(renew_commands.UsageError, match=message):
            await cli(world, capsys, *argv)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_command_line_table(world: World) -> None:
    """The installed ``certyard renew plan`` prints the queue as a table (one process start:
    the command line is slow to start on a loaded machine)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTYARD__")}
    plan = await asyncio.to_thread(
        subprocess.run,
        [*certyard_command(), "renew", "plan", "--config", str(world.config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert plan.returncode == 0, plan.stderr
    for text in ("expired.renew.test", "weak.renew.test", "app.renew.test", "weak_key"):
        assert text in plan.stdout
    assert plan.stdout.index("expired.renew.test") < plan.stdout.index("quiet.renew.test")


async def test_est_and_ssh_methods(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """EST devices are told to re-enroll; SSH targets go to the deployer, whose failure is
    recorded (no target "web-missing" exists) and makes the run exit 1."""
    renewal = {
        "policies": [
            {"name": "devices", "match": {"names": ["quiet.*"]}, "method": "est",
             "renew_days_before": 365, "owner": "iot@example.test"},
            {"name": "web", "match": {"names": ["app.*"]}, "method": "ssh",
             "target": "web-missing", "renew_days_before": 365},
        ]
    }  # fmt: skip
    world.settings = world.settings.model_copy(
        update={"renewal": RenewalSettings.model_validate(renewal)}
    )
    code, run = await cli(world, capsys, "run", "--json")
    actions = {a["certificate"]: a for a in run["actions"] if a["method"] in ("est", "ssh")}
    est = actions[sha(world.quiet)]
    assert (est["state"], est["action"], est["outcome"]) == ("renew-due", "reenroll_required", "ok")
    assert any(
        e["kind"] == "renewal_due" and e["details"]["owner"] == "iot@example.test"
        for e in world.hook.events
    )
    ssh = actions[sha(world.at_risk)]
    assert (ssh["action"], ssh["outcome"]) == ("failed", "failed")
    assert code == 1

    # Without a deployer (deploy/ not installed) an SSH item is skipped, and said so.
    queue = await load_queue(world.acme.services.sessions, world.settings.renewal, _utc_now())
    runner = RenewalRunner(world.acme.services.sessions, world.settings.renewal, deployer=None)
    result = await runner.run(queue, _utc_now(), dry_run=False)
    skipped = [a for a in result.actions if a.method == "ssh"]
    assert [(a.action, a.detail) for a in skipped] == [("skipped", "skipped: deploy unavailable")]


async def test_one_real_pass_at_a_time(db_url: str) -> None:
    """`renew run`, the scheduler's job and the admin API share one lease: while another pass
    holds it, a real pass is refused (a dry run is not)."""
    import datetime as dt

    from certyard.renew_commands import RUN_LEASE, PassRunning, renewal_pass
    from certyard.settings import load_settings
    from storage.engine import create_engine, migrate, session_factory
    from storage.repositories import leases

    engine = create_engine(db_url)
    try:
        await migrate(engine)
        sessions = session_factory(engine)
        settings = load_settings(None)
        now = dt.datetime.now(dt.UTC)
        assert await leases.acquire(sessions, RUN_LEASE, "elsewhere", now, dt.timedelta(minutes=5))
        with pytest.raises(PassRunning):
            await renewal_pass(settings, sessions)
        dry = await renewal_pass(settings, sessions, dry_run=True)
        assert dry.dry_run
        await leases.release(sessions, RUN_LEASE, "elsewhere")
        done = await renewal_pass(settings, sessions)
        assert done.run_id is not None and not done.dry_run
    finally:
        await engine.dispose()
