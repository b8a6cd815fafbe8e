"""Configuration changes in the audit trail: each process start compares a digest of its
effective settings with the last one recorded and appends "config.change" when it differs.

Only the SHA-256 of the settings' canonical JSON is recorded (settings may name secret files or
hold credentials), with the names of the top-level sections that changed when the previous
digest's section digests are known.
"""

from __future__ import annotations

import socket
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audit.canonical import canonical_json, sha256_hex
from audit.errors import AuditError
from audit.trail import AuditTrail
from storage.models_audit import AuditEntryRow

ACTION = "config.change"


def digests(settings: dict[str, Any]) -> dict[str, str]:
    """SHA-256 of each top-level section's canonical JSON (RFC 8785)."""
    return {name: sha256_hex(canonical_json(value)) for name, value in settings.items()}


async def record_config(
    trail: AuditTrail, sessions: async_sessionmaker[AsyncSession], settings: dict[str, Any]
) -> bool:
    """Append "config.change" when ``settings`` (a JSON-mode dump) differ from the last
    recorded ones; True when an entry was written. AuditError when it cannot be."""
    sections = digests(settings)
    overall = sha256_hex(canonical_json(sections))
    try:
        async with sessions() as session:
            last = (
                await session.execute(
                    select(AuditEntryRow.details)
                    .where(AuditEntryRow.action == ACTION)
                    .order_by(AuditEntryRow.seq.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
    except SQLAlchemyError as exc:
        raise AuditError("the audit trail could not be read", exc) from exc
    previous = last if isinstance(last, dict) else {}
    if previous.get("settings_sha256") == overall:
        return False
    before = previous.get("sections")
    changed = (
        sorted(
            name
            for name in sections.keys() | before.keys()
            if sections.get(name) != before.get(name)
        )
        if isinstance(before, dict)
        else sorted(sections)
    )
    await trail.record(
        actor=f"system:{socket.gethostname()}",
        action=ACTION,
        target="settings",
        details={
            "settings_sha256": overall,
            "previous_sha256": previous.get("settings_sha256"),
            "changed_sections": changed,
            "sections": sections,
        },
    )
    return True
