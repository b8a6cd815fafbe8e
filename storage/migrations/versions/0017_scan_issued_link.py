"""Scanned certificates linked to certyard's issuance records (issue 5 §6); SSH host keys seen
by an observation (issue 5 §4)

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("scanned_certificates") as batch:
        batch.add_column(sa.Column("issued_certificate_id", sa.String(length=64), nullable=True))
    with op.batch_alter_table("scan_observations") as batch:
        batch.add_column(sa.Column("host_keys", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("ocsp_stapling", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scan_observations") as batch:
        batch.drop_column("ocsp_stapling")
        batch.drop_column("host_keys")
    with op.batch_alter_table("scanned_certificates") as batch:
        batch.drop_column("issued_certificate_id")
