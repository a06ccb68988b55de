"""owner vo

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 08:00:00

Jobs and tasks record the virtual organisation they belong to, so that the production role
of that VO may act on them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('vo', sa.String(length=64), server_default='', nullable=False))
    with op.batch_alter_table('jedi_tasks') as batch:
        batch.add_column(sa.Column('vo', sa.String(length=64), server_default='', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('jedi_tasks') as batch:
        batch.drop_column('vo')
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('vo')
