"""The audit trail on a real database (SQLite and PostgreSQL through ``db_url``), a real
SoftHSM2 token for the audit key, the real issuance service, and ``certyard audit ...``.

Tampering is done the way an attacker with database access would: plain SQL on the tables.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import json
import subprocess
from pathlib import Path

import pkcs11
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from audit.chain import Checkpoint
from audit.config import AuditSettings
from audit.config_changes import record_config
from audit.keys import AuditSigner
from audit.trail import AuditTrail, iter_entries
from audit.verify import backend_confirmer, load_checkpoints, trusted_keys, verify_trail
from ca import CAConfig, CAError, IssuanceService, SoftwareKeyBackend, load_or_create_hierarchy
from certyard.settings import load_settings
from certyard.wiring import build_services
from storage.models import Certificate
from storage.models_audit import AuditCheckpointRow
from tests.support.audit_env import cli_env, database, execute, run_cli
from tests.support.server import certyard_command
from tests.support.softhsm import make_token, open_backend, raw_session
from tests.support.tools import REPO_ROOT

PASSPHRASE = b"audit-test-passphrase-0123456789"


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def _record(trail: AuditTrail, count: int, actor: str = "cli:tester") -> None:
    for n in range(count):
        await trail.record(
            actor=actor,
            action="est.user.add",
            target=f"est-user:u{n}",
            details={"label": None, "n": n, "ratio": 0.5},
        )


def _certyard(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*certyard_command(), *args],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_verify_names_a_tampered_row(db_url: str, tmp_path: Path) -> None:
    async def setup() -> None:
        async with database(db_url) as (_, sessions):
            await _record(AuditTrail(sessions), 5)

    asyncio.run(setup())
    with cli_env(tmp_path, db_url) as env:
        assert run_cli("audit", "verify") == (0, "ok: 5 entries, 0 checkpoints\n", "")

        async def tamper() -> None:
            async with database(db_url) as (engine, _):
                await execute(
                    engine, """UPDATE audit_entries SET details = '{"label": "x"}' WHERE seq = 3"""
                )

        asyncio.run(tamper())
        if "sqlite" in db_url:
            # The real console script, as an auditor runs it (once: a process start costs
            # seconds; the PostgreSQL half runs the same run() in-process).
            result = _certyard(env, "audit", "verify")
            status, out, err = result.returncode, result.stdout, result.stderr
        else:
            status, out, err = run_cli("audit", "verify")
    assert (status, out) == (1, "")
    assert err.startswith("certyard: audit trail broken at entry 3: "), err
    assert "altered" in err and len(err.splitlines()) == 1


def test_verify_names_deleted_rows(db_url: str, tmp_path: Path) -> None:
    async def setup() -> None:
        async with database(db_url) as (engine, sessions):
            await _record(AuditTrail(sessions), 6)
            await execute(engine, "DELETE FROM audit_entries WHERE seq = 6")

    async def delete_more() -> None:
        async with database(db_url) as (engine, _):
            await execute(engine, "DELETE FROM audit_entries WHERE seq = 4")

    with cli_env(tmp_path, db_url):
        # The newest entry deleted: no successor shows the gap, the chain head does.
        asyncio.run(setup())
        status, out, err = run_cli("audit", "verify")
        assert (status, out) == (1, "")
        assert err.startswith("certyard: audit trail broken at entry 6: missing"), err
        # A gap in the middle is the first broken entry.
        asyncio.run(delete_more())
        status, out, err = run_cli("audit", "verify")
        assert (status, out) == (1, "")
        assert err.startswith("certyard: audit trail broken at entry 4: entry 4 is missing"), err


async def test_checkpoints_signed_on_softhsm(db_url: str, tmp_path: Path) -> None:
    token = make_token(tmp_path / "hsm")
    async with database(db_url) as (engine, sessions), open_backend(token) as backend:
        signer = AuditSigner(sessions, backend, "certyard-audit", utc_now)
        settings = AuditSettings(checkpoint_every_entries=3, checkpoint_every_seconds=0)
        trail = AuditTrail(sessions, settings, signer=signer)
        await _record(trail, 7)
        async with sessions() as session:
            checkpoints = await load_checkpoints(session)
        assert [c.seq for c in checkpoints] == [3, 6]
        forced = await trail.checkpoint()
        assert forced is not None and forced.seq == 7
        assert await trail.checkpoint() is None  # the head is already signed

        keys = await trusted_keys(sessions, backend_confirmer(backend))
        result = await verify_trail(sessions, keys)
        assert (result.ok, result.entries, result.checkpoints) == (True, 7, 3)

        # A forged checkpoint: a signature by a key that is not the HSM's.
        forger = ec.generate_private_key(ec.SECP256R1())
        cp = next(c for c in checkpoints if c.seq == 3)
        forged = forger.sign(cp.payload(), ec.ECDSA(hashes.SHA256()))
        async with sessions.begin() as session:
            await session.execute(
                update(AuditCheckpointRow)
                .where(AuditCheckpointRow.seq == 3)
                .values(signature=forged)
            )
        result = await verify_trail(sessions, keys)
        assert result.broken is not None and result.broken.seq == 3
        assert "checkpoint signature does not verify" in result.broken.problem
        await _restore(sessions, cp)

        # A chain rewritten consistently after entry 1: the checkpoint at 3 exposes it.
        assert (await verify_trail(sessions, keys)).ok
        await _rewrite_from(engine, sessions, 2)
        result = await verify_trail(sessions, keys)
        assert result.broken is not None and result.broken.seq == 3, result.broken
    # The audit key is on the token: private, sensitive, never extractable (PKCS#11 base §4.9).
    with raw_session(token) as session:
        [private] = list(
            session.get_objects({pkcs11.Attribute.CLASS: pkcs11.ObjectClass.PRIVATE_KEY})
        )
        assert str(private[pkcs11.Attribute.LABEL]).startswith("certyard-audit-")
        assert private[pkcs11.Attribute.SENSITIVE] and not private[pkcs11.Attribute.EXTRACTABLE]


async def _restore(sessions: async_sessionmaker[AsyncSession], cp: Checkpoint) -> None:
    async with sessions.begin() as session:
        await session.execute(
            update(AuditCheckpointRow)
            .where(AuditCheckpointRow.seq == cp.seq)
            .values(signature=cp.signature)
        )


async def _rewrite_from(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], seq: int
) -> None:
    """What an attacker without the audit key can do: change entry ``seq`` and recompute every
    hash after it (and the head), so that the chain itself is consistent again."""
    entries = [e async for e in iter_entries(sessions)]
    prev = entries[seq - 2].entry_hash
    statements = []
    for entry in entries[seq - 1 :]:
        changed = dataclasses.replace(entry, prev_hash=prev)
        if entry.seq == seq:
            changed = dataclasses.replace(changed, actor="someone-else")
        digest = changed.compute_hash()
        statements.append(
            f"UPDATE audit_entries SET actor = '{changed.actor}', prev_hash = '{prev}', "
            f"entry_hash = '{digest}' WHERE seq = {entry.seq}"
        )
        prev = digest
    statements.append(f"UPDATE audit_head SET entry_hash = '{prev}'")
    await execute(engine, *statements)


async def test_concurrent_appends_from_two_engines_keep_one_chain(db_url: str) -> None:
    async with database(db_url) as (_, first), database(db_url) as (_, second):
        trails = [AuditTrail(first), AuditTrail(second)]
        await asyncio.gather(*(_record(trails[i % 2], 5, actor=f"instance-{i}") for i in range(6)))
        entries = [e async for e in iter_entries(first)]
        assert [e.seq for e in entries] == list(range(1, 31))
        assert {e.actor for e in entries} == {f"instance-{i}" for i in range(6)}
        result = await verify_trail(first, {})
        assert (result.ok, result.entries) == (True, 30)


async def _issuance(url: str, engine_sessions: async_sessionmaker[AsyncSession]) -> IssuanceService:
    backend = SoftwareKeyBackend(PASSPHRASE)
    config = CAConfig()
    hierarchy = await load_or_create_hierarchy(engine_sessions, backend, config, utc_now)
    return IssuanceService(
        engine_sessions, hierarchy, backend, config, utc_now, audit=AuditTrail(engine_sessions)
    )


def _csr() -> x509.CertificateSigningRequest:
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )


async def _certificates(sessions: async_sessionmaker[AsyncSession]) -> list[Certificate]:
    async with sessions() as session:
        return list(
            (
                await session.execute(
                    select(Certificate).where(Certificate.profile == "tls-server")
                )
            ).scalars()
        )


async def test_issuance_is_audited_and_refused_without_its_entry(db_url: str) -> None:
    async with database(db_url) as (engine, sessions):
        service = await _issuance(db_url, sessions)
        issued = await service.issue(
            _csr(), profile="tls-server", dns_names=["www.example.com"], requester="est:default"
        )
        await service.revoke(issued.id, 1, actor="cli:tester")
        entries = [e async for e in iter_entries(sessions)]
        intent, success, revoke = entries[-3:]
        cert = x509.load_der_x509_certificate(issued.der)
        tbs = hashlib.sha256(cert.tbs_certificate_bytes).hexdigest()
        assert (intent.action, intent.outcome, intent.actor) == (
            "certificate.issue", "intent", "est:default"
        )  # fmt: skip
        assert intent.details["tbs_sha256"] == tbs == success.details["tbs_sha256"]
        assert intent.details["names"] == ["www.example.com"]
        assert intent.details["serial"] == issued.serial_hex == success.details["serial"]
        assert success.outcome == "success" and success.target == f"serial:{issued.serial_hex}"
        assert success.details["certificate_sha256"] == hashlib.sha256(issued.der).hexdigest()
        assert (revoke.action, revoke.actor, revoke.details["reason"]) == (
            "certificate.revoke", "cli:tester", 1
        )  # fmt: skip
        before = len(await _certificates(sessions))

        # 1. The audit table is gone (renamed away): nothing is recorded, nothing signed.
        await execute(engine, "ALTER TABLE audit_entries RENAME TO audit_entries_away")
        with pytest.raises(CAError) as refused:
            await service.issue(
                _csr(), profile="tls-server", dns_names=["b.example.com"], requester="cli"
            )
        assert refused.value.kind == "internal" and "audit" in refused.value.detail
        assert len(await _certificates(sessions)) == before
        await execute(engine, "ALTER TABLE audit_entries_away RENAME TO audit_entries")

        # 2. The database refuses the "success" entry (after signing): never released.
        if engine.dialect.name == "sqlite":
            await execute(
                engine,
                "CREATE TRIGGER refuse BEFORE INSERT ON audit_entries WHEN NEW.outcome = "
                "'success' BEGIN SELECT RAISE(ABORT, 'audit refused'); END",
            )
        else:
            await execute(
                engine,
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'audit refused'; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER refuse BEFORE INSERT ON audit_entries FOR EACH ROW "
                "WHEN (NEW.outcome = 'success') EXECUTE FUNCTION refuse()",
            )
        with pytest.raises(CAError) as refused:
            await service.issue(
                _csr(), profile="tls-server", dns_names=["c.example.com"], requester="cli"
            )
        assert refused.value.kind == "internal"
        rows = await _certificates(sessions)
        assert len(rows) == before + 1
        [held] = [row for row in rows if row.names == ["c.example.com"]]
        assert (held.state, held.der, held.chain_pem) == ("signing", None, None)
        await execute(
            engine, "DROP TRIGGER refuse" + ("" if "sqlite" in db_url else " ON audit_entries")
        )

        # The failures left no gap: the chain still verifies, ending in c's intent.
        result = await verify_trail(sessions, {})
        assert result.ok and result.entries == len(entries) + 1
        last = [e async for e in iter_entries(sessions)][-1]
        assert (last.outcome, last.details["names"]) == ("intent", ["c.example.com"])


def test_cli_commands_record_and_export(db_url: str, tmp_path: Path) -> None:
    with cli_env(tmp_path, db_url):
        assert run_cli("est", "user", "add", "router1", stdin="s3cret-password\n")[0] == 0
        status, out, _ = run_cli("acme", "eab", "create", "--allow-domain", "Example.com", "--json")
        assert status == 0
        created = json.loads(out)
        assert run_cli("acme", "eab", "revoke", created["kid"])[0] == 0
        assert run_cli("est", "user", "remove", "router1")[0] == 0
        assert run_cli("est", "user", "remove", "router1")[0] == 1  # nothing changed: no entry

        out_file = tmp_path / "audit.jsonl"
        assert run_cli("audit", "export", "--out", str(out_file)) == (0, "", "")
        lines = [json.loads(line) for line in out_file.read_text().splitlines()]
        assert [(e["seq"], e["action"]) for e in lines] == [
            (1, "est.user.add"),
            (2, "acme.eab.create"),
            (3, "acme.eab.revoke"),
            (4, "est.user.remove"),
        ]
        assert all(e["actor"].startswith("cli:") for e in lines)
        assert lines[1]["details"]["allowed_domains"] == ["example.com"]
        assert created["hmac_key"] not in out_file.read_text()  # secrets never recorded
        assert lines[1]["prev_hash"] == lines[0]["entry_hash"]
        status, out, _ = run_cli("audit", "export", "--since", "2")
        assert status == 0 and [json.loads(x)["seq"] for x in out.splitlines()] == [3, 4]
        assert run_cli("audit", "export", "--since", "x")[0] == 2

        # A checkpoint by the audit key of the software backend, then verify trusts only a key
        # the backend holds, or the one pinned.
        status, out, _ = run_cli("audit", "checkpoint")
        # (The last line: this in-process run leaves structlog's default stdout logger.)
        assert status == 0
        assert out.splitlines()[-1].startswith("checkpoint at entry 4 signed by audit key ")
        assert run_cli("audit", "verify") == (0, "ok: 4 entries, 1 checkpoints\n", "")
        status, pem, _ = run_cli("audit", "public-key")
        assert status == 0 and pem.startswith("-----BEGIN PUBLIC KEY-----")
        (tmp_path / "audit.pem").write_text(pem)
        assert run_cli("audit", "verify", "--public-key", str(tmp_path / "audit.pem"))[0] == 0
        other = ec.generate_private_key(ec.SECP256R1()).public_key()
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        (tmp_path / "other.pem").write_bytes(
            other.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        )
        status, _, err = run_cli("audit", "verify", "--public-key", str(tmp_path / "other.pem"))
        assert status == 1 and "entry 4: checkpoint signed by unknown audit key" in err


async def test_count_and_time_checkpoint_policy(db_url: str) -> None:
    """Without a signer nothing is checkpointed; checkpoint_due follows the settings."""
    async with database(db_url) as (_, sessions):
        trail = AuditTrail(sessions, AuditSettings(checkpoint_every_entries=2))
        await _record(trail, 3)
        async with sessions() as session:
            assert await session.scalar(select(func.count()).select_from(AuditCheckpointRow)) == 0
        assert trail.checkpoint_due(3) and not trail.checkpoint_due(1)
        timed = AuditTrail(
            sessions, AuditSettings(checkpoint_every_entries=0, checkpoint_every_seconds=0.01)
        )
        deadline = asyncio.get_running_loop().time() + 5
        while not timed.checkpoint_due(1):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)


async def test_configuration_changes_are_recorded(db_url: str) -> None:
    async with database(db_url) as (_, sessions):
        trail = AuditTrail(sessions)
        settings: dict[str, dict[str, object]] = {
            "ca": {"backend": "software"},
            "acme": {"require_eab": False},
        }
        assert await record_config(trail, sessions, settings)
        assert not await record_config(trail, sessions, settings)  # unchanged: no entry
        settings["acme"]["require_eab"] = True
        assert await record_config(trail, sessions, settings)
        entries = [e async for e in iter_entries(sessions)]
        assert [e.action for e in entries] == ["config.change", "config.change"]
        assert entries[1].details["changed_sections"] == ["acme"]
        assert entries[1].details["previous_sha256"] == entries[0].details["settings_sha256"]


async def test_build_services_records_through_the_trail(db_url: str, tmp_path: Path) -> None:
    """The wiring every front end uses: its issuance service writes to the audit trail."""
    with cli_env(tmp_path, db_url):
        services = await build_services(load_settings(None))
    try:
        assert isinstance(services.audit, AuditTrail)
        issued = await services.issuance.issue_server_certificate(["localhost"])
        entries = [e async for e in iter_entries(services.sessions)]
        assert [(e.action, e.outcome) for e in entries] == [
            ("config.change", "success"),
            ("certificate.issue", "intent"),
            ("certificate.issue", "success"),
        ]
        assert entries[-1].details["certificate_id"] == issued.certificate_id
        assert entries[-1].actor == "server-tls"
        made = await services.audit.checkpoint()  # the audit key, on the software backend
        assert made is not None and made.seq == 3
    finally:
        await services.close()
