"""iam authorization codes

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 10:00:00

The authorization code grant with PKCE (people signing in through the browser): clients gain
their redirect URIs, and the codes the authorization endpoint hands out are kept (as digests)
until they are exchanged or expire.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('iam_clients') as batch:
        batch.add_column(sa.Column('redirect_uris', sa.JSON(), nullable=False, server_default='[]'))
    op.create_table('iam_authorization_codes',
    sa.Column('code_row', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('redirect_uri', sa.Text(), nullable=False),
    sa.Column('user_name', sa.String(length=64), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('nonce', sa.Text(), nullable=False),
    sa.Column('code_challenge', sa.String(length=128), nullable=False),
    sa.Column('code_challenge_method', sa.String(length=8), nullable=False),
    sa.Column('family', sa.String(length=32), nullable=False),
    sa.Column('state', sa.String(length=8), nullable=False),
    sa.Column('auth_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('create_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expire_time', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('code_row', name=op.f('pk_iam_authorization_codes')),
    sa.UniqueConstraint('code_hash', name=op.f('uq_iam_authorization_codes_code_hash'))
    )
    with op.batch_alter_table('iam_authorization_codes', schema=None) as batch_op:
        batch_op.create_index('ix_iam_authorization_codes_expire_time', ['expire_time'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('iam_authorization_codes', schema=None) as batch_op:
        batch_op.drop_index('ix_iam_authorization_codes_expire_time')
    op.drop_table('iam_authorization_codes')
    with op.batch_alter_table('iam_clients') as batch:
        batch.drop_column('redirect_uris')
