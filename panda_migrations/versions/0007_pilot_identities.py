"""pilot identities

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-14 10:00:00

The pilot identities the server issues (a pilot resumes its own after a reconnect with the
secret it was given, kept here as a digest) and when each pilot was last heard on its stream.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'pilots',
        sa.Column('pilot_id', sa.String(length=256), nullable=False),
        sa.Column('secret_digest', sa.String(length=64), nullable=False),
        sa.Column('subject', sa.String(length=256), nullable=False),
        sa.Column('queue', sa.String(length=64), nullable=False),
        sa.Column('node', sa.String(length=256), nullable=False),
        sa.Column('first_seen', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('pilot_id', name=op.f('pk_pilots')),
    )
    with op.batch_alter_table('pilots') as batch:
        batch.create_index('ix_pilots_last_seen', ['last_seen'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('pilots') as batch:
        batch.drop_index('ix_pilots_last_seen')
    op.drop_table('pilots')
