"""External Account Binding keys and their policies; accounts.eab_kid

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "eab_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("hmac_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", storage.types.UTCDateTime(), nullable=False),
        sa.Column("expires_at", storage.types.UTCDateTime(), nullable=True),
        sa.Column("revoked_at", storage.types.UTCDateTime(), nullable=True),
        sa.Column("account_id", sa.String(length=64), nullable=True),
        sa.Column("allowed_domains", sa.JSON(), nullable=False),
        sa.Column("allowed_profiles", sa.JSON(), nullable=False),
        sa.Column("max_validity_days", sa.Integer(), nullable=True),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("kid"),
        sa.UniqueConstraint("account_id"),
    )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("eab_kid", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("eab_kid")
    op.drop_table("eab_keys")
