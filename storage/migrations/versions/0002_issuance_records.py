"""issuance records: certificates are recorded before they are signed

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 03:00:00.000000

``certificates`` gains ``state`` ("signing" | "issued"), ``tbs_sha256``, ``requester`` and
``lint_warnings``; ``der`` and ``chain_pem`` become nullable (NULL while "signing"). Existing
rows are signed certificates: state "issued", the TBS hash computed from their DER, the
requester derived from what the row says ("acme:<account>", "hierarchy" for CA certificates,
else "unknown").
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op
from cryptography import x509

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_BATCH = 500
_CA_PROFILES = ("root-ca", "intermediate-ca")

_certificates = sa.table(
    "certificates",
    sa.column("id", sa.String()),
    sa.column("der", sa.LargeBinary()),
    sa.column("account_id", sa.String()),
    sa.column("profile", sa.String()),
    sa.column("state", sa.String()),
    sa.column("tbs_sha256", sa.String()),
    sa.column("requester", sa.String()),
)


def upgrade() -> None:
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("state", sa.String(length=16), nullable=False, server_default="issued")
        )
        batch_op.add_column(sa.Column("tbs_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("requester", sa.String(length=128), nullable=False, server_default="unknown")
        )
        batch_op.add_column(sa.Column("lint_warnings", sa.JSON(), nullable=True))
        batch_op.alter_column("der", existing_type=sa.LargeBinary(), nullable=True)
        batch_op.alter_column("chain_pem", existing_type=sa.Text(), nullable=True)
        batch_op.create_index(batch_op.f("ix_certificates_state"), ["state"], unique=False)

    _backfill()

    # The defaults only served the existing rows: new rows always say what they are.
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.alter_column(
            "state", existing_type=sa.String(length=16), server_default=None, nullable=False
        )
        batch_op.alter_column(
            "requester", existing_type=sa.String(length=128), server_default=None, nullable=False
        )
        batch_op.alter_column("tbs_sha256", existing_type=sa.String(length=64), nullable=False)


def _backfill() -> None:
    """TBS hash and requester of the rows that exist, a batch at a time (DER can be large)."""
    bind = op.get_bind()
    while True:
        rows = bind.execute(
            sa.select(
                _certificates.c.id,
                _certificates.c.der,
                _certificates.c.account_id,
                _certificates.c.profile,
            )
            .where(_certificates.c.tbs_sha256.is_(None))
            .order_by(_certificates.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        for cert_id, der, account_id, profile in rows:
            tbs = x509.load_der_x509_certificate(der).tbs_certificate_bytes
            if account_id is not None:
                requester = f"acme:{account_id}"
            elif profile in _CA_PROFILES:
                requester = "hierarchy"
            else:
                requester = "unknown"
            bind.execute(
                sa.update(_certificates)
                .where(_certificates.c.id == cert_id)
                .values(tbs_sha256=hashlib.sha256(tbs).hexdigest(), requester=requester)
            )


def downgrade() -> None:
    # Revision 0001 has no place for a record without DER: refuse rather than drop records
    # whose serials may be in use (they must stay revocable).
    pending = (
        op.get_bind()
        .execute(
            sa.select(sa.func.count())
            .select_from(_certificates)
            .where(_certificates.c.state != "issued")
        )
        .scalar_one()
    )
    if pending:
        raise RuntimeError(
            f"{pending} certificate record(s) are still 'signing'; revoke or resolve them first"
        )
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_certificates_state"))
        batch_op.alter_column("chain_pem", existing_type=sa.Text(), nullable=False)
        batch_op.alter_column("der", existing_type=sa.LargeBinary(), nullable=False)
        batch_op.drop_column("lint_warnings")
        batch_op.drop_column("requester")
        batch_op.drop_column("tbs_sha256")
        batch_op.drop_column("state")
