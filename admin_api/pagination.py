"""Cursor (keyset) pagination, sorting and export over SQLAlchemy queries.

The cursor is opaque to clients: base64url of the sort key and the last row's (sort value, id).
Keyset rather than OFFSET: a page does not shift when rows are added before it, and a deep page
costs what the first does.
"""

from __future__ import annotations

import base64
import binascii
import csv
import datetime as dt
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy import Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from admin_api.problems import Problem


@dataclass(frozen=True)
class Sort:
    """The sortable columns of one list (non-null columns only: keyset needs a total order)."""

    columns: Mapping[str, InstrumentedAttribute[Any]]
    id_column: InstrumentedAttribute[Any]

    def options(self) -> list[str]:
        return [p + name for name in self.columns for p in ("", "-")]


def _encode(sort: str, value: Any, last_id: Any) -> str:
    if isinstance(value, dt.datetime):
        value = {"t": value.isoformat()}
    raw = json.dumps([sort, value, last_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str, sort: str) -> tuple[Any, Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        got_sort, value, last_id = json.loads(raw)
        if isinstance(value, dict):
            value = dt.datetime.fromisoformat(value["t"])
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError):
        raise Problem(400, "the cursor is not one this API handed out") from None
    if got_sort != sort:
        raise Problem(400, "the cursor belongs to another sort order; start again without it")
    if not isinstance(last_id, (str, int)) or isinstance(value, (list, dict)):
        raise Problem(400, "the cursor is not one this API handed out")
    return value, last_id


def ordered(stmt: Select[Any], spec: Sort, sort: str) -> Select[Any]:
    descending = sort.startswith("-")
    column = spec.columns[sort.lstrip("-")]
    if descending:
        return stmt.order_by(column.desc(), spec.id_column.desc())
    return stmt.order_by(column.asc(), spec.id_column.asc())


async def page(
    session: AsyncSession,
    stmt: Select[Any],
    spec: Sort,
    *,
    sort: str,
    cursor: str | None,
    limit: int,
) -> tuple[Sequence[Any], str | None]:
    """One page of ``stmt`` (selecting one ORM entity) and the cursor of the next one."""
    name = sort.lstrip("-")
    column = spec.columns[name]
    if cursor:
        value, last_id = _decode(cursor, sort)
        if sort.startswith("-"):
            after = or_(column < value, and_(column == value, spec.id_column < last_id))
        else:
            after = or_(column > value, and_(column == value, spec.id_column > last_id))
        stmt = stmt.where(after)
    rows = (await session.execute(ordered(stmt, spec, sort).limit(limit + 1))).scalars().all()
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], _encode(sort, getattr(last, name), getattr(last, spec.id_column.key))


def export_response(
    fmt: str,
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    filename: str,
    truncated: bool,
) -> web.Response:
    """The rows as CSV (RFC 4180) or a JSON array, as a download."""
    headers = {"Content-Disposition": f'attachment; filename="{filename}.{fmt}"'}
    if truncated:
        headers["X-Certyard-Truncated"] = "true"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180 §2: CRLF line breaks
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in columns])
        return web.Response(
            text=out.getvalue(), content_type="text/csv", charset="utf-8", headers=headers
        )
    return web.json_response(list(rows), headers=headers)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    text = str(value)
    # A cell starting with = + - @ is a formula to spreadsheet programs (CSV injection, OWASP):
    # such cells get a leading quote. Plain tokens starting with "-" (random base64url ids)
    # are left alone: without operators or parentheses they compute nothing.
    if text[:1] in ("=", "+", "@") or (text[:1] == "-" and not _TOKEN.match(text)):
        return "'" + text
    return text


_TOKEN = re.compile(r"^[-\w.:]+$")
