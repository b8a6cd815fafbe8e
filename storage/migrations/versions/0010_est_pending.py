"""EST enrollments held for manual approval (RFC 7030 §4.2.3: 202 + Retry-After)

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "est_pending",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("identity", sa.String(length=255), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("csr_der", sa.LargeBinary(), nullable=False),
        sa.Column("csr_sha256", sa.String(length=64), nullable=False),
        sa.Column("source_address", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("certificate_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", storage.types.UTCDateTime(), nullable=False),
        sa.Column("decided_at", storage.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("est_pending", schema=None) as batch_op:
        batch_op.create_index("ix_est_pending_label_csr", ["label", "csr_sha256"], unique=False)
        batch_op.create_index(batch_op.f("ix_est_pending_state"), ["state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("est_pending", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_est_pending_state"))
        batch_op.drop_index("ix_est_pending_label_csr")
    op.drop_table("est_pending")
