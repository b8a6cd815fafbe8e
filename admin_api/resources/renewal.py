"""The renewal queue through the API (docs/renewal.md, docs/admin-api.md "Renewal"): the
risk-ranked plan, the policies, the history of passes, and a pass started here.

What ``certyard renew plan|history|run`` does (certyard/renew_commands.py). The queue is
computed on each request from the inventory (it depends on the time), sorted by priority; its
cursor names the last entry handed out, so the next page starts after it even if entries before
it changed rank. The queue spans every team's certificates, so a namespace-bound principal is
refused (403) like for the audit trail.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select

from admin_api.context import Call
from admin_api.namespaces import require_global
from admin_api.pagination import Sort, page
from admin_api.problems import Problem
from admin_api.registry import Registry
from admin_api.schemas import Empty, Model, Page, PageQuery
from certyard.renew_commands import (
    PassRunning,
    UsageError,
    entry_json,
    renewal_pass,
)
from renewal.config import RenewalSettings
from renewal.queue import QueueEntry, load_queue
from storage.models_renewal import RenewalAction, RenewalPolicyRow, RenewalRun

routes = Registry("Renewal")

RUN_SORT = Sort(columns={"started_at": RenewalRun.started_at}, id_column=RenewalRun.id)


REFUSAL = "the renewal queue spans every namespace; a namespace-bound principal cannot use it"


class QueueQuery(PageQuery):
    state: Literal["healthy", "renew-due", "at-risk", "expired", "revoked"] | None = None
    method: Literal["ari", "est", "ssh", "notify"] | None = None
    source: Literal["certyard", "scan", "ct"] | None = None
    due: bool | None = Field(default=None, description="true: only entries that need action")


class QueueEntryOut(BaseModel):
    key: str = Field(description="hex SHA-256 of the DER, or tbs:<hex> for a precertificate")
    priority: float
    state: str
    names: list[str]
    sources: list[str]
    requester: str | None
    certificate_id: str | None
    serial: str | None
    issuer: str
    not_before: dt.datetime
    not_after: dt.datetime
    days_left: float
    due_at: dt.datetime
    findings: list[str]
    exposure: int = Field(description="endpoints serving it")
    endpoints: list[str]
    tags: list[str]
    at_risk_reasons: list[str]
    policy: str
    method: str
    target: str | None
    needs_action: bool


class PolicyOut(BaseModel):
    name: str
    position: int = Field(description="evaluation order: the first match wins")
    match: dict[str, Any]
    renew_at_fraction: float | None
    renew_days_before: float | None
    method: str
    target: str | None
    owner: str | None
    at_risk: bool
    synced_at: dt.datetime = Field(description="when the last renewal pass stored it")


class PolicyList(BaseModel):
    items: list[PolicyOut]


class RunQuery(PageQuery):
    status: Literal["running", "done", "failed"] | None = None
    sort: Literal["started_at", "-started_at"] = "-started_at"


class ActionOut(BaseModel):
    certificate: str
    names: list[str]
    state: str
    method: str
    action: str
    outcome: str
    detail: str


class RunOut(BaseModel):
    run: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    status: str
    summary: dict[str, Any] | None
    actions: list[ActionOut]


class RunStart(Model):
    dry_run: bool = Field(default=False, description="true: report the actions, change nothing")


class PassOut(BaseModel):
    run: str | None = Field(description="the recorded run's id; null for a dry run")
    dry_run: bool
    summary: dict[str, Any]
    actions: list[ActionOut]


QueuePage = Page[QueueEntryOut]
RunPage = Page[RunOut]


def _cursor(offset: int, key: str) -> str:
    raw = json.dumps(["queue", offset, key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _start(cursor: str, entries: list[QueueEntry]) -> int:
    """Where the page after ``cursor`` starts: after the entry it names."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, offset, key = json.loads(raw)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise Problem(400, "the cursor is not one this API handed out") from None
    if kind != "queue" or not isinstance(offset, int) or not isinstance(key, str):
        raise Problem(400, "the cursor is not one this API handed out")
    if 0 < offset <= len(entries) and entries[offset - 1].item.key == key:
        return offset
    for index, entry in enumerate(entries):  # the queue was re-ranked since: find the entry
        if entry.item.key == key:
            return index + 1
    raise Problem(400, "the queue changed since this cursor was handed out; start again")


def _renewal_settings(call: Call[Any, Any]) -> RenewalSettings:
    settings = call.services.app_settings
    # Without the full configuration (an embedding that does not pass it): the defaults, i.e.
    # one default policy, which is what `certyard renew plan` shows with no [renewal] section.
    return settings.renewal if settings is not None else RenewalSettings()


