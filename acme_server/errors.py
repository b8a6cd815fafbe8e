"""ACME errors: one exception type inside, one problem document at the edge.

RFC 8555 §6.7 lists the error types (URNs ``urn:ietf:params:acme:error:<type>``); RFC 9457 gives
the problem document shape and media type. Handlers raise :class:`AcmeError`; the middleware in
``acme_server.app`` turns it into a response, so no handler writes a problem document itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

ACME_ERROR_NS = "urn:ietf:params:acme:error:"
PROBLEM_CONTENT_TYPE = "application/problem+json"

# RFC 8555 §6.7 (and RFC 9773 / draft-ietf-acme-profiles additions): type -> default HTTP status.
DEFAULT_STATUS: dict[str, int] = {
    "accountDoesNotExist": 400,
    "alreadyReplaced": 409,
    "alreadyRevoked": 400,
    "badCSR": 400,
    "badNonce": 400,
    "badPublicKey": 400,
    "badRevocationReason": 400,
    "badSignatureAlgorithm": 400,
    "caa": 403,
    "compound": 400,
    "connection": 400,
    "dns": 400,
    "externalAccountRequired": 400,
    "incorrectResponse": 400,
    "invalidContact": 400,
    "invalidProfile": 400,
    "malformed": 400,
    "orderNotReady": 403,
    "rateLimited": 429,
    "rejectedIdentifier": 400,
    "serverInternal": 500,
    "tls": 400,
    "unauthorized": 403,
    "unsupportedContact": 400,
    "unsupportedIdentifier": 400,
    "userActionRequired": 403,
}


@dataclass(frozen=True)
class Subproblem:
    """RFC 8555 §6.7.1: a problem about one identifier of a request."""

    type: str
    detail: str
    identifier: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"type": ACME_ERROR_NS + self.type, "detail": self.detail}
        if self.identifier is not None:
            doc["identifier"] = dict(self.identifier)
        return doc


@dataclass
class AcmeError(Exception):
    """An ACME error: ``type`` is the short name (``badNonce``), not the URN."""

    type: str
    detail: str
    status: int | None = None
    subproblems: list[Subproblem] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    # Extra members for the problem document (e.g. "algorithms" for badSignatureAlgorithm).
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in DEFAULT_STATUS:
            raise ValueError(f"unknown ACME error type {self.type!r}")
        super().__init__(f"{self.type}: {self.detail}")

    @property
    def http_status(self) -> int:
        return self.status if self.status is not None else DEFAULT_STATUS[self.type]

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": ACME_ERROR_NS + self.type,
            "detail": self.detail,
            "status": self.http_status,
        }
        if self.subproblems:
            doc["subproblems"] = [s.to_json() for s in self.subproblems]
        doc.update(self.extra)
        return doc

    def body(self) -> bytes:
        return json.dumps(self.to_json()).encode()


def malformed(detail: str) -> AcmeError:
    return AcmeError("malformed", detail)


def unauthorized(detail: str) -> AcmeError:
    return AcmeError("unauthorized", detail)
