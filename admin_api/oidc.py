"""OIDC bearer tokens: JWTs (RFC 7519) signed by the identity provider, verified against its
JWKS (RFC 7517) with PyJWT.

The JWKS is fetched from ``admin.oidc.jwks_url``, cached for ``jwks_cache_seconds`` and fetched
again when a token names a key id the cache does not hold (the provider rotated its keys), at
most once per ``jwks_refresh_min_seconds``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
import structlog

from admin_api.config import ROLES, OidcSettings

log = structlog.get_logger("certyard.admin")
FETCH_TIMEOUT = 10.0
MAX_JWKS_BYTES = 256 * 1024


class OidcError(Exception):
    """The token is not acceptable; the message is safe to show the client."""


@dataclass(frozen=True)
class OidcIdentity:
    subject: str
    role: str
    namespace: str | None


class OidcVerifier:
    def __init__(self, settings: OidcSettings) -> None:
        self._settings = settings
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._settings.issuer and self._settings.jwks_url)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _fetch(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
            )
        try:
            async with self._session.get(self._settings.jwks_url) as response:
                if response.status != 200:
                    raise OidcError(f"the JWKS answered HTTP {response.status}")
                raw = await response.content.read(MAX_JWKS_BYTES + 1)
            if len(raw) > MAX_JWKS_BYTES:
                raise OidcError("the JWKS is too large")
            jwks = jwt.PyJWKSet.from_json(raw.decode())
        except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError) as exc:
            log.warning("oidc_jwks_unreachable", url=self._settings.jwks_url, error=repr(exc))
            raise OidcError("the identity provider's keys cannot be fetched") from None
        except jwt.PyJWKSetError:
            raise OidcError("the identity provider's JWKS holds no usable key") from None
        self._keys = {key.key_id: key for key in jwks.keys if key.key_id}
        self._fetched_at = time.monotonic()

    async def _key(self, kid: str) -> jwt.PyJWK:
        async with self._lock:
            now = time.monotonic()
            stale = (
                self._fetched_at is None
                or now - self._fetched_at > self._settings.jwks_cache_seconds
            )
            may_refresh = (
                self._fetched_at is None
                or now - self._fetched_at >= self._settings.jwks_refresh_min_seconds
            )
            if stale or (kid not in self._keys and may_refresh):
                await self._fetch()
            key = self._keys.get(kid)
        if key is None:
            raise OidcError("the token is signed by an unknown key")
        return key

    async def verify(self, token: str) -> OidcIdentity:
        settings = self._settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise OidcError("the token is not a JWT") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in settings.algorithms:
            raise OidcError(f"algorithm {alg!r} is not accepted")
        if not isinstance(kid, str):
            raise OidcError("the token names no key id")
        key = await self._key(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=list(settings.algorithms),
                audience=settings.audience or None,
                issuer=settings.issuer,
                leeway=settings.leeway_seconds,
                options={"require": ["exp", "iss", "sub"] + (["aud"] if settings.audience else [])},
            )
        except jwt.ExpiredSignatureError:
            raise OidcError("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise OidcError("the token is not for this audience") from None
        except jwt.InvalidIssuerError:
            raise OidcError("the token is from another issuer") from None
        except jwt.InvalidTokenError as exc:
            raise OidcError(f"the token is invalid ({type(exc).__name__})") from None
        return OidcIdentity(
            subject=str(claims["sub"]),
            role=self._role(claims),
            namespace=self._namespace(claims),
        )

    def _role(self, claims: dict[str, Any]) -> str:
        value = claims.get(self._settings.role_claim)
        values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        mapped = {self._settings.role_map.get(v) for v in values if isinstance(v, str)}
        # Several groups may map to several roles: the most privileged one wins.
        for role in ROLES:
            if role in mapped:
                return role
        raise OidcError("the token carries no role certyard knows")

    def _namespace(self, claims: dict[str, Any]) -> str | None:
        if not self._settings.namespace_claim:
            return None
        value = claims.get(self._settings.namespace_claim)
        # Fail closed: with a namespace claim configured, a token without one is refused rather
        # than given every namespace; "*" is how the provider says "all namespaces".
        if not isinstance(value, str) or not value:
            raise OidcError(f"the token has no {self._settings.namespace_claim!r} claim")
        return None if value == "*" else value
