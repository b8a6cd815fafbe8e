"""Manual approval of EST enrollments (RFC 7030 §4.2.3).

A label with ``approval`` holds each new request in ``est_pending`` and answers 202 with
Retry-After. The device re-posts the same CSR (found by its SHA-256 under the label): 202 while
it is pending, 403 once rejected, and the certificate once an operator approved it. Approval only
flips the state; the certificate is issued on the first re-post after it, so a device that lost
the answer gets the same certificate again on a later re-post.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from est_server.context import EstContext, EstLabel
from est_server.errors import EstError
from storage.models import Certificate, EstPending

# RFC 7030 §4.2.3: how long a device waits before re-posting a held request.
PENDING_RETRY_AFTER_SECONDS = 60


@dataclass(frozen=True)
class Approved:
    """The request may go ahead: ``pending_id`` to mark issued, or the certificate already
    issued for it (``certificate_der``)."""

    pending_id: str
    certificate_der: bytes | None = None


def _unavailable() -> EstError:
    return EstError(503, "the approval store is unavailable; retry later", {"Retry-After": "30"})


def _held() -> EstError:
    return EstError(
        202,
        "the request is waiting for an operator's approval; re-post the same request later",
        {"Retry-After": str(PENDING_RETRY_AFTER_SECONDS)},
    )


async def check_approval(
    context: EstContext,
    label: EstLabel,
    request: web.Request,
    csr: x509.CertificateSigningRequest,
    identity: str,
) -> Approved:
    """Approved to issue, or raise: 202 (held, new or still pending), 403 (rejected)."""
    der = csr.public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(der).hexdigest()
    try:
        async with context.sessions.begin() as session:
            row = (
                await session.execute(
                    select(EstPending)
                    .where(EstPending.label == label.name, EstPending.csr_sha256 == digest)
                    .order_by(EstPending.created_at.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            if row is None:
                session.add(
                    EstPending(
                        # Hex, not base64url: an id starting with "-" would read as an option on
                        # the command line (certyard est approve ID).
                        id=secrets.token_hex(12),
                        label=label.name,
                        identity=identity[:255],
                        subject=csr.subject.rfc4514_string(),
                        csr_der=der,
                        csr_sha256=digest,
                        source_address=(request.remote or "")[:64] or None,
                        state="pending",
                        certificate_id=None,
                        created_at=context.clock(),
                        decided_at=None,
                    )
                )
                state, pending_id, certificate_id = "pending", "", None
            else:
                state, pending_id, certificate_id = row.state, row.id, row.certificate_id
            certificate_der: bytes | None = None
            if state == "approved" and certificate_id is not None:
                certificate_der = (
                    await session.execute(
                        select(Certificate.der).where(Certificate.id == certificate_id)
                    )
                ).scalar_one_or_none()
    except SQLAlchemyError as exc:
        raise _unavailable() from exc
    if state == "approved":
        return Approved(pending_id, certificate_der)
    if state == "rejected":
        raise EstError(403, "the request was rejected by an operator")
    raise _held()


async def mark_issued(context: EstContext, pending_id: str, certificate_id: str) -> None:
    try:
        async with context.sessions.begin() as session:
            await session.execute(
                update(EstPending)
                .where(EstPending.id == pending_id, EstPending.certificate_id.is_(None))
                .values(certificate_id=certificate_id)
            )
    except SQLAlchemyError as exc:
        raise _unavailable() from exc
