"""SSH deployment end to end: a real OpenSSH server in front of a real TLS server.

The "target host" is this machine reached through sshd on a loopback port (tests/support/
ssh_target.py); its service is a TLS server process that re-reads key and certificate on
SIGHUP (tests/support/reloading_tls_server.py), so the reload command is
``kill -HUP $(cat server.pid)``. The CA is certyard's IssuanceService on the test database
(SQLite and PostgreSQL). Whether the new certificate is served is checked here with the
standard library's ssl client, independently of the deployer's own verification.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import grp
import hashlib
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ca import CAConfig, IssuanceService, SoftwareKeyBackend, load_or_create_hierarchy
from ca.ceremony import default_ceremony
from deploy import repository
from deploy.config import DeploySettings
from deploy.hostkeys import parse_key
from deploy.service import Deployer
from deploy.targets import Endpoint, Target
from notify.events import Notification
from storage.engine import create_engine, migrate, session_factory
from storage.models import Certificate, ScanEndpoint, ScanObservation, ScanRun
from storage.models_deploy import DeployRun
from storage.repositories import leases
from tests.support.reloading_tls_server import ReloadingTlsProcess, served_sha256
from tests.support.server import free_port
from tests.support.ssh_target import SshTarget
from tests.support.tools import require_tool

PASSPHRASE = b"deploy-test-passphrase-0123456789abcdef"
NAME = "app.deploy.example"
FAST = DeploySettings(
    verify_timeout_seconds=10, verify_interval_seconds=0.1, connect_timeout_seconds=5
)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Recorder:
    """A NotificationSink that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[Notification] = []

    async def notify(self, event: Notification) -> None:
        self.events.append(event)


@dataclass
class Rig:
    ssh: SshTarget
    tls: ReloadingTlsProcess
    srv: Path  # the "remote" directory the service reads its files from
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    issuance: IssuanceService
    target: Target
    old_leaf_sha256: str
    sink: Recorder = field(default_factory=Recorder)

    def deployer(self, settings: DeploySettings = FAST) -> Deployer:
        return Deployer(self.sessions, self.issuance, settings, sink=self.sink)

    def snapshot(self) -> dict[str, bytes]:
        return {
            p.name: p.read_bytes() for p in sorted(self.srv.iterdir()) if p.name != "server.pid"
        }

    async def add_target(self, **changes: object) -> Target:
        target = replace(self.target, **changes)  # type: ignore[arg-type]
        await repository.add_target(self.sessions, target, utc_now())
        return target


async def served(port: int) -> str:
    return await asyncio.to_thread(served_sha256, port, NAME)


@pytest.fixture
async def rig(db_url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    """The whole loop on SQLite and PostgreSQL."""
    async with _rig(db_url, tmp_path) as made:
        yield made


@pytest.fixture
async def sqlite_rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """SQLite only: the failure paths touch the database the same way as a success (the
    repository is tested on both in test_deploy_storage.py), and each run costs seconds."""
    async with _rig(f"sqlite+aiosqlite:///{tmp_path}/certyard.db", tmp_path) as made:
        yield made


@asynccontextmanager
async def _rig(db_url: str, tmp_path: Path) -> AsyncIterator[Rig]:
    require_tool("openssl")
    engine = create_engine(db_url)
    await migrate(engine)
    sessions = session_factory(engine)
    backend = SoftwareKeyBackend(PASSPHRASE)
    config = CAConfig()
    # One ECDSA chain is all the deployments need (an RSA chain would only cost key generation).
    ceremony = default_ceremony(config, chains=("ecdsa",))
    hierarchy = await load_or_create_hierarchy(
        sessions, backend, config, utc_now, ceremony=ceremony
    )
    issuance = IssuanceService(sessions, hierarchy, backend, config, utc_now)

    # The certificate in service now: certyard-issued, two days from expiry.
    srv = tmp_path / "srv"
    srv.mkdir()
    old_key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)]))
        .sign(old_key, hashes.SHA256())
    )
    old = await issuance.issue(
        csr,
        profile="tls-server",
        dns_names=[NAME],
        requester="test:initial",
        not_after=utc_now() + dt.timedelta(days=2),
    )
    (srv / "key.pem").write_bytes(
        old_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(srv / "key.pem", 0o600)
    (srv / "cert.pem").write_text(old.pem)
    (srv / "fullchain.pem").write_text(old.chain_pem)

    ssh = SshTarget(tmp_path / "ssh")
    tls_port = free_port()
    tls = ReloadingTlsProcess(
        srv / "fullchain.pem", srv / "key.pem", tls_port, srv / "server.pid", tmp_path / "tls.log"
    )
    ssh.start()
    try:
        tls.start()
        pin = parse_key(ssh.host_key_line)
        target = Target(
            name="web",
            host=ssh.host,
            port=ssh.port,
            username=ssh.user,
            key_file=str(ssh.client_key_path),
            host_key=pin.line,
            host_key_fingerprint=pin.fingerprint,
            names=(NAME,),
            profile="tls-server",
            key_path=str(srv / "key.pem"),
            cert_path=str(srv / "cert.pem"),
            fullchain_path=str(srv / "fullchain.pem"),
            chain_path=str(srv / "chain.pem"),  # not there yet: created by the first deployment
            key_mode=0o600,
            cert_mode=0o644,
            # The test's own user and group: chown runs for real, as root or not.
            owner=ssh.user,
            group=grp.getgrgid(os.getgid()).gr_name,
            reload_command=f'kill -HUP "$(cat {srv / "server.pid"})"',
            verify=Endpoint("127.0.0.1", tls_port, NAME),
        )
        old_sha = hashlib.sha256(old.der).hexdigest()
        assert await served(tls_port) == old_sha
        yield Rig(ssh, tls, srv, engine, sessions, issuance, target, old_sha)
    finally:
        tls.stop()
        ssh.stop()
        await engine.dispose()


async def _runs(rig: Rig) -> list[DeployRun]:
    return await repository.list_runs(rig.sessions, "web")


async def _latest_observation(rig: Rig) -> tuple[str | None, dict[str, object]]:
    """What the inventory last saw at the verify endpoint, and the parameters of that scan."""
    async with rig.sessions() as session:
        row = (
            await session.execute(
                select(ScanObservation.cert_sha256, ScanRun.parameters)
                .join(ScanEndpoint, ScanEndpoint.id == ScanObservation.endpoint_id)
                .join(ScanRun, ScanRun.id == ScanObservation.scan_id)
                .where(ScanEndpoint.port == rig.target.verify.port)
                .order_by(ScanObservation.id.desc())
                .limit(1)
            )
        ).one()
    return row[0], dict(row[1])


async def _deploy_certificates(rig: Rig) -> int:
    async with rig.sessions() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(Certificate)
            .where(Certificate.requester == "deploy:web")
        )
    return int(count or 0)


