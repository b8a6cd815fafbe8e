"""Certificate Transparency monitor: watch list, per-log state, matches, names seen

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ct_watch",
        sa.Column("pattern", sa.String(length=255), nullable=False),
        sa.Column("created_at", storage.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("pattern"),
    )
    op.create_table(
        "ct_log_state",
        sa.Column("log_url", sa.String(length=512), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("compact_range", sa.JSON(), nullable=False),
        sa.Column("verified_size", sa.BigInteger(), nullable=False),
        sa.Column("verified_root", sa.String(length=64), nullable=True),
        sa.Column("verified_timestamp_ms", sa.BigInteger(), nullable=True),
        sa.Column("verified_range", sa.JSON(), nullable=False),
        sa.Column("tree_size_seen", sa.BigInteger(), nullable=False),
        sa.Column("last_success", storage.types.UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", storage.types.UTCDateTime(), nullable=True),
        sa.Column("updated_at", storage.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("log_url"),
    )
    op.create_table(
        "ct_matches",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("log_url", sa.String(length=512), nullable=False),
        sa.Column("entry_index", sa.BigInteger(), nullable=False),
        sa.Column("entry_type", sa.String(length=8), nullable=False),
        sa.Column("names", sa.JSON(), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("not_before", storage.types.UTCDateTime(), nullable=True),
        sa.Column("not_after", storage.types.UTCDateTime(), nullable=True),
        sa.Column("tbs_sha256", sa.String(length=64), nullable=False),
        sa.Column("cert_sha256", sa.String(length=64), nullable=True),
        sa.Column("der", sa.LargeBinary(), nullable=True),
        sa.Column("finding", sa.String(length=32), nullable=True),
        sa.Column("created_at", storage.types.UTCDateTime(), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=True),
        sa.Column("notes", sa.JSON(), nullable=True),
        sa.Column("notified_at", storage.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ct_matches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ct_matches_tbs_sha256"), ["tbs_sha256"], unique=True)
        batch_op.create_index(batch_op.f("ix_ct_matches_not_after"), ["not_after"], unique=False)
    op.create_table(
        "ct_names_seen",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("first_seen", storage.types.UTCDateTime(), nullable=False),
        sa.Column("last_seen", storage.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("ct_names_seen")
    with op.batch_alter_table("ct_matches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ct_matches_not_after"))
        batch_op.drop_index(batch_op.f("ix_ct_matches_tbs_sha256"))
    op.drop_table("ct_matches")
    op.drop_table("ct_log_state")
    op.drop_table("ct_watch")
