"""Browser sessions of the web pages: a random id in a cookie, the credential on the server.

The cookie holds only an opaque 256-bit session id (HttpOnly, SameSite=Strict, Secure when the
listener speaks TLS); the pasted API token or OIDC token stays in this process's memory. Two
reasons: an OIDC ID token can exceed the ~4 KiB a browser keeps per cookie (RFC 6265 §6.1), and
a cookie stolen from a browser profile is useless once the session ends here. Every request
re-authenticates the stored token, so an expired or revoked token ends the session at once.

Sessions live in memory: a restart (or another instance) means signing in again.
The CSRF token of a session is the synchronizer-token pattern (OWASP CSRF Prevention Cheat
Sheet): a random value kept with the session and echoed in every form.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections import OrderedDict
from dataclasses import dataclass

from aiohttp import web

COOKIE = "certyard_session"
COOKIE_PATH = "/ui/"
IDLE = dt.timedelta(hours=2)
ABSOLUTE = dt.timedelta(hours=12)
MAX_SESSIONS = 10_000


@dataclass
class Session:
    token: str
    csrf: str
    created: dt.datetime
    last_seen: dt.datetime


class SessionStore:
    def __init__(self) -> None:
        # Oldest first: past MAX_SESSIONS the least recently used session is dropped.
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def create(self, token: str, now: dt.datetime) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(token=token, csrf=secrets.token_urlsafe(32), created=now, last_seen=now)
        self._sessions[sid] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return sid, session

    def get(self, sid: str | None, now: dt.datetime) -> Session | None:
        if not sid:
            return None
        session = self._sessions.get(sid)
        if session is None:
            return None
        if now - session.last_seen > IDLE or now - session.created > ABSOLUTE:
            del self._sessions[sid]
            return None
        session.last_seen = now
        self._sessions.move_to_end(sid)
        return session

    def drop(self, sid: str | None) -> None:
        if sid:
            self._sessions.pop(sid, None)


def set_cookie(response: web.StreamResponse, request: web.Request, sid: str) -> None:
    response.set_cookie(
        COOKIE,
        sid,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        max_age=int(ABSOLUTE.total_seconds()),
    )


def clear_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path=COOKIE_PATH)


def check_csrf(session: Session, submitted: str | None) -> bool:
    return bool(submitted) and secrets.compare_digest(session.csrf, submitted or "")
