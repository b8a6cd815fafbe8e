"""issuer rotation: several intermediates per hierarchy, active or retired, and alternate chains

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 04:00:00.000000

``issuers`` gains ``status`` ("active" | "retired"), ``chain`` ("ecdsa" | "rsa" for
intermediates), ``alternate_of`` (for role "alternate": the intermediate whose key the row's
certificate names) and ``retired_at``. Existing rows are active; an existing intermediate's chain
is read from its certificate's key (EC: "ecdsa", RSA: "rsa"), so a database made by the
single-intermediate releases ("root-1" + "int-1") keeps issuing from int-1.

Only columns are added, which SQLite does with ALTER TABLE: the batch never has to copy
``issuers``, a table other tables reference (a copy would have to drop it).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import storage.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_issuers = sa.table(
    "issuers",
    sa.column("id", sa.String()),
    sa.column("role", sa.String()),
    sa.column("cert_pem", sa.Text()),
    sa.column("chain", sa.String()),
)


def upgrade() -> None:
    with op.batch_alter_table("issuers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("status", sa.String(length=16), nullable=False, server_default="active")
        )
        batch_op.add_column(sa.Column("chain", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("alternate_of", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("retired_at", storage.types.UTCDateTime(), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_issuers.c.id, _issuers.c.cert_pem).where(_issuers.c.role == "intermediate")
    ).all()
    for issuer_id, cert_pem in rows:
        chain = _chain(cert_pem)
        if chain is not None:
            bind.execute(sa.update(_issuers).where(_issuers.c.id == issuer_id).values(chain=chain))


def _chain(cert_pem: str) -> str | None:
    """The chain of an intermediate's certificate; None (left NULL: the CA reads the key type
    from the certificate when it loads) if the row holds no readable certificate."""
    try:
        key = x509.load_pem_x509_certificate(cert_pem.encode("ascii")).public_key()
    except ValueError:
        return None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ecdsa"
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa"
    return None


def downgrade() -> None:
    # Revision 0002 knows one intermediate: refuse while the hierarchy has more.
    bind = op.get_bind()
    extra = bind.execute(
        sa.select(sa.func.count())
        .select_from(_issuers)
        .where(_issuers.c.role.in_(("intermediate", "alternate")), _issuers.c.id != "int-1")
    ).scalar_one()
    if extra:
        raise RuntimeError(
            f"{extra} issuer(s) besides int-1 exist; revision 0002 cannot describe them"
        )
    # Plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35, PostgreSQL): a batch copy of
    # ``issuers`` would have to drop a table that ``certificates`` references.
    for column in ("retired_at", "alternate_of", "chain", "status"):
        op.drop_column("issuers", column)