@pytest.mark.parametrize("remote_keygen", [True, False], ids=["key-on-target", "key-in-certyard"])
async def test_near_expiry_certificate_is_renewed_deployed_and_verified(
    rig: Rig, remote_keygen: bool
) -> None:
    await rig.add_target()
    before = rig.snapshot()
    settings = FAST.model_copy(update={"remote_key_generation": remote_keygen})

    outcome = await rig.deployer(settings).renew_target("web")

    assert outcome.status == "deployed", outcome.detail
    assert outcome.serial and outcome.certificate_sha256
    # The endpoint serves the new certificate (seen by a plain TLS client, not the deployer).
    assert await served(rig.target.verify.port) == outcome.certificate_sha256
    assert outcome.certificate_sha256 != rig.old_leaf_sha256
    # The files on the target: new key matching the new certificate, modes as configured,
    # the previous generation kept for rollback, no temporary file left behind.
    srv = rig.srv
    cert = x509.load_pem_x509_certificate((srv / "cert.pem").read_bytes())
    assert hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest() == (
        outcome.certificate_sha256
    )
    assert cert.not_valid_after_utc - utc_now() > dt.timedelta(days=30)
    key = serialization.load_pem_private_key((srv / "key.pem").read_bytes(), None)
    assert key.public_key() == cert.public_key()
    assert stat.S_IMODE((srv / "key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((srv / "cert.pem").stat().st_mode) == 0o644
    full = x509.load_pem_x509_certificates((srv / "fullchain.pem").read_bytes())
    assert len(full) == 2 and full[0] == cert
    assert x509.load_pem_x509_certificates((srv / "chain.pem").read_bytes()) == full[1:]
    assert not (srv / "chain.pem.certyard-prev").exists()
    assert (srv / "key.pem").stat().st_uid == os.getuid()
    for name in ("key.pem", "cert.pem", "fullchain.pem"):
        assert (srv / f"{name}.certyard-prev").read_bytes() == before[name]
    assert not [p.name for p in srv.iterdir() if ".certyard-" in p.name and "prev" not in p.name]
    # History, target state and the CA's record.
    runs = await _runs(rig)
    assert [(r.status, r.finding) for r in runs] == [("deployed", None)]
    assert runs[0].key_origin == ("target" if remote_keygen else "certyard")
    target = await repository.get_target(rig.sessions, "web")
    assert target.certificate_sha256 == outcome.certificate_sha256
    assert target.last_status == "deployed"
    assert await _deploy_certificates(rig) == 1
    assert rig.sink.events == []
    assert await rig.deployer().find_target(certificate_sha256=outcome.certificate_sha256) == "web"
    # The verification scan is in the inventory: the endpoint now shows the new certificate.
    seen, parameters = await _latest_observation(rig)
    assert seen == outcome.certificate_sha256
    assert parameters == {"source": "deploy", "target": "web", "run": outcome.run_id}


@pytest.mark.parametrize(
    ("reload_command", "verify_seconds", "reason"),
    [
        ("echo 'config test failed' >&2; exit 3", 10.0, "reload exit 3: config test failed"),
        ("true", 1.0, "not serving the new certificate"),  # the service ignores the reload
    ],
    ids=["reload-fails", "old-cert-still-served"],
)
async def test_failed_reload_is_rolled_back_and_reported(
    sqlite_rig: Rig, reload_command: str, verify_seconds: float, reason: str
) -> None:
    rig = sqlite_rig
    await rig.add_target(reload_command=reload_command)
    before = rig.snapshot()
    settings = FAST.model_copy(update={"verify_timeout_seconds": verify_seconds})

    outcome = await rig.deployer(settings).renew_target("web")

    assert outcome.status == "rolled_back", outcome.detail
    assert reason in outcome.detail
    assert outcome.finding == "deploy_failed"
    # The previous files are back byte for byte, and the old certificate is still served.
    assert rig.snapshot() == before
    assert await served(rig.target.verify.port) == rig.old_leaf_sha256
    # Reported: history row with the finding, one notification.
    runs = await _runs(rig)
    assert [(r.status, r.finding) for r in runs] == [("rolled_back", "deploy_failed")]
    steps = [(s["step"], s["ok"]) for s in runs[0].steps]
    assert ("restore", True) in steps
    assert len(rig.sink.events) == 1
    event = rig.sink.events[0]
    assert (event.kind, event.severity) == ("deploy_failed", "high")
    assert event.details["target"] == "web" and event.details["status"] == "rolled_back"
    target = await repository.get_target(rig.sessions, "web")
    assert target.certificate_sha256 is None and target.last_status == "rolled_back"
    assert (await _latest_observation(rig))[0] == rig.old_leaf_sha256
    # The certificate issued for it was never served and its key is gone: revoked.
    assert outcome.serial is not None
    async with rig.sessions() as session:
        issued = await session.scalar(
            select(Certificate).where(Certificate.requester == "deploy:web")
        )
    assert issued is not None and issued.status == "revoked" and issued.revocation_reason == 5


async def test_changed_host_key_stops_the_deployment_before_anything_is_written(
    sqlite_rig: Rig,
) -> None:
    rig = sqlite_rig
    await rig.add_target()
    before = rig.snapshot()
    pinned = rig.target.host_key_fingerprint
    await asyncio.to_thread(rig.ssh.rotate_host_key)
    assert rig.ssh.host_key_fingerprint != pinned

    outcome = await rig.deployer().renew_target("web")

    assert outcome.status == "host_key_mismatch"
    assert pinned in outcome.detail and rig.ssh.host_key_fingerprint in outcome.detail
    assert outcome.serial is None
    assert rig.snapshot() == before  # nothing written, not even a temporary file
    assert await _deploy_certificates(rig) == 0  # nothing issued either
    assert await served(rig.target.verify.port) == rig.old_leaf_sha256
    assert [(r.status, r.finding) for r in await _runs(rig)] == [
        ("host_key_mismatch", "deploy_failed")
    ]
    assert [(e.kind, e.severity) for e in rig.sink.events] == [("deploy_failed", "critical")]

    # A host that no longer has a key of the pinned type at all is stopped the same way.
    await asyncio.to_thread(rig.ssh.rotate_host_key, "ecdsa")
    outcome = await rig.deployer().renew_target("web")
    assert outcome.status == "host_key_mismatch", outcome.detail
    assert "offers no ssh-ed25519 key" in outcome.detail
    assert rig.snapshot() == before
    assert await _deploy_certificates(rig) == 0


async def test_dry_run_checks_without_writing(sqlite_rig: Rig) -> None:
    rig = sqlite_rig
    await rig.add_target()
    before = rig.snapshot()

    outcome = await rig.deployer().renew_target("web", dry_run=True)

    assert outcome.status == "dry_run", outcome.detail
    assert rig.snapshot() == before
    assert await _deploy_certificates(rig) == 0
    assert rig.old_leaf_sha256[:16] in outcome.detail

    # A path whose directory does not exist fails the dry run, and the checks say why.
    await rig.add_target(name="bad", key_path=str(rig.srv / "missing" / "key.pem"))
    bad = await rig.deployer().renew_target("bad", dry_run=True)
    assert bad.status == "failed" and "missing: No such file" in bad.detail, bad.detail
    checks = await rig.deployer().check_target("bad")
    assert [(c.name, c.ok) for c in checks][:3] == [
        ("connect", True),
        (f"path {rig.srv / 'missing' / 'key.pem'}", False),
        (f"path {rig.srv / 'cert.pem'}", True),
    ]
    assert rig.snapshot() == before


async def test_one_deployment_per_target_at_a_time(sqlite_rig: Rig) -> None:
    rig = sqlite_rig
    await rig.add_target()
    # Another instance is deploying this target (it holds the target's lease).
    assert await leases.acquire(
        rig.sessions, "deploy:web", "other-instance", utc_now(), dt.timedelta(minutes=5)
    )

    outcome = await rig.deployer().renew_target("web")

    assert outcome.status == "failed" and "in progress" in outcome.detail
    assert await _runs(rig) == [] and rig.sink.events == []
    await leases.release(rig.sessions, "deploy:web", "other-instance")
    assert (await rig.deployer().renew_target("web", dry_run=True)).status == "dry_run"
