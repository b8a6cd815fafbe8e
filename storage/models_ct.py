"""Certificate Transparency monitor tables (migration 0011).

* ``ct_watch``: the watch list (``example.com`` or ``.example.com``, normalised, A-labels).
* ``ct_log_state``: per log, how far the monitor got. ``position`` entries were downloaded and
  processed, ``compact_range`` is the Merkle compact range over them (RFC 6962 §2.1, hex subtree
  roots, largest first); ``verified_*`` is the latest signed tree head whose root the monitor
  recomputed from the entries, with the compact range at that size (``verified_range``) so a
  mismatch can rewind to it. Written in the same transaction as the batch's matches.
* ``ct_matches``: one row per issuance (``tbs_sha256`` unique: a precertificate and its final
  certificate are one row). Read by the renewal queue: keep the documented columns.
* ``ct_names_seen``: DNS names of matched certificates, offered to the scanner's SNI list.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base


class CTWatch(Base):
    __tablename__ = "ct_watch"

    pattern: Mapped[str] = mapped_column(String(255), primary_key=True)
    created_at: Mapped[dt.datetime]


class CTLogState(Base):
    __tablename__ = "ct_log_state"

    log_url: Mapped[str] = mapped_column(String(512), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # rfc6962 | tiled
    position: Mapped[int] = mapped_column(BigInteger, default=0)  # download position
    compact_range: Mapped[list[Any]] = mapped_column(JSON)  # hex hashes at ``position``
    verified_size: Mapped[int] = mapped_column(BigInteger, default=0)  # verified position
    verified_root: Mapped[str | None] = mapped_column(String(64))
    verified_timestamp_ms: Mapped[int | None] = mapped_column(BigInteger)
    verified_range: Mapped[list[Any]] = mapped_column(JSON)  # hex hashes at ``verified_size``
    tree_size_seen: Mapped[int] = mapped_column(BigInteger, default=0)
    last_success: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime]


class CTMatch(Base):
    __tablename__ = "ct_matches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    log_url: Mapped[str] = mapped_column(String(512))
    entry_index: Mapped[int] = mapped_column(BigInteger)
    entry_type: Mapped[str] = mapped_column(String(8))  # x509 | precert
    names: Mapped[list[Any]]
    issuer: Mapped[str] = mapped_column(Text)
    not_before: Mapped[dt.datetime | None]
    not_after: Mapped[dt.datetime | None] = mapped_column(index=True)
    # One issuance, one row: SHA-256 of the TBS without poison and SCT list (RFC 6962 §3.1).
    tbs_sha256: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    cert_sha256: Mapped[str | None] = mapped_column(String(64))  # the final certificate's DER
    der: Mapped[bytes | None] = mapped_column(LargeBinary)  # final cert, else the precert
    finding: Mapped[str | None] = mapped_column(String(32))  # "ct_unknown_issuance" | None
    created_at: Mapped[dt.datetime]
    # Monitor bookkeeping (not part of the renewal contract).
    serial: Mapped[str | None] = mapped_column(String(64))
    notes: Mapped[list[Any] | None] = mapped_column(JSON)  # fail-safe match notes
    notified_at: Mapped[dt.datetime | None]  # the alert was handed to the sink


class CTNameSeen(Base):
    __tablename__ = "ct_names_seen"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    first_seen: Mapped[dt.datetime]
    last_seen: Mapped[dt.datetime]
