"""iam revocations

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 17:00:00

The identity service's revocation list: users disabled or deleted and clients deleted, each
with the moment its tokens issued before stopped being accepted. Every service's token check
reads it (over HTTP, beside the JWKS).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('iam_revocations',
    sa.Column('revocation_row', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('revoke_time', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('revocation_row', name=op.f('pk_iam_revocations'))
    )
    with op.batch_alter_table('iam_revocations', schema=None) as batch_op:
        batch_op.create_index('ix_iam_revocations_revoke_time', ['revoke_time'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('iam_revocations', schema=None) as batch_op:
        batch_op.drop_index('ix_iam_revocations_revoke_time')
    op.drop_table('iam_revocations')
