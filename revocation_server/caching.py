"""HTTP caching headers shared by the CRL and OCSP handlers (RFC 9111, RFC 5019 §6.2)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from email.utils import format_datetime

from aiohttp import web


def http_date(moment: datetime) -> str:
    """An IMF-fixdate (RFC 9110 §5.6.7)."""
    return format_datetime(moment, usegmt=True)


def etag(body: bytes) -> str:
    """A strong entity tag: a hash of the exact bytes (RFC 5019 §6.2 suggests one)."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def seconds_until(moment: datetime, now: datetime) -> int:
    return max(0, int((moment - now) / timedelta(seconds=1)))


def not_modified(request: web.Request, tag: str) -> bool:
    """True when a conditional GET already holds this representation (RFC 9110 §13.1.2)."""
    wanted = request.headers.get("If-None-Match")
    if wanted is None:
        return False
    return wanted.strip() == "*" or tag in (part.strip() for part in wanted.split(","))


def respond(
    request: web.Request, body: bytes, content_type: str, headers: dict[str, str]
) -> web.Response:
    """``body`` with ``headers`` and an ETag, or 304 Not Modified with the same headers."""
    tag = etag(body)
    all_headers = {**headers, "ETag": tag}
    if request.method in ("GET", "HEAD") and not_modified(request, tag):
        return web.Response(status=304, headers=all_headers)
    return web.Response(body=body, content_type=content_type, headers=all_headers)
