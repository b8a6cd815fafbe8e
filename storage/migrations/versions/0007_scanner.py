"""Discovery scanner inventory: scan runs, endpoints, certificates, observations, findings

Revision ID: 0007
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = "0007"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scan_runs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("started_at", storage.types.UTCDateTime(), nullable=False),
        sa.Column("finished_at", storage.types.UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "scan_endpoints",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("sni", sa.String(length=255), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("protocol", sa.String(length=16), nullable=False),
        sa.Column("first_seen", storage.types.UTCDateTime(), nullable=False),
        sa.Column("last_seen", storage.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ip", "port", "sni", name="uq_scan_endpoints_ip_port_sni"),
    )
    op.create_table(
        "scanned_certificates",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("not_before", storage.types.UTCDateTime(), nullable=False),
        sa.Column("not_after", storage.types.UTCDateTime(), nullable=False),
        sa.Column("key_type", sa.String(length=32), nullable=False),
        sa.Column("first_seen", storage.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("sha256"),
    )
    op.create_index("ix_scanned_certificates_not_after", "scanned_certificates", ["not_after"])
    op.create_table(
        "scan_observations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("scan_id", sa.String(length=64), nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("cert_sha256", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("chain", sa.JSON(), nullable=False),
        sa.Column("tls_version", sa.String(length=16), nullable=True),
        sa.Column("cipher", sa.String(length=128), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("first_seen", storage.types.UTCDateTime(), nullable=False),
        sa.Column("last_seen", storage.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["scan_id"], ["scan_runs.id"]),
        sa.ForeignKeyConstraint(["endpoint_id"], ["scan_endpoints.id"]),
        sa.ForeignKeyConstraint(["cert_sha256"], ["scanned_certificates.sha256"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_scan_observations_scan", "scan_observations", ["scan_id", "endpoint_id"])
    op.create_table(
        "scan_findings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("scan_id", sa.String(length=64), nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("cert_sha256", sa.String(length=64), nullable=True),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["scan_id"], ["scan_runs.id"]),
        sa.ForeignKeyConstraint(["endpoint_id"], ["scan_endpoints.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_scan_findings_scan", "scan_findings", ["scan_id", "code"])


def downgrade() -> None:
    op.drop_index("ix_scan_findings_scan", table_name="scan_findings")
    op.drop_table("scan_findings")
    op.drop_index("ix_scan_observations_scan", table_name="scan_observations")
    op.drop_table("scan_observations")
    op.drop_index("ix_scanned_certificates_not_after", table_name="scanned_certificates")
    op.drop_table("scanned_certificates")
    op.drop_table("scan_endpoints")
    op.drop_table("scan_runs")
