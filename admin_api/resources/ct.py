"""The Certificate Transparency monitor through the API (docs/ct.md, docs/admin-api.md
"CT watch list and matches"): the watch list, the matches, per-log progress.

What ``certyard ct watch|matches|status`` does, on the same tables (ct_monitor/state.py CTStore).
The watch list and the logs are one set for the whole installation, not per team, so a
namespace-bound principal is refused (403) like for the audit trail.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import String, cast, select

from admin_api.context import Call
from admin_api.namespaces import require_global
from admin_api.pagination import Sort, page
from admin_api.problems import Problem
from admin_api.registry import Registry
from admin_api.schemas import Empty, Model, Page, PageQuery, ShortText
from ct_monitor.monitor import status_of
from ct_monitor.state import CTStore
from ct_monitor.watchlist import WatchListError, parse_watch_item
from storage.models_ct import CTMatch, CTWatch

routes = Registry("CT")

WATCH_SORT = Sort(columns={"pattern": CTWatch.pattern}, id_column=CTWatch.pattern)
MATCH_SORT = Sort(columns={"id": CTMatch.id}, id_column=CTMatch.id)
# A DNS name (253) plus the leading dot of a domain entry; Unicode allowed (stored as A-labels).
WatchText = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]*$")
]


REFUSAL = "the CT monitor serves every namespace; a namespace-bound principal cannot use it"


class WatchOut(BaseModel):
    pattern: str = Field(description="example.com (one name) or .example.com (domain + subdomains)")
    created_at: dt.datetime


class WatchAdd(Model):
    pattern: WatchText = Field(description="example.com, or .example.com for a whole domain")


class WatchAdded(BaseModel):
    pattern: str = Field(description="the stored (normalised, A-label) form")
    added: bool = Field(description="false: it was already watched")


class WatchQuery(PageQuery):
    sort: Literal["pattern", "-pattern"] = "pattern"


class MatchQuery(PageQuery):
    name: ShortText | None = Field(default=None, description="a name containing this text")
    finding: Literal["ct_unknown_issuance", "none"] | None = Field(
        default=None, description="ct_unknown_issuance, or none for matches without a finding"
    )
    entry_type: Literal["x509", "precert"] | None = None
    since: dt.datetime | None = Field(default=None, description="found at or after (UTC)")
    sort: Literal["id", "-id"] = "-id"


class MatchOut(BaseModel):
    id: int
    log_url: str
    index: int = Field(description="the entry's index in the log")
    entry_type: str
    names: list[str]
    issuer: str
    serial: str | None
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    tbs_sha256: str
    cert_sha256: str | None
    finding: str | None
    notes: list[str]
    created_at: dt.datetime
    notified_at: dt.datetime | None


class LogOut(BaseModel):
    log_url: str
    kind: str = Field(description="rfc6962 or tiled")
    tree_size: int = Field(description="the size of the latest signed tree head seen")
    position: int = Field(description="entries downloaded and processed")
    verified_size: int = Field(description="entries whose Merkle root was recomputed")
    lag: int = Field(description="tree_size - verified_size")
    last_success: dt.datetime | None
    last_error: str | None


class LogList(BaseModel):
    items: list[LogOut]


WatchPage = Page[WatchOut]
MatchPage = Page[MatchOut]


def _utc(when: dt.datetime) -> dt.datetime:
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


@routes.route(
    "GET",
    "/ct/watch",
    permission="ct:read",
    summary="The CT watch list (cursor pagination)",
    query=WatchQuery,
    response=WatchPage,
)
async def list_ct_watch(call: Call[WatchQuery, None]) -> WatchPage:
    require_global(call.principal, REFUSAL)
    q = call.query
    async with call.services.sessions() as session:
        rows, cursor = await page(
            session,
            select(CTWatch),
            WATCH_SORT,
            sort=q.sort,
            cursor=q.cursor,
            limit=q.limit or call.services.settings.page_size,
        )
    return WatchPage(
        items=[WatchOut(pattern=r.pattern, created_at=r.created_at) for r in rows],
        next_cursor=cursor,
    )


@routes.route(
    "POST",
    "/ct/watch",
    permission="ct:manage",
    summary="Watch a name (example.com) or a domain and its subdomains (.example.com)",
    body=WatchAdd,
    response=WatchAdded,
)
async def add_ct_watch(call: Call[Empty, WatchAdd]) -> WatchAdded:
    require_global(call.principal, REFUSAL)
    try:
        pattern = parse_watch_item(call.body.pattern).pattern
    except WatchListError as exc:
        raise Problem(400, str(exc)) from None
    _, added = await CTStore(call.services.sessions, call.services.clock).watch_add(pattern)
    call.audit["pattern"] = pattern
    call.audit["added"] = added
    return WatchAdded(pattern=pattern, added=added)


@routes.route(
    "DELETE",
    "/ct/watch/{pattern}",
    permission="ct:manage",
    summary="Stop watching a name or domain (404 when it is not watched)",
)
async def remove_ct_watch(call: Call[Empty, None]) -> None:
    require_global(call.principal, REFUSAL)
    raw = call.path["pattern"]
    try:
        pattern = parse_watch_item(raw).pattern
    except WatchListError:
        # Nothing unparseable can be on the list: the answer is "not watched".
        raise Problem(404, f"{raw!r} is not watched") from None
    _, removed = await CTStore(call.services.sessions, call.services.clock).watch_remove(pattern)
    call.audit["pattern"] = pattern
    if not removed:
        raise Problem(404, f"{pattern!r} is not watched")


@routes.route(
    "GET",
    "/ct/matches",
    permission="ct:read",
    summary="Certificates found in CT logs for watched names (filters, cursor pagination)",
    query=MatchQuery,
    response=MatchPage,
)
async def list_ct_matches(call: Call[MatchQuery, None]) -> MatchPage:
    require_global(call.principal, REFUSAL)
    q = call.query
    stmt = select(CTMatch)
    if q.name is not None:
        # names is a JSON array of A-label (ASCII) names: a substring of its text form is a
        # substring of one of the names, or spans two of them only through '", "'.
        stmt = stmt.where(
            cast(CTMatch.names, String).contains(q.name.strip().lower(), autoescape=True)
        )
    if q.finding == "none":
        stmt = stmt.where(CTMatch.finding.is_(None))
    elif q.finding is not None:
        stmt = stmt.where(CTMatch.finding == q.finding)
    if q.entry_type is not None:
        stmt = stmt.where(CTMatch.entry_type == q.entry_type)
    if q.since is not None:
        stmt = stmt.where(CTMatch.created_at >= _utc(q.since))
    async with call.services.sessions() as session:
        rows, cursor = await page(
            session,
            stmt,
            MATCH_SORT,
            sort=q.sort,
            cursor=q.cursor,
            limit=q.limit or call.services.settings.page_size,
        )
    return MatchPage(items=[_match_out(r) for r in rows], next_cursor=cursor)


def _match_out(row: CTMatch) -> MatchOut:
    return MatchOut(
        id=row.id,
        log_url=row.log_url,
        index=row.entry_index,
        entry_type=row.entry_type,
        names=[str(n) for n in row.names],
        issuer=row.issuer,
        serial=row.serial,
        not_before=row.not_before,
        not_after=row.not_after,
        tbs_sha256=row.tbs_sha256,
        cert_sha256=row.cert_sha256,
        finding=row.finding,
        notes=[str(n) for n in row.notes or []],
        created_at=row.created_at,
        notified_at=row.notified_at,
    )


@routes.route(
    "GET",
    "/ct/logs",
    permission="ct:read",
    summary="Per CT log: tree size, position, verified size, lag, last error",
    response=LogList,
)
async def list_ct_logs(call: Call[Empty, None]) -> LogList:
    """What ``certyard ct status --json`` prints, one item per log the monitor has state for."""
    require_global(call.principal, REFUSAL)
    states = await CTStore(call.services.sessions, call.services.clock).all_states()
    items = []
    for state in states:
        st = status_of(state)
        items.append(
            LogOut(
                log_url=st.log_url,
                kind=st.kind,
                tree_size=st.tree_size,
                position=st.position,
                verified_size=st.verified_size,
                lag=st.lag,
                last_success=st.last_success,
                last_error=st.last_error,
            )
        )
    return LogList(items=items)
