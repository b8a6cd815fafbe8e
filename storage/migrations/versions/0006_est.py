"""EST users (HTTP Basic, RFC 7030 §3.2.3) and the record of EST enrollments

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "est_users",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", storage.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "est_enrollments",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("identity", sa.String(length=255), nullable=False),
        sa.Column("source_address", sa.String(length=64), nullable=True),
        sa.Column("certificate_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", storage.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("est_enrollments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_est_enrollments_certificate_id"), ["certificate_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("est_enrollments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_est_enrollments_certificate_id"))
    op.drop_table("est_enrollments")
    op.drop_table("est_users")
