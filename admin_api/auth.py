"""Who is calling: an API token or an OIDC bearer token (RFC 6750 ``Authorization: Bearer``).

A failure is a 401 problem with ``WWW-Authenticate: Bearer`` and ``error="invalid_token"``
(RFC 6750 §3); the reason goes in the problem detail, the token itself is never logged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from admin_api import tokens
from admin_api.oidc import OidcError, OidcVerifier
from admin_api.problems import Problem

REALM = "certyard-admin"
MAX_TOKEN_LENGTH = 8192


@dataclass(frozen=True)
class Principal:
    actor: str  # "token:<id>" or "oidc:<sub>": what the audit trail records
    role: str
    namespace: str | None  # None: every namespace
    scopes: tuple[str, ...] = ()


def unauthorized(detail: str, *, invalid: bool = True) -> Problem:
    challenge = f'Bearer realm="{REALM}"'
    if invalid:
        challenge += ', error="invalid_token"'
    return Problem(401, detail, headers={"WWW-Authenticate": challenge})


class Authenticator:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        oidc: OidcVerifier | None,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self._sessions = sessions
        self._oidc = oidc
        self._clock = clock

    async def authenticate(self, request: web.Request) -> Principal:
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        if not header:
            # RFC 6750 §3.1: no error code when the request carried no credentials at all.
            raise unauthorized("this API needs Authorization: Bearer <token>", invalid=False)
        credentials = credentials.strip()
        if scheme.lower() != "bearer" or not credentials:
            raise unauthorized("the Authorization header must be 'Bearer <token>'")
        if len(credentials) > MAX_TOKEN_LENGTH:
            raise unauthorized("the token is too long")
        if credentials.startswith(tokens.PREFIX):
            row = await tokens.lookup(self._sessions, credentials, self._clock())
            if row is None:
                raise unauthorized("unknown, expired or revoked API token")
            return Principal(
                actor=f"token:{row.id}",
                role=row.role,
                namespace=row.namespace,
                scopes=tuple(row.scopes),
            )
        if self._oidc is not None and self._oidc.enabled:
            try:
                identity = await self._oidc.verify(credentials)
            except OidcError as exc:
                raise unauthorized(str(exc)) from None
            return Principal(
                actor=f"oidc:{identity.subject}"[:255],
                role=identity.role,
                namespace=identity.namespace,
            )
        raise unauthorized("unknown API token")
