"""Multi-perspective validation: the remote validation agent protocol (see docs/validation.md).

A remote agent (``certyard va-agent``) runs the same validators as the server, from another
network vantage point, with its own :class:`ValidationConfig` (its own resolvers and deny list).
The protocol is one request over mutually authenticated TLS:

    POST /validate  {"type", "identifier", "token", "key_authorization", "account_url"}
    200             {"ok": true, "records": [...]}
                    {"ok": false, "problem": {"type", "detail"}, "records": [...]}
    400             {"ok": false, "problem": {...}}   (a request the agent cannot read)

The server side (:class:`RemotePerspectives`) asks every configured agent concurrently once the
local validation has succeeded and requires ``quorum`` of them to agree; an agent that cannot be
reached, fails TLS or answers nonsense counts as a disagreement.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from acme_server.errors import ACME_ERROR_NS, AcmeError
from acme_server.va.dispatch import validate_challenge
from acme_server.va.policy import ValidationConfig, ValidationFailure, ValidationRecord

log = logging.getLogger(__name__)

VALIDATE_PATH = "/validate"
MAX_REQUEST_BYTES = 16384
MAX_RESPONSE_BYTES = 65536
CHALLENGE_TYPES = frozenset({"http-01", "dns-01", "dns-account-01", "tls-alpn-01"})
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_SHOWN = 300  # characters of an agent's problem detail repeated in ours


@dataclass(frozen=True)
class RemotePerspective:
    """One remote validation agent: a name shown in errors and its ``https://`` base URL."""

    name: str
    url: str

    def __post_init__(self) -> None:
        if not self.url.startswith("https://"):
            raise ValueError(f"remote perspective {self.name!r}: the URL must be https://")
        if not self.name:
            raise ValueError("a remote perspective needs a name")

    @property
    def validate_url(self) -> str:
        return self.url.rstrip("/") + VALIDATE_PATH


@dataclass(frozen=True)
class RemoteRequest:
    """What the server asks an agent to check (the wire request)."""

    type: str
    identifier: str
    token: str
    key_authorization: str
    account_url: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "identifier": self.identifier,
            "token": self.token,
            "key_authorization": self.key_authorization,
            "account_url": self.account_url,
        }

    @classmethod
    def from_json(cls, doc: object) -> RemoteRequest:
        """Parse and check a request; ``malformed`` :class:`AcmeError` when it is not one."""
        if not isinstance(doc, dict):
            raise AcmeError("malformed", "the request must be a JSON object")
        unknown = set(doc) - {"type", "identifier", "token", "key_authorization", "account_url"}
        if unknown:
            raise AcmeError("malformed", f"unknown members {sorted(unknown)}")
        values: dict[str, str] = {}
        for member in ("type", "identifier", "token", "key_authorization"):
            value = doc.get(member)
            if not isinstance(value, str) or not value or len(value) > 1024:
                raise AcmeError("malformed", f"{member!r} must be a non-empty string")
            values[member] = value
        account_url = doc.get("account_url")
        if account_url is not None and (
            not isinstance(account_url, str) or len(account_url) > 1024
        ):
            raise AcmeError("malformed", "'account_url' must be a string")
        if values["type"] not in CHALLENGE_TYPES:
            raise AcmeError("malformed", f"unknown challenge type {values['type']!r}")
        if not _TOKEN.match(values["token"]):
            raise AcmeError("malformed", "'token' is not base64url")
        if not values["key_authorization"].startswith(values["token"] + "."):
            raise AcmeError("malformed", "'key_authorization' does not match 'token'")
        if values["type"] == "dns-account-01" and not account_url:
            raise AcmeError("malformed", "dns-account-01 needs 'account_url'")
        return cls(account_url=account_url, **values)


@dataclass(frozen=True)
class RemoteResult:
    """An agent's answer: success, or the problem it saw; the records either way."""

    ok: bool
    problem: dict[str, Any] | None
    records: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"ok": self.ok, "records": self.records}
        if self.problem is not None:
            doc["problem"] = self.problem
        return doc


async def run_validation(request: RemoteRequest, config: ValidationConfig) -> RemoteResult:
    """Run the validator for ``request.type`` with ``config``; never raises ValidationFailure."""
    try:
        records = await _dispatch(request, config)
    except ValidationFailure as failure:
        return RemoteResult(
            False, failure.problem.to_json(), [r.to_json() for r in failure.records]
        )
    return RemoteResult(True, None, [r.to_json() for r in records])


async def _dispatch(request: RemoteRequest, config: ValidationConfig) -> list[ValidationRecord]:
    return await validate_challenge(
        request.type,
        request.identifier,
        request.token,
        request.key_authorization,
        config,
        account_url=request.account_url,
    )


# -- the agent -----------------------------------------------------------------------------------


