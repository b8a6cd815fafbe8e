"""Chrome / Apple v3 log list (https://www.gstatic.com/ct/log_list/v3/log_list_schema.json).

``operators[].logs[]`` are RFC 6962 logs (``url``); ``operators[].tiled_logs[]`` are
static-ct-api logs (``submission_url`` + ``monitoring_url``). Each log has a base64 DER SPKI
``key``, a base64 ``log_id`` (= SHA-256 of the key, RFC 6962 §3.2, checked here), ``mmd`` in
seconds and a ``state`` object with exactly one of pending / qualified / usable / readonly /
retired / rejected.

Logs whose state is not in ``[ct] log_states`` are skipped (``LogList.skipped`` says why), as are
entries that are malformed (``LogList.problems``): one broken log must not hide the others.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import aiohttp

from ct_monitor.config import CTSettings
from ct_monitor.httpclient import BodyTooLarge, read_body, user_agent
from ct_monitor.types import LogDescription, LogKind

MAX_LOG_LIST_BYTES = 16 << 20
T = TypeVar("T")
STATES = ("pending", "qualified", "usable", "readonly", "retired", "rejected")


class LogListError(ValueError):
    """The log list cannot be read or is not a v3 log list; the message says why."""


@dataclass(slots=True)
class LogList:
    logs: list[LogDescription]
    version: str = ""
    timestamp: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (url, reason)
    problems: list[str] = field(default_factory=list)


def normalise_url(url: str) -> str:
    """Log URLs identify logs everywhere: always with a trailing '/'."""
    url = url.strip()
    return url if url.endswith("/") else url + "/"


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not base64") from None


def _state(entry: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    state = entry.get("state")
    if not isinstance(state, dict) or not state:
        return "unknown", {}
    names = [k for k in state if k in STATES]
    if len(names) != 1:
        raise ValueError(f"state must have exactly one of {', '.join(STATES)}")
    detail = state[names[0]]
    return names[0], detail if isinstance(detail, dict) else {}


def _pick(override: T | None, default: T) -> T:
    return default if override is None else override


def _describe(
    entry: Any, kind: LogKind, operator: str, settings: CTSettings
) -> LogDescription | tuple[str, str]:
    """A LogDescription, or (url, reason) when the log is skipped for its state."""
    if not isinstance(entry, dict):
        raise ValueError("log entry is not an object")
    if kind == "rfc6962":
        url = entry.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError("url missing or not http(s)")
        url = normalise_url(url)
        submission = monitoring = ""
    else:
        urls = []
        for name in ("submission_url", "monitoring_url"):
            value = entry.get(name)
            if not isinstance(value, str) or not value.startswith(("http://", "https://")):
                raise ValueError(f"{name} missing or not http(s)")
            urls.append(normalise_url(value))
        submission, monitoring = urls
        url = monitoring
    try:
        key = _b64(entry.get("key"), "key")
        log_id = _b64(entry.get("log_id"), "log_id")
        if hashlib.sha256(key).digest() != log_id:
            raise ValueError("log_id is not the SHA-256 of key")
        state, state_detail = _state(entry)
    except ValueError as exc:
        raise ValueError(f"{url}: {exc}") from None
    if state not in settings.log_states:
        return url, f"state {state}"
    mmd = entry.get("mmd", 86400)
    if not isinstance(mmd, int) or isinstance(mmd, bool) or mmd < 0:
        raise ValueError(f"{url}: mmd is not a non-negative integer")
    over = settings.overrides.get(url) or settings.overrides.get(url.rstrip("/"))
    extra: dict[str, str] = {}
    final = state_detail.get("final_tree_head")
    if isinstance(final, dict) and isinstance(final.get("tree_size"), int):
        extra["final_tree_size"] = str(final["tree_size"])
        extra["final_root_hash"] = str(final.get("sha256_root_hash", ""))
    description = entry.get("description")
    return LogDescription(
        url=url,
        kind=kind,
        key_der=key,
        log_id=log_id,
        mmd=mmd,
        description=description if isinstance(description, str) else "",
        operator=operator,
        state=state,
        submission_url=submission,
        monitoring_url=monitoring,
        batch_size=_pick(over.batch_size if over else None, settings.default_batch_size),
        parallel_downloads=_pick(
            over.parallel_downloads if over else None, settings.default_parallel_downloads
        ),
        requests_per_second=_pick(
            over.requests_per_second if over else None, settings.default_requests_per_second
        ),
        extra=extra,
    )


def parse_log_list(data: bytes, settings: CTSettings) -> LogList:
    """Parse a v3 log list; the logs to watch with per-log overrides applied."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LogListError(f"log list is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("operators"), list):
        raise LogListError("log list has no operators array (not a v3 log list)")
    result = LogList(
        logs=[],
        version=str(doc.get("version", "")),
        timestamp=str(doc.get("log_list_timestamp", "")),
    )
    seen: set[str] = set()
    for op in doc["operators"]:
        if not isinstance(op, dict):
            result.problems.append("operator entry is not an object")
            continue
        operator = str(op.get("name", ""))
        for list_name, kind in (("logs", "rfc6962"), ("tiled_logs", "tiled")):
            entries = op.get(list_name, [])
            if not isinstance(entries, list):
                result.problems.append(f"operator {operator!r}: {list_name} is not an array")
                continue
            for entry in entries:
                try:
                    described = _describe(entry, kind, operator, settings)  # type: ignore[arg-type]
                except ValueError as exc:
                    result.problems.append(f"operator {operator!r}: {exc}")
                    continue
                if isinstance(described, tuple):
                    result.skipped.append(described)
                elif described.url in seen:
                    result.problems.append(f"{described.url}: listed twice; first one kept")
                else:
                    seen.add(described.url)
                    result.logs.append(described)
    return result


