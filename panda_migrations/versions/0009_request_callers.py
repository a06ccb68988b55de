"""request callers

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 17:30:00

An idempotency key (`request_id`) belongs to the caller who sent it: jobs, tasks and datasets
record that caller and a digest of the request the key came with, so that another caller's
key is another key, and the same key with another request is refused. Rows stored before keep
no caller; their keys count for their owner only.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

_TABLES = ('jobs', 'jedi_tasks', 'jedi_datasets')


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column('request_caller', sa.String(length=256), nullable=True))
            batch.add_column(sa.Column('request_digest', sa.String(length=32), nullable=True))


def downgrade() -> None:
    # Dropped in place: SQLite's batch mode would copy the tables anew, and dropping a parent
    # table's old copy would take its children's rows with it (ON DELETE CASCADE).
    for table in reversed(_TABLES):
        op.execute(f"ALTER TABLE {table} DROP COLUMN request_digest")
        op.execute(f"ALTER TABLE {table} DROP COLUMN request_caller")
