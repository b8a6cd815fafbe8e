"""SSH deployment targets and their run history (deploy/, storage/models_deploy.py)

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deploy_targets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("key_file", sa.Text(), nullable=True),
        sa.Column("host_key", sa.Text(), nullable=False),
        sa.Column("host_key_fingerprint", sa.String(length=128), nullable=False),
        sa.Column("names", sa.JSON(), nullable=False),
        sa.Column("profile", sa.String(length=64), nullable=False),
        sa.Column("key_path", sa.Text(), nullable=False),
        sa.Column("cert_path", sa.Text(), nullable=False),
        sa.Column("chain_path", sa.Text(), nullable=True),
        sa.Column("fullchain_path", sa.Text(), nullable=True),
        sa.Column("key_mode", sa.Integer(), nullable=False),
        sa.Column("cert_mode", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("group", sa.String(length=64), nullable=True),
        sa.Column("reload_command", sa.Text(), nullable=False),
        sa.Column("verify_host", sa.String(length=255), nullable=False),
        sa.Column("verify_port", sa.Integer(), nullable=False),
        sa.Column("verify_sni", sa.String(length=255), nullable=True),
        sa.Column("created_at", storage.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", storage.types.UTCDateTime(), nullable=False),
        sa.Column("certificate_id", sa.String(length=64), nullable=True),
        sa.Column("certificate_sha256", sa.String(length=64), nullable=True),
        sa.Column("certificate_not_after", storage.types.UTCDateTime(), nullable=True),
        sa.Column("last_status", sa.String(length=32), nullable=True),
        sa.Column("last_run_at", storage.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"]),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("deploy_targets", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_deploy_targets_certificate_sha256"), ["certificate_sha256"], unique=False
        )
    op.create_table(
        "deploy_runs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("target_name", sa.String(length=64), nullable=False),
        sa.Column("started_at", storage.types.UTCDateTime(), nullable=False),
        sa.Column("finished_at", storage.types.UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("requester", sa.String(length=128), nullable=False),
        sa.Column("key_origin", sa.String(length=16), nullable=True),
        sa.Column("certificate_id", sa.String(length=64), nullable=True),
        sa.Column("serial_hex", sa.String(length=64), nullable=True),
        sa.Column("certificate_sha256", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("finding", sa.String(length=32), nullable=True),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"]),
        sa.ForeignKeyConstraint(["target_name"], ["deploy_targets.name"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("deploy_runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_deploy_runs_target_started", ["target_name", "started_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("deploy_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_deploy_runs_target_started")
    op.drop_table("deploy_runs")
    with op.batch_alter_table("deploy_targets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deploy_targets_certificate_sha256"))
    op.drop_table("deploy_targets")
