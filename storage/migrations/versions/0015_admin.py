"""Admin API: API tokens (stored hashed) and namespace bindings

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("namespace", sa.String(length=64), nullable=True),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", storage.types.UTCDateTime(), nullable=False),
        sa.Column("expires_at", storage.types.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", storage.types.UTCDateTime(), nullable=True),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_sha256"),
    )
    op.create_table(
        "namespace_bindings",
        sa.Column("subject", sa.String(length=160), nullable=False),
        sa.Column("namespace", sa.String(length=64), nullable=False),
        sa.Column("created_at", storage.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("subject"),
    )
    with op.batch_alter_table("namespace_bindings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_namespace_bindings_namespace"), ["namespace"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("namespace_bindings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_namespace_bindings_namespace"))
    op.drop_table("namespace_bindings")
    op.drop_table("api_tokens")
