"""The audit trail through the API (docs/audit.md, docs/admin-api.md "Audit events"): list and
read entries, export them for a SIEM, verify the chain.

Permission ``audit:read`` (auditor, admin). The trail is one chain for the whole installation,
not split by namespace, so a namespace-bound principal is refused: its entries name other
teams' certificates and actors.

The export answers JSON lines (``application/x-ndjson``, the form ``certyard audit export``
writes) when the client asks for it with ``Accept: application/x-ndjson``; otherwise the JSON
array or CSV (``?format=``) every other export of this API answers. It is content negotiation
(RFC 9110 §12.5.1) rather than a ``?format=ndjson`` because the OpenAPI document describes an
export as JSON or CSV; the JSON-lines stream is not bounded by ``admin.export_max_rows``: a
SIEM pulls everything after the last sequence number it holds (``?after=SEQ``).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import Select, select

from admin_api.context import Call
from admin_api.namespaces import require_global
from admin_api.pagination import Sort, export_response, page
from admin_api.problems import Problem
from admin_api.registry import Registry
from admin_api.schemas import Empty, ExportFormat, Model, Page, PageQuery, ShortText, Text
from audit.chain import AuditEntry
from audit.errors import AuditError
from audit.trail import entry_of
from audit.verify import backend_confirmer, trusted_keys, verify_trail
from storage.models_audit import AuditEntryRow

routes = Registry("Audit")

NDJSON = "application/x-ndjson"
SORT = Sort(columns={"seq": AuditEntryRow.seq}, id_column=AuditEntryRow.seq)
# Sequence numbers are BIGINT: a bound past it would be a database error, not an empty answer.
MAX_SEQ = 2**62
Seq = Annotated[int, Field(ge=0, le=MAX_SEQ)]
EXPORT_COLUMNS = (
    "seq",
    "time",
    "actor",
    "action",
    "target",
    "outcome",
    "request_id",
    "details",
    "prev_hash",
    "entry_hash",
)


class AuditFilter(Model):
    actor: ShortText | None = Field(default=None, description="exact actor, e.g. token:<id>")
    action: ShortText | None = Field(
        default=None, description="exact action, or a prefix ending in * (tokens.*)"
    )
    target: Text | None = Field(default=None, description="exact target, or a prefix ending in *")
    outcome: ShortText | None = Field(
        default=None, description="success, failure, denied, requested ..."
    )
    request_id: ShortText | None = Field(default=None, description="the X-Request-Id")
    since: dt.datetime | None = Field(default=None, description="time >= this (UTC if no zone)")
    until: dt.datetime | None = Field(default=None, description="time < this (UTC if no zone)")
    seq_from: Seq | None = Field(default=None, description="seq >= this")
    seq_to: Seq | None = Field(default=None, description="seq <= this")


class AuditQuery(AuditFilter, PageQuery):
    sort: Literal["seq", "-seq"] = "seq"


class AuditExportQuery(AuditFilter, ExportFormat):
    after: Seq = Field(default=0, description="entries with seq > this (certyard audit export)")


class AuditEventOut(BaseModel):
    seq: int
    time: dt.datetime
    actor: str
    action: str
    target: str
    outcome: str
    details: dict[str, Any]
    request_id: str | None
    prev_hash: str
    entry_hash: str


class BreakOut(BaseModel):
    seq: int
    problem: str


class VerifyOut(BaseModel):
    ok: bool
    entries: int = Field(description="entries checked")
    checkpoints: int = Field(description="signed checkpoints checked")
    broken: BreakOut | None = Field(description="the first broken entry; null when ok")


AuditPage = Page[AuditEventOut]


REFUSAL = "the audit trail spans every namespace; a namespace-bound principal cannot read it"


def _utc(when: dt.datetime) -> dt.datetime:
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def _match(column: Any, wanted: str) -> Any:
    if wanted.endswith("*"):
        return column.startswith(wanted[:-1], autoescape=True)
    return column == wanted


def _filtered(q: AuditFilter) -> Select[Any]:
    stmt = select(AuditEntryRow)
    if q.actor is not None:
        stmt = stmt.where(AuditEntryRow.actor == q.actor)
    if q.action is not None:
        stmt = stmt.where(_match(AuditEntryRow.action, q.action))
    if q.target is not None:
        stmt = stmt.where(_match(AuditEntryRow.target, q.target))
    if q.outcome is not None:
        stmt = stmt.where(AuditEntryRow.outcome == q.outcome)
    if q.request_id is not None:
        stmt = stmt.where(AuditEntryRow.request_id == q.request_id)
    if q.since is not None:
        stmt = stmt.where(AuditEntryRow.time >= _utc(q.since))
    if q.until is not None:
        stmt = stmt.where(AuditEntryRow.time < _utc(q.until))
    if q.seq_from is not None:
        stmt = stmt.where(AuditEntryRow.seq >= q.seq_from)
    if q.seq_to is not None:
        stmt = stmt.where(AuditEntryRow.seq <= q.seq_to)
    return stmt


def _out(entry: AuditEntry) -> AuditEventOut:
    return AuditEventOut(
        seq=entry.seq,
        time=entry.time,
        actor=entry.actor,
        action=entry.action,
        target=entry.target,
        outcome=entry.outcome,
        details=entry.details,
        request_id=entry.request_id,
        prev_hash=entry.prev_hash,
        entry_hash=entry.entry_hash,
    )


@routes.route(
    "GET",
    "/audit/events",
    permission="audit:read",
    summary="Search the audit trail (filters, cursor pagination, sorted by seq)",
    query=AuditQuery,
    response=AuditPage,
)
async def list_audit_events(call: Call[AuditQuery, None]) -> AuditPage:
    require_global(call.principal, REFUSAL)
    q = call.query
    async with call.services.sessions() as session:
        rows, cursor = await page(
            session,
            _filtered(q),
            SORT,
            sort=q.sort,
            cursor=q.cursor,
            limit=q.limit or call.services.settings.page_size,
        )
    return AuditPage(items=[_out(entry_of(r)) for r in rows], next_cursor=cursor)


@routes.route(
    "GET",
    "/audit/events/{seq}",
    permission="audit:read",
    summary="One audit entry by sequence number",
    response=AuditEventOut,
)
async def get_audit_event(call: Call[Empty, None]) -> AuditEventOut:
    require_global(call.principal, REFUSAL)
    raw = call.path["seq"]
    if not raw.isdigit() or int(raw) > MAX_SEQ:
        raise Problem(404, f"no audit entry {raw}")
    async with call.services.sessions() as session:
        row = await session.get(AuditEntryRow, int(raw))
    if row is None:
        raise Problem(404, f"no audit entry {raw}")
    return _out(entry_of(row))


def _wants_ndjson(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return any(part.split(";")[0].strip().lower() == NDJSON for part in accept.split(","))


@routes.route(
    "GET",
    "/audit/export",
    permission="audit:read",
    summary="Export audit entries: JSON lines (Accept: application/x-ndjson), JSON or CSV",
    query=AuditExportQuery,
    response=AuditEventOut,
    export=True,
)
async def export_audit_events(call: Call[AuditExportQuery, None]) -> Any:
    require_global(call.principal, REFUSAL)
    q = call.query
    stmt = _filtered(q).where(AuditEntryRow.seq > q.after).order_by(AuditEntryRow.seq)
    if _wants_ndjson(call.request):
        return await _stream_lines(call, stmt)
    limit = call.services.settings.export_max_rows
    async with call.services.sessions() as session:
        rows = list((await session.execute(stmt.limit(limit + 1))).scalars())
    data = [_out(entry_of(r)).model_dump(mode="json") for r in rows[:limit]]
    if q.format == "csv":
        for item in data:  # one cell: the details as JSON
            item["details"] = json.dumps(item["details"], sort_keys=True, ensure_ascii=False)
    return export_response(q.format, data, EXPORT_COLUMNS, "audit", len(rows) > limit)


async def _stream_lines(
    call: Call[AuditExportQuery, None], stmt: Select[Any]
) -> web.StreamResponse:
    """Every matching entry, one ``AuditEntry.to_json()`` a line (what ``certyard audit
    export`` writes), read in batches so a long trail is not held in memory."""
    response = web.StreamResponse(
        headers={"Content-Disposition": 'attachment; filename="audit.jsonl"'}
    )
    response.content_type = NDJSON
    response.charset = "utf-8"
    batch = 500
    last = call.query.after
    prepared = False
    while True:
        async with call.services.sessions() as session:
            rows = list(
                (await session.execute(stmt.where(AuditEntryRow.seq > last).limit(batch))).scalars()
            )
        if not prepared:
            # Headers go out after the first read: a database error is still a problem document.
            await response.prepare(call.request)
            prepared = True
        if not rows:
            break
        lines = "".join(
            json.dumps(entry_of(r).to_json(), ensure_ascii=False, sort_keys=True) + "\n"
            for r in rows
        )
        await response.write(lines.encode("utf-8"))
        last = rows[-1].seq
    await response.write_eof()
    return response


@routes.route(
    "GET",
    "/audit/verify",
    permission="audit:read",
    summary="Verify the whole chain and its signed checkpoints; names the first broken entry",
    response=VerifyOut,
)
async def verify_audit_trail(call: Call[Empty, None]) -> VerifyOut:
    require_global(call.principal, REFUSAL)
    sessions = call.services.sessions
    backend = call.services.key_backend
    try:
        if backend is not None:
            keys = await trusted_keys(sessions, backend_confirmer(backend))
        else:
            keys = {}  # checkpoints then show as signed by an unknown key
        result = await verify_trail(sessions, keys)
    except AuditError as exc:
        raise Problem(503, f"the audit trail cannot be verified now: {exc.detail}") from None
    broken = result.broken
    return VerifyOut(
        ok=result.ok,
        entries=result.entries,
        checkpoints=result.checkpoints,
        broken=None if broken is None else BreakOut(seq=broken.seq, problem=broken.problem),
    )
