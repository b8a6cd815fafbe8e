"""The audit trail's tables (audit/, docs/audit.md); migration 0016.

``audit_entries`` is append-only: certyard never updates or deletes a row. ``audit_head`` is a
single row (id 1) holding the last sequence number and hash; every append updates it first,
which serialises appends across instances (a row lock on PostgreSQL, the write lock on SQLite).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base

HEAD_ID = 1


class AuditEntryRow(Base):
    __tablename__ = "audit_entries"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    time: Mapped[dt.datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(32))
    details: Mapped[dict[str, Any]]
    request_id: Mapped[str | None] = mapped_column(String(128))
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHead(Base):
    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    entry_hash: Mapped[str] = mapped_column(String(64))


class AuditKeyRow(Base):
    """An audit signing key: its reference in the CA key backend and its public half.

    ``id`` is the hex SHA-256 of the DER SubjectPublicKeyInfo. ``role`` is "current" for the
    key new checkpoints are signed with (UNIQUE: racing instances agree on one) and NULL for
    keys kept only to verify older checkpoints."""

    __tablename__ = "audit_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str | None] = mapped_column(String(16), unique=True)
    key_backend: Mapped[str] = mapped_column(String(32))
    key_ref: Mapped[str] = mapped_column(String(255))
    # Software backend only: the private key, envelope-encrypted (never plaintext at rest).
    key_blob: Mapped[bytes | None] = mapped_column(LargeBinary)
    label: Mapped[str] = mapped_column(String(128))
    public_key_der: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime]


class AuditCheckpointRow(Base):
    __tablename__ = "audit_checkpoints"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    entry_hash: Mapped[str] = mapped_column(String(64))
    time: Mapped[dt.datetime]
    key_id: Mapped[str] = mapped_column(String(64), ForeignKey("audit_keys.id"))
    algorithm: Mapped[str] = mapped_column(String(32))
    signature: Mapped[bytes] = mapped_column(LargeBinary)
