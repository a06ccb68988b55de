"""iam tables

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 07:00:01.480772

The identity service's tables: users, WLCG groups and memberships, OAuth clients, signing
keys, device codes and refresh tokens.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('iam_clients',
    sa.Column('client_row', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('public', sa.Boolean(), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('grant_types', sa.JSON(), nullable=False),
    sa.Column('groups', sa.JSON(), nullable=False),
    sa.Column('queues', sa.JSON(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('create_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('update_time', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('client_row', name=op.f('pk_iam_clients')),
    sa.UniqueConstraint('client_id', name=op.f('uq_iam_clients_client_id'))
    )
    op.create_table('iam_device_codes',
    sa.Column('device_row', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('device_code_hash', sa.String(length=64), nullable=False),
    sa.Column('user_code', sa.String(length=16), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('user_name', sa.String(length=64), nullable=False),
    sa.Column('create_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expire_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('poll_interval', sa.Integer(), nullable=False),
    sa.Column('last_poll_time', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('device_row', name=op.f('pk_iam_device_codes')),
    sa.UniqueConstraint('device_code_hash', name=op.f('uq_iam_device_codes_device_code_hash'))
    )
    with op.batch_alter_table('iam_device_codes', schema=None) as batch_op:
        batch_op.create_index('ix_iam_device_codes_user_code', ['user_code'], unique=False)

    op.create_table('iam_groups',
    sa.Column('group_row', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('path', sa.String(length=256), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('create_time', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('group_row', name=op.f('pk_iam_groups')),
    sa.UniqueConstraint('path', name=op.f('uq_iam_groups_path'))
    )
    op.create_table('iam_refresh_tokens',
    sa.Column('token_row', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('family', sa.String(length=32), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('user_name', sa.String(length=64), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=8), nullable=False),
    sa.Column('create_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expire_time', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('token_row', name=op.f('pk_iam_refresh_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_iam_refresh_tokens_token_hash'))
    )
    with op.batch_alter_table('iam_refresh_tokens', schema=None) as batch_op:
        batch_op.create_index('ix_iam_refresh_tokens_family', ['family'], unique=False)
        batch_op.create_index('ix_iam_refresh_tokens_user', ['user_name'], unique=False)

    op.create_table('iam_signing_keys',
    sa.Column('key_row', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('kid', sa.String(length=64), nullable=False),
    sa.Column('algorithm', sa.String(length=16), nullable=False),
    sa.Column('private_key_pem', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=8), nullable=False),
    sa.Column('create_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('retire_time', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('key_row', name=op.f('pk_iam_signing_keys')),
    sa.UniqueConstraint('kid', name=op.f('uq_iam_signing_keys_kid'))
    )
    with op.batch_alter_table('iam_signing_keys', schema=None) as batch_op:
        batch_op.create_index('ix_iam_signing_keys_one_active', ['state'], unique=True, sqlite_where=sa.text("state = 'active'"), postgresql_where=sa.text("state = 'active'"))

    op.create_table('iam_users',
    sa.Column('user_row', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=256), nullable=False),
    sa.Column('email', sa.String(length=256), nullable=False),
    sa.Column('password_hash', sa.String(length=256), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('create_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('update_time', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('user_row', name=op.f('pk_iam_users')),
    sa.UniqueConstraint('name', name=op.f('uq_iam_users_name'))
    )
    op.create_table('iam_memberships',
    sa.Column('user_row', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('group_row', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['group_row'], ['iam_groups.group_row'], name=op.f('fk_iam_memberships_group_row_iam_groups'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_row'], ['iam_users.user_row'], name=op.f('fk_iam_memberships_user_row_iam_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_row', 'group_row', name=op.f('pk_iam_memberships'))
    )
    with op.batch_alter_table('iam_memberships', schema=None) as batch_op:
        batch_op.create_index('ix_iam_memberships_group', ['group_row'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('iam_memberships', schema=None) as batch_op:
        batch_op.drop_index('ix_iam_memberships_group')

    op.drop_table('iam_memberships')
    op.drop_table('iam_users')
    with op.batch_alter_table('iam_signing_keys', schema=None) as batch_op:
        batch_op.drop_index('ix_iam_signing_keys_one_active', sqlite_where=sa.text("state = 'active'"), postgresql_where=sa.text("state = 'active'"))

    op.drop_table('iam_signing_keys')
    with op.batch_alter_table('iam_refresh_tokens', schema=None) as batch_op:
        batch_op.drop_index('ix_iam_refresh_tokens_user')
        batch_op.drop_index('ix_iam_refresh_tokens_family')

    op.drop_table('iam_refresh_tokens')
    op.drop_table('iam_groups')
    with op.batch_alter_table('iam_device_codes', schema=None) as batch_op:
        batch_op.drop_index('ix_iam_device_codes_user_code')

    op.drop_table('iam_device_codes')
    op.drop_table('iam_clients')
