"""Renewal queue: policies, per-certificate state and at-risk mark, run history

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "renewal_policies",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("match", sa.JSON(), nullable=False),
        sa.Column("renew_at_fraction", sa.Float(), nullable=True),
        sa.Column("renew_days_before", sa.Float(), nullable=True),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=128), nullable=True),
        sa.Column("owner", sa.String(length=255), nullable=True),
        sa.Column("at_risk", sa.Boolean(), nullable=False),
        sa.Column("updated_at", storage.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "renewal_items",
        sa.Column("cert_key", sa.String(length=80), nullable=False),
        sa.Column("certificate_id", sa.String(length=64), nullable=True),
        sa.Column("names", sa.JSON(), nullable=False),
        sa.Column("sources", sa.JSON(), nullable=False),
        sa.Column("not_after", storage.types.UTCDateTime(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Float(), nullable=False),
        sa.Column("policy", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("at_risk", sa.Boolean(), nullable=False),
        sa.Column("at_risk_reasons", sa.JSON(), nullable=False),
        sa.Column("at_risk_since", storage.types.UTCDateTime(), nullable=True),
        sa.Column("operator_mark", sa.Text(), nullable=True),
        sa.Column("ari_advanced_at", storage.types.UTCDateTime(), nullable=True),
        sa.Column("last_action", sa.String(length=32), nullable=True),
        sa.Column("last_action_at", storage.types.UTCDateTime(), nullable=True),
        sa.Column("updated_at", storage.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("cert_key"),
    )
    op.create_index("ix_renewal_items_state", "renewal_items", ["state"])
    op.create_table(
        "renewal_runs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("started_at", storage.types.UTCDateTime(), nullable=False),
        sa.Column("finished_at", storage.types.UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_renewal_runs_started_at", "renewal_runs", ["started_at"])
    op.create_table(
        "renewal_actions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("cert_key", sa.String(length=80), nullable=False),
        sa.Column("names", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("created_at", storage.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["renewal_runs.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_renewal_actions_run_id", "renewal_actions", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_renewal_actions_run_id", table_name="renewal_actions")
    op.drop_table("renewal_actions")
    op.drop_index("ix_renewal_runs_started_at", table_name="renewal_runs")
    op.drop_table("renewal_runs")
    op.drop_index("ix_renewal_items_state", table_name="renewal_items")
    op.drop_table("renewal_items")
    op.drop_table("renewal_policies")
