"""``certyard renew run``: act on every queue entry that needs it, by its policy's method.

* at risk and issued by certyard: the ARI window (RFC 9773 §4.2) is moved so that it has
  started: an ACME client polling renewalInfo renews at once; whatever the method.
* ``ari``: the same for a due certificate (its policy may want it earlier than the default
  window); a certificate certyard did not issue has no ARI, so its owner is notified instead;
* ``ssh``: the deployer renews and deploys its target (deploy/service.py);
* ``est``: the device must re-enroll (RFC 7030 §4.2.2 simplereenroll): recorded and notified;
* ``notify``: a "renewal_due" notification to its owner.

Every action is one row of ``renewal_actions`` under the run's ``renewal_runs`` row; each
certificate's actions are committed together, so an interrupted run keeps what it did. With
``dry_run`` nothing is written and nothing is sent: the actions are returned as "planned".
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notify.events import Notification, NotificationSink, NullSink, Severity
from renewal.config import RenewalSettings
from renewal.policy import policies_from_settings, sync_policies
from renewal.queue import QueueEntry
from storage.models import Certificate
from storage.models_renewal import RenewalAction, RenewalItem, RenewalRun

log = structlog.get_logger("certyard.renewal")


class DeployResult(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def detail(self) -> str: ...


class TargetRenewer(Protocol):
    """What the runner needs of deploy.service.Deployer."""

    async def renew_target(self, target_name: str, *, dry_run: bool = False) -> Any: ...

    async def find_target(
        self,
        *,
        certificate_sha256: str | None = None,
        endpoint: tuple[str, int] | None = None,
        names: Sequence[str] = (),
    ) -> str | None: ...


# notify/expiry.py's alerter: called once per run with the queue's certificates.
ExpiryCheck = Callable[[Sequence[QueueEntry]], Awaitable[int]]


@dataclass(frozen=True)
class ActionRecord:
    cert_key: str
    names: tuple[str, ...]
    state: str
    method: str
    action: str  # ari_advanced | deployed | reenroll_required | notified | skipped | failed
    outcome: str  # ok | skipped | failed | planned
    detail: str


@dataclass
class RunResult:
    run_id: str | None
    dry_run: bool
    actions: list[ActionRecord] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "actions": len(self.actions),
            "by_action": dict(Counter(a.action for a in self.actions)),
            "by_outcome": dict(Counter(a.outcome for a in self.actions)),
        }


_SEVERITY: dict[str, Severity] = {
    "expired": "critical",
    "revoked": "high",
    "at-risk": "high",
    "renew-due": "medium",
    "healthy": "info",
}


def renewal_notification(entry: QueueEntry, detail: str) -> Notification:
    item = entry.item
    name = item.names[0] if item.names else item.key[:16]
    more = f" (+{len(item.names) - 1} more)" if len(item.names) > 1 else ""
    return Notification(
        kind="renewal_due",
        severity=_SEVERITY[entry.state],
        subject=f"Renew the certificate for {name}{more}: {entry.state}, {detail}",
        # One notification per certificate and state: a receiver drops repeats of later runs.
        idempotency_key=f"renewal:{item.key}:{entry.state}",
        details={
            "certificate": item.key,
            "names": item.names,
            "state": entry.state,
            "priority": entry.priority,
            "not_after": item.not_after.isoformat(),
            "days_left": round(entry.days_left, 2),
            "sources": sorted(item.sources),
            "endpoints": sorted(item.endpoints),
            "findings": sorted(item.findings),
            "at_risk_reasons": list(entry.at_risk_reasons),
            "policy": entry.policy.name,
            "method": entry.policy.method,
            "owner": entry.policy.owner,
        },
    )


def ari_window(entry: QueueEntry, hours: float) -> tuple[dt.datetime, dt.datetime]:
    """A window that starts now (RFC 9773 §4.2: a start in the past means renew now) and ends
    at the latest when the certificate does."""
    start = entry.now
    end = min(start + dt.timedelta(hours=hours), entry.item.not_after)
    return start, max(end, start + dt.timedelta(minutes=1))


def _ari_applies(entry: QueueEntry) -> bool:
    item = entry.item
    return item.certificate_id is not None and not item.revoked and entry.now < item.not_after


def _window_started(entry: QueueEntry) -> bool:
    start, end = entry.item.ari_window_start, entry.item.ari_window_end
    return start is not None and end is not None and start <= entry.now < end


class RenewalRunner:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: RenewalSettings,
        *,
        sink: NotificationSink | None = None,
        deployer: TargetRenewer | None = None,
        expiry_check: ExpiryCheck | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.clock = clock
        self.sessions = sessions
        self.settings = settings
        self.sink: NotificationSink = sink or NullSink()
        self.deployer = deployer
        self.expiry_check = expiry_check

    async def run(
        self, queue: Sequence[QueueEntry], now: dt.datetime, *, dry_run: bool
    ) -> RunResult:
        if dry_run:
            result = RunResult(None, True)
            for entry in queue:
                if entry.needs_action:
                    result.actions += self._plan(entry)
            return result
        result = RunResult("rr-" + secrets.token_urlsafe(12), False)
        async with self.sessions.begin() as session:
            session.add(RenewalRun(id=result.run_id, started_at=now, status="running"))
            await sync_policies(session, policies_from_settings(self.settings), now)
        status = "failed"
        try:
            quiet = []
            for entry in queue:
                if not entry.needs_action:
                    quiet.append(entry)
                    continue
                actions = await self._act(entry)
                result.actions += actions
                async with self.sessions.begin() as session:
                    await _write_item(session, entry, actions, result.run_id, now)
            async with self.sessions.begin() as session:
                for entry in quiet:  # the healthy rest: their state only, in one transaction
                    await _write_item(session, entry, [], result.run_id, now)
            if self.expiry_check is not None:
                # A certificate this run replaced and verified on its endpoint is no longer in
                # service: an expiry alert for it would be a false alarm sent seconds after
                # the fix (and would spend its threshold's one alert).
                replaced = {
                    a.cert_key
                    for a in result.actions
                    if a.action == "deployed" and a.outcome == "ok"
                }
                await self.expiry_check([e for e in queue if e.item.key not in replaced])
            status = "done"
        finally:
            async with self.sessions.begin() as session:
                await session.execute(
                    update(RenewalRun)
                    .where(RenewalRun.id == result.run_id)
                    .values(status=status, finished_at=self.clock(), summary=result.summary())
                )
        return result

    # --- deciding ------------------------------------------------------------------------

    def _plan(self, entry: QueueEntry) -> list[ActionRecord]:
        """What ``_act`` would do, without doing it."""
        out = []
        method = entry.policy.method
        if self._wants_ari(entry):
            out.append(self._rec(entry, "ari_advanced", "planned", "would start the ARI window"))
        if method == "ssh":
            target = entry.policy.target or "(found by the deployer)"
            out.append(self._rec(entry, "deployed", "planned", f"would deploy target {target}"))
        elif method == "est":
            out.append(self._rec(entry, "reenroll_required", "planned", "would notify"))
        elif method == "notify" or not _ari_applies(entry):
            out.append(self._rec(entry, "notified", "planned", "would notify"))
        return out

    def _wants_ari(self, entry: QueueEntry) -> bool:
        if not _ari_applies(entry):
            return False
        return bool(entry.at_risk_reasons) or entry.policy.method == "ari"

    @staticmethod
    def _rec(entry: QueueEntry, action: str, outcome: str, detail: str) -> ActionRecord:
        item = entry.item
        return ActionRecord(
            item.key, tuple(item.names), entry.state, entry.policy.method, action, outcome, detail
        )

    # --- doing ---------------------------------------------------------------------------

    async def _act(self, entry: QueueEntry) -> list[ActionRecord]:
        out = []
        method = entry.policy.method
        if self._wants_ari(entry):
            out.append(await self._advance_ari(entry))
        if method == "ssh":
            out.append(await self._deploy(entry))
        elif method == "est":
            detail = "the device must re-enroll (EST simplereenroll, RFC 7030 §4.2.2)"
            await self._notify(entry, detail)
            out.append(self._rec(entry, "reenroll_required", "ok", detail))
        elif method == "notify" or not _ari_applies(entry):
            # "ari" for a certificate without ARI (not certyard's, expired, revoked): tell
            # its owner, the only way left.
            detail = f"due under policy {entry.policy.name} ({entry.policy.trigger()})"
            await self._notify(entry, detail)
            out.append(self._rec(entry, "notified", "ok", detail))
        return out

    async def _advance_ari(self, entry: QueueEntry) -> ActionRecord:
        if _window_started(entry):
            return self._rec(entry, "ari_advanced", "skipped", "the ARI window has started")
        start, end = ari_window(entry, self.settings.ari_window_hours)
        async with self.sessions.begin() as session:
            await session.execute(
                update(Certificate)
                .where(Certificate.id == entry.item.certificate_id)
                .values(ari_window_start=start, ari_window_end=end)
            )
        reasons = ", ".join(entry.at_risk_reasons) or entry.state
        log.info("renewal_ari_advanced", certificate=entry.item.certificate_id, reasons=reasons)
        return self._rec(
            entry,
            "ari_advanced",
            "ok",
            f"window {start.isoformat()} .. {end.isoformat()} ({reasons})",
        )

    async def _deploy(self, entry: QueueEntry) -> ActionRecord:
        if self.deployer is None:
            return self._rec(entry, "skipped", "skipped", "skipped: deploy unavailable")
        try:
            target = entry.policy.target or await self.deployer.find_target(
                certificate_sha256=entry.item.key, names=entry.item.names
            )
            if target is None:
                await self._notify(entry, "no deploy target serves it")
                return self._rec(entry, "failed", "failed", "no deploy target serves it")
            outcome = await self.deployer.renew_target(target)
        except Exception as exc:  # one target's failure must not stop the run
            # Logged without a traceback: an unknown target or an SSH failure is an outcome
            # the operator reads in the history, not a crash.
            log.warning("renewal_deploy_failed", certificate=entry.item.key, error=repr(exc))
            detail = f"deploy failed: {exc or type(exc).__name__}"
            await self._notify(entry, detail)
            return self._rec(entry, "failed", "failed", detail)
        # A deployment that ran and failed was already notified by the deployer
        # (deploy_failed, with the rollback's outcome): one notification per failure.
        status, detail = str(outcome.status), str(outcome.detail)
        ok = status == "deployed"
        return self._rec(
            entry, "deployed" if ok else "failed", "ok" if ok else "failed", f"{target}: {detail}"
        )

    async def _notify(self, entry: QueueEntry, detail: str) -> None:
        await self.sink.notify(renewal_notification(entry, detail))


async def _write_item(
    session: AsyncSession,
    entry: QueueEntry,
    actions: list[ActionRecord],
    run_id: str | None,
    now: dt.datetime,
) -> None:
    """Upsert the certificate's ``renewal_items`` row (state, at-risk mark) and its actions."""
    assert run_id is not None
    item = entry.item
    row = await session.get(RenewalItem, item.key)
    if row is None:
        row = RenewalItem(cert_key=item.key, operator_mark=None, at_risk_since=None)
        row.ari_advanced_at = row.last_action = row.last_action_at = None
        session.add(row)
    row.certificate_id = item.certificate_id
    row.names, row.sources = list(item.names), sorted(item.sources)
    row.not_after, row.state, row.priority = item.not_after, entry.state, entry.priority
    row.policy, row.method = entry.policy.name, entry.policy.method
    at_risk = bool(entry.at_risk_reasons)
    row.at_risk_since = (row.at_risk_since or now) if at_risk else None
    row.at_risk, row.at_risk_reasons = at_risk, list(entry.at_risk_reasons)
    row.updated_at = now
    for action in actions:
        session.add(
            RenewalAction(
                run_id=run_id,
                cert_key=action.cert_key,
                names=list(action.names),
                state=action.state,
                method=action.method,
                action=action.action,
                outcome=action.outcome,
                detail=action.detail,
                created_at=now,
            )
        )
        if action.outcome == "ok":
            row.last_action, row.last_action_at = action.action, now
            if action.action == "ari_advanced":
                row.ari_advanced_at = now


async def history(
    sessions: async_sessionmaker[AsyncSession], limit: int = 20
) -> list[tuple[RenewalRun, list[RenewalAction]]]:
    """The latest runs, newest first, with their actions."""
    async with sessions() as session:
        runs = list(
            await session.scalars(
                select(RenewalRun).order_by(RenewalRun.started_at.desc()).limit(limit)
            )
        )
        actions = await session.scalars(
            select(RenewalAction)
            .where(RenewalAction.run_id.in_([r.id for r in runs]))
            .order_by(RenewalAction.id)
        )
        by_run: dict[str, list[RenewalAction]] = {}
        for action in actions:
            by_run.setdefault(action.run_id, []).append(action)
    return [(run, by_run.get(run.id, [])) for run in runs]