async def fetch_log_list_bytes(source: str, settings: CTSettings) -> bytes:
    """The raw log list from a file path, a file:// URL or an http(s) URL."""
    if source.startswith(("http://", "https://")):
        headers = {"User-Agent": user_agent(settings.user_agent_contact)}
        timeout = aiohttp.ClientTimeout(total=settings.http_timeout_seconds)
        try:
            async with (
                aiohttp.ClientSession(headers=headers, timeout=timeout) as session,
                session.get(source) as resp,
            ):
                if resp.status != 200:
                    raise LogListError(f"log list {source}: HTTP {resp.status}")
                return await read_body(resp, MAX_LOG_LIST_BYTES)
        except BodyTooLarge as exc:
            raise LogListError(f"log list {source}: {exc}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LogListError(f"log list {source}: {type(exc).__name__}: {exc}") from None
    path = Path(unquote(urlsplit(source).path)) if source.startswith("file://") else Path(source)
    try:
        with path.open("rb") as fh:
            body = fh.read(MAX_LOG_LIST_BYTES + 1)
    except OSError as exc:
        raise LogListError(f"log list {path}: {exc.strerror or exc}") from None
    if len(body) > MAX_LOG_LIST_BYTES:
        raise LogListError(f"log list {path}: larger than {MAX_LOG_LIST_BYTES} bytes")
    return body


async def load_log_list(settings: CTSettings, source: str | None = None) -> LogList:
    """Read and parse the log list from ``source`` (default ``settings.log_list``)."""
    src = source or settings.log_list
    return parse_log_list(await fetch_log_list_bytes(src, settings), settings)


class LogListSource:
    """The log list, re-read every ``log_list_refresh_seconds``.

    A refresh that fails keeps the previous list (``last_error`` says why): a log list host
    being down must not stop the monitoring of logs already known. The first read has nothing
    to fall back on and raises ``LogListError``.
    """

    def __init__(
        self,
        settings: CTSettings,
        source: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.source = source or settings.log_list
        self.clock = clock
        self.current: LogList | None = None
        self.loaded_at = 0.0
        self.last_error: str | None = None

    def due(self) -> bool:
        return (
            self.current is None
            or self.clock() - self.loaded_at >= self.settings.log_list_refresh_seconds
        )

    async def get(self) -> LogList:
        """The current list, refreshed first when due."""
        if self.due():
            try:
                self.current = await load_log_list(self.settings, self.source)
                self.last_error = None
            except LogListError as exc:
                if self.current is None:
                    raise
                self.last_error = str(exc)
            self.loaded_at = self.clock()
        assert self.current is not None
        return self.current
