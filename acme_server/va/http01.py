"""http-01 validation (RFC 8555 §8.3).

The VA fetches ``http://{domain}:{port}/.well-known/acme-challenge/{token}`` and compares the body
with the key authorization. Redirects are followed here, not by aiohttp, so that every hop is
resolved through :func:`~acme_server.va.policy.lookup_addresses`, checked against the deny list,
and connected to by the checked address only (a resolver pinned to that one address is handed to
aiohttp, so TLS on an https hop still sends the name as SNI).
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
from dataclasses import dataclass, replace

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from acme_server.errors import AcmeError
from acme_server.va.policy import (
    IPAddress,
    ValidationConfig,
    ValidationFailure,
    ValidationRecord,
    check_addresses,
    connection_order,
    fail,
    lookup_addresses,
    normalize_identifier,
    os_error_reason,
)

log = logging.getLogger(__name__)

MAX_REDIRECTS = 10  # as Boulder; RFC 8555 §10.2 asks the VA to limit what it follows
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")  # RFC 8555 §8.3: token is base64url
_USER_AGENT = "certyard-va (RFC 8555 validation)"
_SHOWN = 128  # characters of a bad body shown in a problem detail


class _PinnedResolver(AbstractResolver):
    """Answers the one name being fetched with the one address already checked."""

    def __init__(self, host: str, address: IPAddress) -> None:
        self._host = host
        self._address = address

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host.rstrip(".").lower() != self._host:
            raise OSError(f"unexpected name {host!r}")  # never connect to an unchecked name
        sockfamily = socket.AF_INET6 if self._address.version == 6 else socket.AF_INET
        return [
            ResolveResult(
                hostname=host,
                host=str(self._address),
                port=port,
                family=sockfamily,
                proto=0,
                flags=0,
            )
        ]

    async def close(self) -> None:
        return None


@dataclass(frozen=True)
class _Fetched:
    status: int
    location: str | None
    body: bytes


class _ConnectFailed(Exception):
    """A failure before any response: the next address may be tried."""

    def __init__(self, failure: ValidationFailure) -> None:
        super().__init__(str(failure))
        self.failure = failure


async def validate_http01(
    domain: str, token: str, key_authorization: str, config: ValidationConfig
) -> list[ValidationRecord]:
    """Validate an http-01 challenge; the records of every hop, or :class:`ValidationFailure`."""
    records: list[ValidationRecord] = []
    try:
        return await _validate(domain, token, key_authorization, config, records)
    except ValidationFailure as exc:
        exc.records = list(records)
        raise
    except Exception:  # a bug here must not turn into a 500 or leak a traceback
        log.exception("http-01 validation of %s failed unexpectedly", domain)
        raise ValidationFailure(
            AcmeError("serverInternal", "the http-01 validation could not be completed"), records
        ) from None


async def _validate(
    domain: str,
    token: str,
    key_authorization: str,
    config: ValidationConfig,
    records: list[ValidationRecord],
) -> list[ValidationRecord]:
    # RFC 8738 §5: for an IP identifier the URL's host is the address itself.
    name = normalize_identifier(domain)
    if not _TOKEN.match(token):
        raise fail("malformed", "the challenge token is not base64url")
    url = URL.build(
        scheme="http",
        host=name,
        port=config.http01_port,
        path=f"/.well-known/acme-challenge/{token}",
    )
    for hop in range(MAX_REDIRECTS + 1):
        host = url.raw_host or ""
        port = url.port or 80
        resolved = await lookup_addresses(host, config)
        record = ValidationRecord(
            hostname=host,
            port=port,
            addresses_resolved=tuple(str(a) for a in resolved),
            address_used="",
            url=str(url),
        )
        try:
            allowed = check_addresses(host, resolved, config)
        except ValidationFailure:
            records.append(record)
            raise
        fetched, used = await _fetch_first(url, allowed, config, records, record)
        records.append(replace(record, address_used=str(used)))
        if fetched.status in _REDIRECT_STATUSES and fetched.location is not None:
            if hop == MAX_REDIRECTS:
                raise fail(
                    "connection", f"Fetching {url}: too many redirects (more than {MAX_REDIRECTS})"
                )
            url = _redirect_target(url, fetched.location, config)
            continue
        if fetched.status != 200:
            raise fail("unauthorized", f"Invalid response from {url}: HTTP {fetched.status}")
        return _check_body(url, fetched.body, key_authorization, records)
    raise AssertionError("unreachable")  # pragma: no cover


def _check_body(
    url: URL, body: bytes, key_authorization: str, records: list[ValidationRecord]
) -> list[ValidationRecord]:
    # RFC 8555 §8.3: "The server SHOULD ignore whitespace characters at the end of the body."
    got = body.rstrip()
    if got == key_authorization.encode("utf-8"):
        return records
    shown = got[:_SHOWN].decode("utf-8", "replace")
    more = "..." if len(got) > _SHOWN else ""
    raise fail(
        "unauthorized",
        f"The key authorization file from {url} did not match this challenge: expected "
        f"{key_authorization!r}, got {shown!r}{more}",
    )


def _redirect_target(current: URL, location: str, config: ValidationConfig) -> URL:
    try:
        target = current.join(URL(location)).with_fragment(None).with_user(None)
    except (ValueError, TypeError):
        raise fail("connection", f"Fetching {current}: invalid redirect Location") from None
    # RFC 8555 §8.3 allows redirects; like Boulder, only to http/https on the standard ports
    # (or the configured http-01 port), so the VA cannot be aimed at arbitrary services.
    allowed_ports = {"http": {80, config.http01_port}, "https": {443}}
    if target.scheme not in allowed_ports:
        raise fail(
            "connection",
            f"Fetching {current}: redirect to {target.scheme!r} URL "
            "refused: only http and https are followed",
        )
    if not target.raw_host:
        raise fail("connection", f"Fetching {current}: redirect to a URL without a host")
    port = target.port or 0
    if port not in allowed_ports[target.scheme]:
        ports = " or ".join(str(p) for p in sorted(allowed_ports[target.scheme]))
        raise fail(
            "connection",
            f"Fetching {current}: redirect to port {port} refused: "
            f"only port {ports} is followed for {target.scheme}",
        )
    return target


async def _fetch_first(
    url: URL,
    allowed: list[IPAddress],
    config: ValidationConfig,
    records: list[ValidationRecord],
    record: ValidationRecord,
) -> tuple[_Fetched, IPAddress]:
    last: ValidationFailure | None = None
    for address in connection_order(allowed):
        try:
            return await _fetch(url, address, config), address
        except _ConnectFailed as exc:
            last = exc.failure
            records.append(replace(record, address_used=str(address)))
        except ValidationFailure:
            records.append(replace(record, address_used=str(address)))
            raise
    assert last is not None
    raise last


async def _fetch(url: URL, address: IPAddress, config: ValidationConfig) -> _Fetched:
    host = url.raw_host or ""
    connector = aiohttp.TCPConnector(
        resolver=_PinnedResolver(host, address),
        use_dns_cache=False,
        force_close=True,
        ssl=False,  # RFC 8555 §8.3: the VA does not validate certificates on https redirects
        limit=1,
    )
    headers = {"User-Agent": _USER_AGENT, "Accept": "*/*", "Accept-Encoding": "identity"}
    where = f"{address}: Fetching {url}"
    try:
        async with (
            asyncio.timeout(config.timeout),
            aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=config.timeout),
                trust_env=False,
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            ) as session,
            session.get(url, allow_redirects=False, headers=headers) as resp,
        ):
            if resp.status != 200:
                return _Fetched(resp.status, resp.headers.get("Location"), b"")
            body = await _read_limited(resp, config.http01_max_body, where)
            return _Fetched(resp.status, None, body)
    except ValidationFailure:
        raise
    except aiohttp.ConnectionTimeoutError:
        raise _ConnectFailed(fail("connection", f"{where}: timeout during connect")) from None
    except (aiohttp.ClientSSLError, ssl.SSLError):
        raise fail("tls", f"{where}: TLS handshake failed") from None
    except aiohttp.ClientConnectorError as exc:
        reason = os_error_reason(exc.os_error)
        raise _ConnectFailed(fail("connection", f"{where}: {reason}")) from None
    except (TimeoutError, aiohttp.ServerTimeoutError):
        raise fail(
            "connection", f"{where}: timeout after connect (your server may be slow or overloaded)"
        ) from None
    except aiohttp.ServerDisconnectedError:
        raise fail(
            "connection", f"{where}: the server closed the connection without a response"
        ) from None
    except aiohttp.ClientResponseError:
        raise fail("connection", f"{where}: malformed HTTP response") from None
    except aiohttp.ClientPayloadError:
        raise fail("connection", f"{where}: error reading the response body") from None
    except aiohttp.ClientError:
        raise fail("connection", f"{where}: connection failed") from None
    except OSError as exc:
        raise fail("connection", f"{where}: {os_error_reason(exc)}") from None


async def _read_limited(resp: aiohttp.ClientResponse, limit: int, where: str) -> bytes:
    """At most ``limit`` bytes of body; a larger body is a failure (read ``limit + 1``)."""
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = await resp.content.read(limit + 1 - total)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise fail("unauthorized", f"{where}: response body larger than {limit} bytes")
