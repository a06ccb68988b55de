"""harvester workers

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08 03:30:00

Harvester's own tables: the workers an instance submitted (kept before the batch system or the
server hears of them) and the queue limits operators set. The same as harvester_svc/store/tables.py.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from panda_runtime.service.db import Id, Time

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'harvester_svc_workers',
        sa.Column('number', Id, primary_key=True, autoincrement=True),
        sa.Column('worker_id', sa.String(128), nullable=False, unique=True),
        sa.Column('harvester_id', sa.String(64), nullable=False),
        sa.Column('queue', sa.String(64), nullable=False),
        sa.Column('plugin', sa.String(32), nullable=False),
        sa.Column('batch_id', sa.String(128), nullable=False, server_default=''),
        sa.Column('state', sa.String(16), nullable=False),
        sa.Column('node', sa.String(256), nullable=False, server_default=''),
        sa.Column('error', sa.Text, nullable=False, server_default=''),
        sa.Column('exit_code', sa.Integer, nullable=True),
        sa.Column('cores', sa.Integer, nullable=False),
        sa.Column('memory_mb', sa.Integer, nullable=False),
        sa.Column('walltime_seconds', sa.Integer, nullable=False),
        sa.Column('access_point', sa.Text, nullable=False),
        sa.Column('submit_time', Time, nullable=False),
        sa.Column('start_time', Time, nullable=True),
        sa.Column('end_time', Time, nullable=True),
        sa.Column('update_time', Time, nullable=False),
        sa.Column('kill_reason', sa.Text, nullable=False, server_default=''),
        sa.Column('killed', sa.Boolean, nullable=False, server_default='0'),
        sa.Column('cleaned', sa.Boolean, nullable=False, server_default='0'),
        sa.Column('version', sa.Integer, nullable=False, server_default='1'),
        sa.Column('reported_version', sa.Integer, nullable=False, server_default='0'),
    )
    op.create_index('ix_harvester_svc_workers_live', 'harvester_svc_workers', ['harvester_id', 'cleaned', 'queue'])
    op.create_table(
        'harvester_svc_limits',
        sa.Column('harvester_id', sa.String(64), primary_key=True),
        sa.Column('queue', sa.String(64), primary_key=True),
        sa.Column('limits', sa.JSON, nullable=False),
        sa.Column('update_time', Time, nullable=False),
    )


def downgrade() -> None:
    op.drop_table('harvester_svc_limits')
    op.drop_index('ix_harvester_svc_workers_live', table_name='harvester_svc_workers')
    op.drop_table('harvester_svc_workers')
