"""Deployment targets and the history of their deployments (migration 0014; deploy/ writes these).

A target is where one certificate lives: an SSH host (its host key pinned, never learnt on first
use), the remote paths and modes of the key and certificate files, the command that makes the
service reload them and the TLS endpoint that must serve the new certificate afterwards.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base


class DeployTarget(Base):
    __tablename__ = "deploy_targets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    username: Mapped[str] = mapped_column(String(64))
    # A private key file on certyard's host; None: the SSH agent ($SSH_AUTH_SOCK).
    key_file: Mapped[str | None] = mapped_column(Text)
    # The pinned host key, "<algorithm> <base64>" (OpenSSH public key form), and its
    # "SHA256:…" fingerprint as shown to the operator.
    host_key: Mapped[str] = mapped_column(Text)
    host_key_fingerprint: Mapped[str] = mapped_column(String(128))
    names: Mapped[list[Any]]  # DNS names and IP addresses the certificate covers
    profile: Mapped[str] = mapped_column(String(64))
    key_path: Mapped[str] = mapped_column(Text)
    cert_path: Mapped[str] = mapped_column(Text)
    chain_path: Mapped[str | None] = mapped_column(Text)
    fullchain_path: Mapped[str | None] = mapped_column(Text)
    key_mode: Mapped[int] = mapped_column(Integer)
    cert_mode: Mapped[int] = mapped_column(Integer)
    owner: Mapped[str | None] = mapped_column(String(64))
    group: Mapped[str | None] = mapped_column(String(64))
    reload_command: Mapped[str] = mapped_column(Text)
    verify_host: Mapped[str] = mapped_column(String(255))
    verify_port: Mapped[int] = mapped_column(Integer)
    verify_sni: Mapped[str | None] = mapped_column(String(255))  # None: no SNI extension
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    # What the last successful deployment put in place.
    certificate_id: Mapped[str | None] = mapped_column(String(64), ForeignKey("certificates.id"))
    certificate_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    certificate_not_after: Mapped[dt.datetime | None]
    last_status: Mapped[str | None] = mapped_column(String(32))
    last_run_at: Mapped[dt.datetime | None]


class DeployRun(Base):
    """One deployment attempt: ``status`` running | deployed | rolled_back | failed |
    host_key_mismatch | dry_run; ``finding`` "deploy_failed" when it needs a person;
    ``steps`` the step-by-step log ({"step", "ok", "detail"})."""

    __tablename__ = "deploy_runs"
    __table_args__ = (Index("ix_deploy_runs_target_started", "target_name", "started_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    target_name: Mapped[str] = mapped_column(String(64), ForeignKey("deploy_targets.name"))
    started_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None]
    status: Mapped[str] = mapped_column(String(32))
    dry_run: Mapped[bool] = mapped_column(Boolean)
    requester: Mapped[str] = mapped_column(String(128))
    key_origin: Mapped[str | None] = mapped_column(String(16))  # "target" | "certyard"
    certificate_id: Mapped[str | None] = mapped_column(String(64), ForeignKey("certificates.id"))
    serial_hex: Mapped[str | None] = mapped_column(String(64))
    certificate_sha256: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)
    finding: Mapped[str | None] = mapped_column(String(32))
    steps: Mapped[list[Any]]
