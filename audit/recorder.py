"""The interface every state-changing part of certyard records audit events through.

audit/ implements it with the hash-chained trail; ``NullRecorder`` is for code paths and tests
that run without one. ``record`` raises when the event could not be written: a caller that must
not proceed without its audit entry (issuance) lets that propagate.
"""

from __future__ import annotations

from typing import Any, Protocol


class AuditRecorder(Protocol):
    async def record(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        outcome: str = "success",
        details: dict[str, Any] | None = None,
    ) -> None: ...


class NullRecorder:
    async def record(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        outcome: str = "success",
        details: dict[str, Any] | None = None,
    ) -> None:
        return None