@routes.route(
    "GET",
    "/renewal/queue",
    permission="renewal:read",
    summary="The risk-ranked renewal queue, most urgent first (filters, cursor pagination)",
    query=QueueQuery,
    response=QueuePage,
)
async def list_renewal_queue(call: Call[QueueQuery, None]) -> QueuePage:
    """What ``certyard renew plan --json`` prints, computed now."""
    require_global(call.principal, REFUSAL)
    q = call.query
    entries = await load_queue(call.services.sessions, _renewal_settings(call), call.now)
    if q.state is not None:
        entries = [e for e in entries if e.state == q.state]
    if q.method is not None:
        entries = [e for e in entries if e.policy.method == q.method]
    if q.source is not None:
        entries = [e for e in entries if q.source in e.item.sources]
    if q.due is not None:
        entries = [e for e in entries if e.needs_action == q.due]
    start = _start(q.cursor, entries) if q.cursor else 0
    limit = q.limit or call.services.settings.page_size
    chosen = entries[start : start + limit]
    end = start + len(chosen)
    cursor = _cursor(end, chosen[-1].item.key) if chosen and end < len(entries) else None
    return QueuePage(
        items=[QueueEntryOut.model_validate(entry_json(e)) for e in chosen], next_cursor=cursor
    )


@routes.route(
    "GET",
    "/renewal/policies",
    permission="renewal:read",
    summary="The renewal policies in evaluation order, as stored by the last renewal pass",
    response=PolicyList,
)
async def list_renewal_policies(call: Call[Empty, None]) -> PolicyList:
    """The ``renewal_policies`` table: every ``certyard renew run`` (and every pass started
    here) writes the configured policies there, so this shows what the last pass applied."""
    require_global(call.principal, REFUSAL)
    async with call.services.sessions() as session:
        rows = (
            await session.scalars(select(RenewalPolicyRow).order_by(RenewalPolicyRow.position))
        ).all()
    return PolicyList(
        items=[
            PolicyOut(
                name=r.name,
                position=r.position,
                match=dict(r.match),
                renew_at_fraction=r.renew_at_fraction,
                renew_days_before=r.renew_days_before,
                method=r.method,
                target=r.target,
                owner=r.owner,
                at_risk=r.at_risk,
                synced_at=r.updated_at,
            )
            for r in rows
        ]
    )


def _action_out(a: RenewalAction) -> ActionOut:
    return ActionOut(
        certificate=a.cert_key,
        names=[str(n) for n in a.names],
        state=a.state,
        method=a.method,
        action=a.action,
        outcome=a.outcome,
        detail=a.detail,
    )


@routes.route(
    "GET",
    "/renewal/runs",
    permission="renewal:read",
    summary="The history of renewal passes with their actions (cursor pagination)",
    query=RunQuery,
    response=RunPage,
)
async def list_renewal_runs(call: Call[RunQuery, None]) -> RunPage:
    """What ``certyard renew history --json`` prints."""
    require_global(call.principal, REFUSAL)
    q = call.query
    stmt = select(RenewalRun)
    if q.status is not None:
        stmt = stmt.where(RenewalRun.status == q.status)
    async with call.services.sessions() as session:
        runs, cursor = await page(
            session,
            stmt,
            RUN_SORT,
            sort=q.sort,
            cursor=q.cursor,
            limit=q.limit or call.services.settings.page_size,
        )
        by_run: dict[str, list[RenewalAction]] = {}
        if runs:
            actions = await session.scalars(
                select(RenewalAction)
                .where(RenewalAction.run_id.in_([r.id for r in runs]))
                .order_by(RenewalAction.id)
            )
            for action in actions:
                by_run.setdefault(action.run_id, []).append(action)
    return RunPage(
        items=[
            RunOut(
                run=r.id,
                started_at=r.started_at,
                finished_at=r.finished_at,
                status=r.status,
                summary=r.summary,
                actions=[_action_out(a) for a in by_run.get(r.id, [])],
            )
            for r in runs
        ],
        next_cursor=cursor,
    )


@routes.route(
    "POST",
    "/renewal/runs",
    permission="renewal:run",
    summary="Run one renewal pass now (dry_run: report the actions, change nothing)",
    body=RunStart,
    response=PassOut,
    errors=(409, 501),
)
async def start_renewal_run(call: Call[Empty, RunStart]) -> PassOut:
    """What ``certyard renew run [--dry-run] --json`` does; the pass runs before the answer."""
    require_global(call.principal, REFUSAL)
    settings = call.services.app_settings
    if settings is None:
        raise Problem(501, "this admin listener was started without the renewal configuration")
    dry_run = call.body.dry_run
    call.audit["dry_run"] = dry_run
    sessions = call.services.sessions
    try:
        # One real pass at a time, whoever started it (certyard.renew_commands.RUN_LEASE).
        result = await renewal_pass(settings, sessions, dry_run=dry_run)
    except PassRunning as exc:
        raise Problem(409, str(exc)) from None
    except UsageError as exc:  # the [notify] configuration cannot be used: nothing was done
        raise Problem(503, f"the renewal pass cannot start: {exc}") from None
    call.audit["run"] = result.run_id
    call.audit["actions"] = len(result.actions)
    return PassOut(
        run=result.run_id,
        dry_run=result.dry_run,
        summary=result.summary(),
        actions=[
            ActionOut(
                certificate=a.cert_key,
                names=list(a.names),
                state=a.state,
                method=a.method,
                action=a.action,
                outcome=a.outcome,
                detail=a.detail,
            )
            for a in result.actions
        ],
    )
