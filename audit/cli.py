"""Recording from command-line tools (certyard est/acme ...): in the command's own transaction,
so a change and its audit entry commit together or not at all. No checkpoint is made here (the
CLI does not open the HSM for it); the server's next checkpoint covers these entries."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from audit.errors import AuditError
from audit.trail import append_entry, cli_actor, utc_now


async def record_in(
    session: AsyncSession,
    *,
    action: str,
    target: str,
    outcome: str = "success",
    details: dict[str, Any] | None = None,
) -> None:
    """Append an entry by ``cli:<user>``; AuditError (the transaction then rolls back) when it
    cannot be written."""
    await session.flush()  # the recorded change first: its own errors stay its own
    try:
        await append_entry(
            session,
            now=utc_now(),
            actor=cli_actor(),
            action=action,
            target=target,
            outcome=outcome,
            details=details,
        )
    except SQLAlchemyError as exc:
        raise AuditError("the audit entry could not be written; nothing was changed", exc) from exc
