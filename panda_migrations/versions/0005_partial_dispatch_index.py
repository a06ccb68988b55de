"""partial dispatch index

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 01:40:00

The dispatch index holds activated jobs only. A job changes state three times after it is
activated (sent, running, final), and an index that holds every job takes a new entry at each
change; one that holds only activated jobs takes none, and stays as small as the queue.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

_ACTIVATED = sa.text("state = 'activated'")


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.drop_index('ix_jobs_dispatch')
        batch.create_index('ix_jobs_dispatch', ['queue', sa.text('priority DESC'), 'job_id'], unique=False,
                           postgresql_where=_ACTIVATED, sqlite_where=_ACTIVATED)


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.drop_index('ix_jobs_dispatch')
        batch.create_index('ix_jobs_dispatch', ['queue', 'state', sa.text('priority DESC'), 'job_id'], unique=False)
