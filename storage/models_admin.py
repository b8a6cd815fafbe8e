"""Admin API tables (migration 0015): API tokens and namespace bindings.

An API token is stored as the SHA-256 of its value, never the value: the database alone cannot
be used to call the API. A namespace binding ties a *subject* to a namespace; a subject is what
certyard records as the owner of a resource: a certificate's ``requester`` ("acme:<account id>",
"est:<label>", "cli", ...), or "scan:<scan id>" for a scan run.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    namespace: Mapped[str | None] = mapped_column(String(64))
    # Empty: every permission of the role; else only these (intersected with the role's).
    scopes: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]
    created_by: Mapped[str] = mapped_column(String(255))


class NamespaceBinding(Base):
    __tablename__ = "namespace_bindings"

    subject: Mapped[str] = mapped_column(String(160), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[dt.datetime]