def create_agent_app(config: ValidationConfig, *, name: str = "va-agent") -> web.Application:
    """The agent's application: ``POST /validate`` (TLS and client certificates are the
    listener's business, see :func:`agent_ssl_context`)."""

    async def validate(request: web.Request) -> web.Response:
        try:
            body = await request.read()
            try:
                doc = json.loads(body)
            except ValueError:
                raise AcmeError("malformed", "the body is not JSON") from None
            wanted = RemoteRequest.from_json(doc)
        except web.HTTPRequestEntityTooLarge:
            problem = AcmeError("malformed", "request body too large")
            return web.json_response({"ok": False, "problem": problem.to_json()}, status=413)
        except AcmeError as exc:
            return web.json_response({"ok": False, "problem": exc.to_json()}, status=400)
        peer = _peer_subject(request)
        result = await run_validation(wanted, config)
        log.info(
            "remote validation for %s: %s %s -> %s%s",
            peer,
            wanted.type,
            wanted.identifier,
            "ok" if result.ok else "failed",
            "" if result.problem is None else f" ({result.problem.get('detail')})",
        )
        return web.json_response(result.to_json())

    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app["agent_name"] = name
    app.router.add_post(VALIDATE_PATH, validate)
    return app


def _peer_subject(request: web.Request) -> str:
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if isinstance(ssl_object, ssl.SSLObject):
        cert = ssl_object.getpeercert()
        if cert:
            subject = dict(item[0] for item in cert.get("subject", ()))  # type: ignore[misc]
            return str(subject.get("commonName", "client"))
    return "client"


def agent_ssl_context(cert: Path, key: Path, client_ca: Path) -> ssl.SSLContext:
    """TLS for the agent's listener: its certificate, and a client certificate required and
    verified against ``client_ca`` (mutual TLS)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(client_ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(str(cert), str(key))
    return context


# -- the server side -----------------------------------------------------------------------------


def client_ssl_context(cert: Path, key: Path, agents_ca: Path) -> ssl.SSLContext:
    """TLS towards the agents: our client certificate; theirs verified against ``agents_ca``."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(agents_ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    return context


@dataclass(frozen=True)
class PerspectiveOutcome:
    name: str
    ok: bool
    detail: str  # what the perspective saw ("ok" or the reason it disagreed)


class RemotePerspectives:
    """Asks every agent concurrently and enforces the quorum."""

    def __init__(
        self,
        perspectives: tuple[RemotePerspective, ...],
        quorum: int,
        ssl_context: ssl.SSLContext,
        timeout: float,
    ) -> None:
        if not 1 <= quorum <= len(perspectives):
            raise ValueError(f"quorum {quorum} is not between 1 and {len(perspectives)}")
        self.perspectives = perspectives
        self.quorum = quorum
        self._ssl = ssl_context
        self._timeout = timeout

    async def ask_all(self, request: RemoteRequest) -> list[PerspectiveOutcome]:
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        connector = aiohttp.TCPConnector(ssl=self._ssl, limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            return list(
                await asyncio.gather(*(self._ask(session, p, request) for p in self.perspectives))
            )

    async def check(self, request: RemoteRequest) -> list[PerspectiveOutcome]:
        """The outcomes when at least ``quorum`` agents agree, else :class:`ValidationFailure`
        (``unauthorized``, naming every perspective and what it saw)."""
        outcomes = await self.ask_all(request)
        agreed = sum(1 for o in outcomes if o.ok)
        if agreed >= self.quorum:
            return outcomes
        seen = "; ".join(f"perspective {o.name}: {o.detail}" for o in outcomes)
        raise ValidationFailure(
            AcmeError(
                "unauthorized",
                f"Multi-perspective validation failed: {agreed} of {len(outcomes)} remote "
                f"perspectives agreed, {self.quorum} required ({seen})",
            )
        )

    async def _ask(
        self, session: aiohttp.ClientSession, perspective: RemotePerspective, request: RemoteRequest
    ) -> PerspectiveOutcome:
        name = perspective.name
        try:
            async with session.post(perspective.validate_url, json=request.to_json()) as resp:
                body = await resp.content.read(MAX_RESPONSE_BYTES + 1)
                status = resp.status
        except aiohttp.ClientSSLError as exc:
            log.warning("remote perspective %s: TLS failed: %s", name, exc)
            return PerspectiveOutcome(name, False, f"TLS failed ({_ssl_reason(exc)})")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("remote perspective %s unreachable: %r", name, exc)
            reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            return PerspectiveOutcome(name, False, f"unreachable ({reason})")
        return _outcome(name, status, body)


def _ssl_reason(exc: aiohttp.ClientSSLError) -> str:
    inner = getattr(exc, "os_error", None)
    if isinstance(inner, ssl.SSLError) and inner.reason:
        return str(inner.reason).lower().replace("_", " ")
    return "handshake failed"


def _outcome(name: str, status: int, body: bytes) -> PerspectiveOutcome:
    if len(body) > MAX_RESPONSE_BYTES:
        return PerspectiveOutcome(name, False, "answer too large")
    try:
        doc = json.loads(body)
    except ValueError:
        return PerspectiveOutcome(name, False, f"unreadable answer (HTTP {status})")
    if not isinstance(doc, dict) or not isinstance(doc.get("ok"), bool):
        return PerspectiveOutcome(name, False, f"unreadable answer (HTTP {status})")
    if status == 200 and doc["ok"]:
        return PerspectiveOutcome(name, True, "ok")
    problem = doc.get("problem")
    if isinstance(problem, dict):
        kind = str(problem.get("type", "")).removeprefix(ACME_ERROR_NS) or "error"
        detail = str(problem.get("detail", ""))[:_SHOWN]
        return PerspectiveOutcome(name, False, f"{kind}: {detail}")
    return PerspectiveOutcome(name, False, f"validation failed (HTTP {status})")
