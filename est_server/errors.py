"""EST errors: plain text with the status codes RFC 7030 gives (the second tier of errors).

Handlers raise :class:`EstError`; :func:`from_ca_error` turns the CA's one error type into one,
keeping the CA's detail only where it tells the client what to fix (malformed, policy) and
dropping it (it stays in the logs) where it would leak internals.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from ca.errors import CAError

# RFC 7030 §4.2.3: 503 with Retry-After when the CA cannot answer now.
RETRY_AFTER_SECONDS = 30


class EstError(Exception):
    def __init__(self, status: int, text: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {text}")
        self.status = status
        self.text = text
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        # RFC 7030 §4.2.3: an error response MAY carry a human-readable text/plain body.
        return web.Response(
            status=self.status,
            text=self.text + "\n",
            content_type="text/plain",
            headers=self.headers,
        )


def from_ca_error(error: CAError) -> EstError:
    if error.kind == "malformed":
        return EstError(400, f"bad request: {error.detail}")
    if error.kind == "policy":
        return EstError(403, f"refused by policy: {error.detail}")
    if error.kind == "not_found":
        return EstError(404, "not found")
    if error.kind == "conflict":
        return EstError(409, "conflict with the current state")
    if error.kind == "unavailable":
        return EstError(
            503,
            "the CA is unavailable right now; retry later",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    return EstError(500, "internal error (logged by the server)")
