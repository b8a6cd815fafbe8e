"""ACME profiles and renewal information: orders.profile, orders.replaces, ARI windows

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("profile", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("replaces", sa.String(length=128), nullable=True))
        batch_op.create_index(batch_op.f("ix_orders_replaces"), ["replaces"], unique=False)
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ari_window_start", storage.types.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(sa.Column("ari_window_end", storage.types.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_column("ari_window_end")
        batch_op.drop_column("ari_window_start")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orders_replaces"))
        batch_op.drop_column("replaces")
        batch_op.drop_column("profile")
