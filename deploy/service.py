"""The deployer: renew one SSH deployment target's certificate and put it in place.

Called by ``certyard deploy run`` and by the renewal queue (renewal/) for certificates whose
policy method is "ssh":

    deployer = Deployer(services.sessions, services.issuance, settings.deploy, sink=sink)
    outcome = await deployer.renew_target("web1")          # DeployOutcome
    name = await deployer.find_target(certificate_sha256=sha)  # which target serves it

One run (docs/deploy.md, "What a deployment does"):

1. log in over SSH, accepting only the pinned host key (a changed key stops the run here,
   status "host_key_mismatch", before anything is written);
2. note which certificate the endpoint serves now (the rollback's expectation);
3. make the new key on the target (a CSR read back over SSH) or, without openssl there, in
   certyard (sent inside the SSH channel);
4. issue through certyard's CA (requester "deploy:<target>");
5. write key, certificate, chain and full chain to temporary files beside their paths, set
   modes and owner, keep the current files as ``*.certyard-prev`` and rename the new ones in;
6. run the reload command, then scan the endpoint until it serves the new certificate (by
   SHA-256) or the deadline passes;
7. on a failed reload or verification: restore the previous files, reload again, check the old
   certificate is served again; status "rolled_back", finding "deploy_failed", a notification.

Every run is recorded in ``deploy_runs`` with its steps; a success updates the target's
current certificate. ``renew_target`` raises DeployError only for an unknown target: every
other failure is an outcome.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import secrets
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import asyncssh
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ca.errors import CAError
from ca.issuance import IssuedCertificate
from deploy import repository
from deploy.config import DeploySettings
from deploy.errors import DeployError
from deploy.inventory import other_snis, record_probe
from deploy.keys import NewKey, generate_in_certyard, generate_on_target
from deploy.remote_files import Installed, PathCheck, RemoteFiles, Staged
from deploy.ssh import connect, run
from deploy.targets import Endpoint, Target, format_endpoint
from deploy.verify import Served, served_leaf, wait_for
from notify.events import Notification, NotificationSink, NullSink, Severity
from storage.models_deploy import DeployTarget
from storage.repositories import leases

log = structlog.get_logger("certyard.deploy")

DeployStatus = Literal["deployed", "rolled_back", "failed", "host_key_mismatch", "dry_run"]
FINDING = "deploy_failed"
CESSATION_OF_OPERATION = 5  # RFC 5280 §5.3.1 CRLReason


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class DeployOutcome:
    target: str
    status: DeployStatus
    serial: str | None  # hex serial of the newly issued certificate (None when none was issued)
    detail: str  # one line a person reads
    certificate_sha256: str | None = None  # hex SHA-256 of the new certificate's DER
    run_id: str | None = None  # deploy_runs.id of the recorded history row
    finding: str | None = None  # "deploy_failed" when a person must look


@dataclass(frozen=True)
class Check:
    """One line of ``certyard deploy target test``."""

    name: str
    ok: bool
    detail: str


class Issuer(Protocol):
    """What the deployer needs from the CA (ca.issuance.IssuanceService satisfies it)."""

    async def issue(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        profile: str,
        dns_names: Sequence[str],
        ip_addresses: Sequence[str] = (),
        requester: str,
    ) -> IssuedCertificate: ...

    async def revoke(self, cert_id: str, reason: int, *, actor: str | None = None) -> None: ...

    def root_pem(self) -> str: ...


@dataclass
class _Run:
    """The state of one run, for the history row and the rollback."""

    target: Target
    run_id: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    issued: IssuedCertificate | None = None
    sha256: str | None = None
    key_origin: str | None = None
    before: str | None = None  # SHA-256 of the leaf served before the deployment

    def step(self, name: str, ok: bool, detail: str) -> None:
        self.steps.append({"step": name, "ok": ok, "detail": detail})
        log.info("deploy step", target=self.target.name, step=name, ok=ok, detail=detail)


class _Stop(Exception):
    """Ends a run early with an outcome status (internal control flow)."""

    def __init__(self, status: DeployStatus, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


class Deployer:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        issuance: Issuer,
        settings: DeploySettings | None = None,
        *,
        sink: NotificationSink | None = None,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self._sessions = sessions
        self._issuance = issuance
        self._settings = settings or DeploySettings()
        self._sink: NotificationSink = sink or NullSink()
        self._clock = clock

    # -- the run ------------------------------------------------------------------------------

    async def renew_target(self, target_name: str, *, dry_run: bool = False) -> DeployOutcome:
        target = await repository.get_target(self._sessions, target_name)
        # One deployment per target at a time, across instances (the renewal queue and an
        # operator's `deploy run` may meet): a lease named after the target.
        lease, owner = f"deploy:{target.name}", f"{socket.gethostname()}:{secrets.token_hex(8)}"
        if not await leases.acquire(self._sessions, lease, owner, self._clock(), self._lease_ttl()):
            return DeployOutcome(
                target.name, "failed", None, "another deployment of this target is in progress"
            )
        try:
            run_id = await repository.start_run(
                self._sessions,
                target.name,
                dry_run=dry_run,
                requester=f"deploy:{target.name}",
                now=self._clock(),
            )
            state = _Run(target, run_id)
            try:
                status, detail = await self._run(state, dry_run)
            except _Stop as stop:
                status, detail = stop.status, stop.detail
            except BaseException as exc:
                # A bug (or a cancellation) must still close the history row.
                with contextlib.suppress(Exception):
                    await self._finish(state, "failed", f"internal error: {exc!r}")
                raise
            return await self._finish(state, status, detail)
        finally:
            with contextlib.suppress(Exception):
                await leases.release(self._sessions, lease, owner)

    def _lease_ttl(self) -> dt.timedelta:
        """Longer than any run can take: connect, a handful of commands, two verifications."""
        s = self._settings
        seconds = s.connect_timeout_seconds + 6 * s.command_timeout_seconds
        return dt.timedelta(seconds=seconds + 2 * s.verify_timeout_seconds + 60)

    async def _run(self, state: _Run, dry_run: bool) -> tuple[DeployStatus, str]:
        target, settings = state.target, self._settings
        try:
            conn = await connect(target, settings)
        except DeployError as exc:
            state.step("connect", False, str(exc))
            status: DeployStatus = "host_key_mismatch" if exc.kind == "host_key" else "failed"
            return status, str(exc)
        state.step("connect", True, f"{target.username}@{target.host}:{target.port}, host key ok")
        try:
            async with conn, conn.start_sftp_client() as sftp:
                files = RemoteFiles(
                    conn,
                    sftp,
                    timeout=settings.command_timeout_seconds,
                    backups=settings.backups_to_keep,
                )
                if dry_run:
                    return await self._dry_run(state, files)
                return await self._deploy(state, conn, files)
        except DeployError as exc:
            state.step("remote", False, str(exc))
            return "failed", str(exc)
        except (asyncssh.Error, OSError) as exc:
            state.step("ssh", False, str(exc) or type(exc).__name__)
            return "failed", f"SSH session to {target.host} failed: {exc}"
        raise AssertionError("unreachable: the session block returns")  # for mypy

    async def _dry_run(self, state: _Run, files: RemoteFiles) -> tuple[DeployStatus, str]:
        checks = [await files.check_writable(path) for path in state.target.paths()]
        for check in checks:
            state.step("check-path", check.ok, f"{check.path}: {check.detail}")
        served = await served_leaf(
            state.target.verify, seconds=self._settings.probe_timeout_seconds
        )
        state.step("probe", served.ok, served.detail)
        bad = [f"{c.path}: {c.detail}" for c in checks if not c.ok]
        if bad:
            return "failed", "dry run: " + "; ".join(bad)
        names = ", ".join(state.target.names)
        return "dry_run", f"would issue {state.target.profile} for {names}; {served.detail}"

    async def _deploy(
        self, state: _Run, conn: asyncssh.SSHClientConnection, files: RemoteFiles
    ) -> tuple[DeployStatus, str]:
        target, settings = state.target, self._settings
        before = await served_leaf(target.verify, seconds=settings.probe_timeout_seconds)
        state.before = before.sha256
        state.step("probe-before", before.ok, before.detail)
        key = await self._new_key(state, conn, files)
        staged: list[Staged] = [Staged(target.key_path, key.tmp_path)]
        try:
            issued = await self._issue(state, key)
            modes = [(key.tmp_path, target.key_mode)]
            for path, data in self._certificate_files(target, issued):
                tmp = await files.write_temp(path, data, target.cert_mode)
                staged.append(Staged(path, tmp))
                modes.append((tmp, target.cert_mode))
            await files.set_attributes(modes, target.owner, target.group)
            installed = await files.install(staged)
        except BaseException:
            await files.discard([s.tmp for s in staged])
            raise
        state.step("install", True, ", ".join(i.path for i in installed))
        try:
            reload = await run(
                conn, target.reload_command, seconds=settings.command_timeout_seconds
            )
        except DeployError as exc:
            state.step("reload", False, str(exc))
            return await self._rollback(state, conn, files, installed, f"reload: {exc}")
        state.step("reload", reload.exit_status == 0, reload.brief())
        if reload.exit_status != 0:
            return await self._rollback(state, conn, files, installed, f"reload {reload.brief()}")
        assert state.sha256 is not None
        served = await wait_for(
            target.verify,
            state.sha256,
            deadline_seconds=settings.verify_timeout_seconds,
            interval=settings.verify_interval_seconds,
            probe_seconds=settings.probe_timeout_seconds,
        )
        state.step("verify", served.ok, served.detail)
        await self._record(state, served)
        if not served.ok:
            return await self._rollback(state, conn, files, installed, served.detail)
        return "deployed", f"{format_endpoint(target.verify)} serves serial {issued.serial_hex}"

    async def _new_key(
        self, state: _Run, conn: asyncssh.SSHClientConnection, files: RemoteFiles
    ) -> NewKey:
        target, settings = state.target, self._settings
        common_name = target.names[0]
        key: NewKey | None = None
        try:
            if settings.remote_key_generation:
                key = await generate_on_target(
                    conn,
                    target.key_path,
                    settings.key_type,
                    common_name,
                    seconds=settings.command_timeout_seconds,
                )
            if key is None:
                key = await generate_in_certyard(
                    files, target.key_path, settings.key_type, common_name
                )
        except DeployError as exc:
            state.step("key", False, str(exc))
            raise _Stop("failed", str(exc)) from None
        state.key_origin = key.origin
        state.step("key", True, f"{settings.key_type} made on the {key.origin}")
        return key

    async def _issue(self, state: _Run, key: NewKey) -> IssuedCertificate:
        target = state.target
        try:
            issued = await self._issuance.issue(
                key.csr,
                profile=target.profile,
                dns_names=target.dns_names,
                ip_addresses=target.ip_addresses,
                requester=f"deploy:{target.name}",
            )
        except CAError as exc:
            state.step("issue", False, str(exc))
            raise _Stop("failed", f"the CA refused: {exc}") from None
        state.issued = issued
        state.sha256 = hashlib.sha256(issued.der).hexdigest()
        state.step(
            "issue", True, f"serial {issued.serial_hex}, not after {issued.not_after:%Y-%m-%d}"
        )
        return issued

    @staticmethod
    def _certificate_files(target: Target, issued: IssuedCertificate) -> list[tuple[str, bytes]]:
        chain = x509.load_pem_x509_certificates(issued.chain_pem.encode())
        intermediates = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain[1:])
        files = [(target.cert_path, issued.pem.encode())]
        if target.chain_path is not None:
            files.append((target.chain_path, intermediates))
        if target.fullchain_path is not None:
            files.append((target.fullchain_path, issued.chain_pem.encode()))
        return files

    async def _rollback(
        self,
        state: _Run,
        conn: asyncssh.SSHClientConnection,
        files: RemoteFiles,
        installed: list[Installed],
        reason: str,
    ) -> tuple[DeployStatus, str]:
        target, settings = state.target, self._settings
        problems = await files.rollback(installed)
        state.step("restore", not problems, "; ".join(problems) or "previous files restored")
        reload = await run(conn, target.reload_command, seconds=settings.command_timeout_seconds)
        state.step("reload-previous", reload.exit_status == 0, reload.brief())
        after: Served | None = None
        if state.before is not None:
            after = await wait_for(
                target.verify,
                state.before,
                deadline_seconds=settings.verify_timeout_seconds,
                interval=settings.verify_interval_seconds,
                probe_seconds=settings.probe_timeout_seconds,
                what="the previous certificate",
            )
            state.step("verify-previous", after.ok, after.detail)
            await self._record(state, after)
        if problems:
            return "failed", f"{reason}; rollback incomplete: {'; '.join(problems)}"
        served = (
            "the previous certificate is served again"
            if after and after.ok
            else (after.detail if after else "nothing was served before")
        )
        return "rolled_back", f"{reason}; previous files restored, {served}"

    async def _finish(self, state: _Run, status: DeployStatus, detail: str) -> DeployOutcome:
        failed = status in ("rolled_back", "failed", "host_key_mismatch")
        issued = state.issued
        if failed and issued is not None:
            await self._revoke_unused(state, issued)
        await repository.finish_run(
            self._sessions,
            state.run_id,
            status=status,
            detail=detail,
            steps=state.steps,
            now=self._clock(),
            finding=FINDING if failed else None,
            key_origin=state.key_origin,
            certificate_id=issued.id if issued else None,
            serial_hex=issued.serial_hex if issued else None,
            certificate_sha256=state.sha256,
            not_after=issued.not_after if issued else None,
        )
        outcome = DeployOutcome(
            target=state.target.name,
            status=status,
            serial=issued.serial_hex if issued else None,
            detail=detail,
            certificate_sha256=state.sha256,
            run_id=state.run_id,
            finding=FINDING if failed else None,
        )
        log.info("deploy finished", target=outcome.target, status=status, run=state.run_id)
        if failed:
            await self._notify(state.target, outcome)
        return outcome

    async def _record(self, state: _Run, served: Served) -> None:
        """The last verification probe into the scanner's inventory (deploy/inventory.py),
        with a probe of each other SNI variant a discovery scan recorded at that address."""
        if served.result is None:
            return
        results = [served.result]
        job = served.result.job
        for sni, host in await other_snis(self._sessions, job):
            variant = Endpoint(job.ip, job.port, sni)
            seen = await served_leaf(variant, seconds=self._settings.probe_timeout_seconds)
            if seen.result is not None:
                seen.result.job = dataclasses.replace(seen.result.job, host=host)
                results.append(seen.result)
        scan_id = await record_probe(
            self._sessions,
            results,
            root_pem=self._issuance.root_pem(),
            parameters={"target": state.target.name, "run": state.run_id},
            clock=self._clock,
        )
        state.step("inventory", scan_id is not None, scan_id or "could not record the probe")

    async def _revoke_unused(self, state: _Run, issued: IssuedCertificate) -> None:
        """A certificate issued for a deployment that did not happen is never served and its
        key is gone (removed with the temporary files, or replaced again by the rollback):
        revoke it, RFC 5280 §5.3.1 cessationOfOperation."""
        try:
            await self._issuance.revoke(
                issued.id, CESSATION_OF_OPERATION, actor=f"deploy:{state.target.name}"
            )
        except CAError as exc:
            state.step("revoke", False, str(exc))
            return
        state.step("revoke", True, f"unused certificate {issued.serial_hex} revoked")

    async def _notify(self, target: Target, outcome: DeployOutcome) -> None:
        severity: Severity = "critical" if outcome.status == "host_key_mismatch" else "high"
        event = Notification(
            kind=FINDING,
            severity=severity,
            subject=f"deployment to {target.name} {outcome.status.replace('_', ' ')}: "
            f"{outcome.detail}",
            idempotency_key=f"deploy:{outcome.run_id}",
            details={
                "target": target.name,
                "status": outcome.status,
                "host": f"{target.host}:{target.port}",
                "endpoint": format_endpoint(target.verify),
                "serial": outcome.serial,
                "run_id": outcome.run_id,
            },
        )
        try:
            await self._sink.notify(event)
        except Exception as exc:  # a broken notifier must not turn the outcome into a crash
            log.warning("deploy notification failed", target=target.name, error=repr(exc))

    # -- checks and lookups ------------------------------------------------------------------

    async def check_target(self, target_name: str) -> list[Check]:
        """``certyard deploy target test``: log in (pinned host key), check each path can be
        replaced, look for openssl, probe the endpoint. Writes nothing but a probe file."""
        target = await repository.get_target(self._sessions, target_name)
        settings = self._settings
        try:
            conn = await connect(target, settings)
        except DeployError as exc:
            return [Check("connect", False, str(exc))]
        checks = [Check("connect", True, f"logged in; host key {target.host_key_fingerprint}")]
        async with conn, conn.start_sftp_client() as sftp:
            files = RemoteFiles(
                conn,
                sftp,
                timeout=settings.command_timeout_seconds,
                backups=settings.backups_to_keep,
            )
            results: list[PathCheck] = [await files.check_writable(p) for p in target.paths()]
            checks += [Check(f"path {r.path}", r.ok, r.detail) for r in results]
            found = await run(conn, "command -v openssl", seconds=settings.command_timeout_seconds)
            checks.append(
                Check(
                    "openssl",
                    True,
                    "keys will be made on the target"
                    if found.exit_status == 0
                    else "no openssl: keys will be made in certyard and sent over SSH",
                )
            )
        served = await served_leaf(target.verify, seconds=settings.probe_timeout_seconds)
        checks.append(Check("endpoint", served.ok, served.detail))
        return checks

    async def find_target(
        self,
        *,
        certificate_sha256: str | None = None,
        endpoint: tuple[str, int] | None = None,
        names: Sequence[str] = (),
    ) -> str | None:
        """The name of the target that deploys this certificate (by the SHA-256 of what it
        last deployed), serves this verify endpoint (host, port), or covers one of these
        names; None when no target does."""
        async with self._sessions() as session:
            rows = (await session.scalars(select(DeployTarget).order_by(DeployTarget.name))).all()
        if certificate_sha256 is not None:
            for row in rows:
                if row.certificate_sha256 == certificate_sha256.lower():
                    return row.name
        if endpoint is not None:
            for row in rows:
                if (row.verify_host, row.verify_port) == endpoint:
                    return row.name
        wanted = {n.lower() for n in names}
        for row in rows:
            if wanted & {str(n) for n in row.names}:
                return row.name
        return None
